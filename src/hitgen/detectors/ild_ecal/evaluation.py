"""ild-ecal evaluation: energy response and resolution per energy bin, W1 of the hits per event,
the cell energy spectrum, the energy per layer and the depth of the shower's centre of gravity,
each with its noise floor; plots and the report rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.ild_ecal.geometry import N_LAYERS
from hitgen.detectors.ild_ecal.observables import ShowerObservables, energy_edges, response_in_bins, shower_observables
from hitgen.evaluation.report import fmt_value, get, render_template
from hitgen.evaluation.stats import halves, w1

SUMMARY_ROWS = [  # (key in metrics.json, label, format)
    ("hits_per_event_w1", "hits per event W1", "{:.3f}"),
    ("cell_log10_energy_w1", "cell log10(E/MeV) W1", "{:.4f}"),
    ("layer_energy_w1_mean", "energy per layer W1, mean over layers (MeV)", "{:.4f}"),
    ("cog_depth_w1_mm", "depth of the centre of gravity W1 (mm)", "{:.3f}"),
    ("response_ratio_mean", "response (E_vis/E), mean ratio cand/ref", "{:.4f}"),
    ("response_max_dev", "response, largest |ratio - 1|", "{:.4f}"),
    ("resolution_ratio_mean", "resolution (std/mean), mean ratio cand/ref", "{:.3f}"),
    ("resolution_max_dev", "resolution, largest |ratio - 1|", "{:.3f}"),
]


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def compare(ref: ShowerObservables, cand: ShowerObservables, edges: np.ndarray) -> dict[str, Any]:
    """The metrics of a candidate against a reference (both ShowerObservables), response binned by edges."""
    layer_w1 = [w1(ref.layer_energy[:, i], cand.layer_energy[:, i]) for i in range(N_LAYERS)]
    r, c = response_in_bins(ref, edges), response_in_bins(cand, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        response_ratio = c.response / r.response
        resolution_ratio = c.resolution / r.resolution
    rr, sr = _finite(response_ratio), _finite(resolution_ratio)
    return {
        "hits_per_event_w1": w1(ref.hits, cand.hits),
        "cell_log10_energy_w1": w1(ref.cell_log10_energy, cand.cell_log10_energy),
        "layer_energy_w1": layer_w1,
        "layer_energy_w1_mean": float(np.nanmean(layer_w1)) if np.isfinite(layer_w1).any() else float("nan"),
        "cog_depth_w1_mm": w1(_finite(ref.cog_depth_mm), _finite(cand.cog_depth_mm)),
        "response_ratio_mean": float(rr.mean()) if rr.size else float("nan"),
        "response_max_dev": float(np.abs(rr - 1).max()) if rr.size else float("nan"),
        "resolution_ratio_mean": float(sr.mean()) if sr.size else float("nan"),
        "resolution_max_dev": float(np.abs(sr - 1).max()) if sr.size else float("nan"),
        "energy_bins": {
            "edges": edges.tolist(),
            "n_reference": r.n.tolist(),
            "n_candidate": c.n.tolist(),
            "response_reference": r.response.tolist(),
            "response_candidate": c.response.tolist(),
            "response_ratio": response_ratio.tolist(),
            "resolution_reference": r.resolution.tolist(),
            "resolution_candidate": c.resolution.tolist(),
            "resolution_ratio": resolution_ratio.tolist(),
        },
    }


def evaluate(ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """The noise floor: the same metrics for the reference against its replica (Geant4 again at the
    same conditions and size) where one is given, else between two halves of the reference."""
    obs_ref, obs_cand = shower_observables(ref), shower_observables(cand)
    edges = energy_edges(obs_ref.energy)
    if replica is not None:
        floor = {**compare(obs_ref, shower_observables(replica), edges), "kind": "replica", "n": replica.n_events}
    else:
        first, second = halves(ref.n_events)
        floor = {**compare(obs_ref.select(first), obs_ref.select(second), edges), "kind": "halves", "n_per_half": ref.n_events // 2}
    metrics = {
        **compare(obs_ref, obs_cand, edges),
        "noise_floor": floor,
        "settings": {
            "reference": {k: ref.detector_spec.get(k) for k in ("absorber", "field")},
            "candidate": {k: cand.detector_spec.get(k) for k in ("absorber", "field")},
        },
        "profile": {
            "layer_energy_reference": obs_ref.layer_energy.mean(axis=0).tolist(),
            "layer_energy_candidate": obs_cand.layer_energy.mean(axis=0).tolist(),
        },
    }
    figures = []
    if plots:
        from hitgen.detectors.ild_ecal.plots import make_plots

        figures = make_plots(obs_ref, obs_cand, metrics, out / "plots")
    return metrics, figures


def summary_tables(m: dict[str, Any]) -> list[Table]:
    floor = m["noise_floor"]
    rows = [[label, fmt_value(fmt, get(m, key)), fmt_value(fmt, get(floor, key))] for key, label, fmt in SUMMARY_ROWS]
    return [("summary", ["metric", "candidate", f"noise floor ({floor.get('kind', 'halves')})"], rows)]


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    floor = metrics["noise_floor"]
    rows = [{"name": label, "value": fmt_value(fmt, get(metrics, key)), "floor": fmt_value(fmt, get(floor, key))} for key, label, fmt in SUMMARY_ROWS]
    b = metrics["energy_bins"]
    edges = b["edges"]
    bin_rows = [
        {
            "bin": f"{edges[i]:.3g}-{edges[i + 1]:.3g}",
            "n_ref": b["n_reference"][i],
            "n_cand": b["n_candidate"][i],
            "resp_ref": fmt_value("{:.5f}", b["response_reference"][i]),
            "resp_cand": fmt_value("{:.5f}", b["response_candidate"][i]),
            "resp_ratio": fmt_value("{:.4f}", b["response_ratio"][i]),
            "res_ref": fmt_value("{:.4f}", b["resolution_reference"][i]),
            "res_cand": fmt_value("{:.4f}", b["resolution_candidate"][i]),
            "res_ratio": fmt_value("{:.3f}", b["resolution_ratio"][i]),
        }
        for i in range(len(edges) - 1)
    ]
    layer_rows = [
        {
            "layer": i,
            "ref": f"{metrics['profile']['layer_energy_reference'][i]:.3f}",
            "cand": f"{metrics['profile']['layer_energy_candidate'][i]:.3f}",
            "w1": fmt_value("{:.4f}", metrics["layer_energy_w1"][i]),
            "floor": fmt_value("{:.4f}", floor["layer_energy_w1"][i]),
        }
        for i in range(N_LAYERS)
    ]
    return render_template("hitgen.detectors.ild_ecal", "report.html.j2", path, metrics, figures, rows=rows, bin_rows=bin_rows, layer_rows=layer_rows)
