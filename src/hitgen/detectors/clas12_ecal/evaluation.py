"""clas12-ecal evaluation: the CLAS12 paper's Table 2, occupancy, energy response, the paired
classifier, their noise floor, the plots and the report rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.clas12_ecal import metrics as mt
from hitgen.detectors.clas12_ecal.observables import CaloObservables, calo_observables
from hitgen.evaluation.report import fmt_value, get, render_template
from hitgen.evaluation.stats import halves, w1

SUMMARY_ROWS = [  # (key in metrics.json, label, format, the CLAS12 paper's value)
    ("table2.shower_position_w1_strips", "shower position W1 (strips)", "{:.3f}", "0.12"),
    ("table2.hits_per_event_w1", "hits per event W1", "{:.3f}", "0.27"),
    ("table2.per_hit_log10_adc_w1", "per-hit log10(ADC) W1", "{:.4f}", "0.017"),
    ("table2.energy_scale_ratio", "energy scale (mean response ratio)", "{:.4f}", "within 1-2%"),
    ("table2.energy_scale_max_dev", "energy scale, largest |ratio - 1|", "{:.4f}", ""),
    ("table2.energy_resolution_ratio", "energy resolution (mean ratio of std/mean)", "{:.3f}", ""),
    ("table2.energy_resolution_max_dev", "energy resolution, largest |ratio - 1|", "{:.3f}", ""),
    ("occupancy_max_abs_diff", "largest layer-occupancy difference", "{:.4f}", ""),
    ("classifier_auc", "classifier ROC AUC", "{:.3f}", ""),
    ("classifier_auc_low_level", "low-level classifier ROC AUC (every strip's ADC and TDC)", "{:.3f}", ""),
    # the same classifier shown the momentum and one group of features: what gives the candidate away
    ("classifier_auc_by_group.hits", "... from hit counts only (total, per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.energy", "... from energies only (total, ADC/|p|, per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.position", "... from shower positions only (mean strip per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.spread", "... from shower widths only (strip spread per layer)", "{:.3f}", ""),
]


def _per_layer(ref: CaloObservables, cand: CaloObservables) -> dict[str, Any]:
    layers = range(ref.n_layers)
    return {
        "names": ref.layer_names,
        "occupancy_reference": ref.occupancy.tolist(),
        "occupancy_candidate": cand.occupancy.tolist(),
        "hits_reference": ref.hits_layer.mean(axis=0).tolist(),
        "hits_candidate": cand.hits_layer.mean(axis=0).tolist(),
        "shower_position_w1_strips": [w1(ref.strips_of_layer(i), cand.strips_of_layer(i)) for i in layers],
        "per_hit_log10_adc_w1": [w1(ref.log10_adc_of_layer(i), cand.log10_adc_of_layer(i)) for i in layers],
    }


def _response(ref: CaloObservables, cand: CaloObservables) -> dict[str, Any]:
    edges = mt.momentum_edges(ref.p)
    r, c = mt.energy_response(ref, edges), mt.energy_response(cand, edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = c.response / r.response
    return {
        "edges": edges.tolist(),
        "n_reference": r.n.tolist(),
        "n_candidate": c.n.tolist(),
        "mean_reference": r.mean.tolist(),
        "mean_candidate": c.mean.tolist(),
        "response_reference": r.response.tolist(),
        "response_candidate": c.response.tolist(),
        "ratio": ratio.tolist(),
        "spread_reference": r.spread.tolist(),
        "spread_candidate": c.spread.tolist(),
        "per_layer_ratio": _per_layer_response(ref, cand, edges).tolist(),
    }


def _per_layer_response(ref: CaloObservables, cand: CaloObservables, edges: np.ndarray) -> np.ndarray:
    """(bins, layers): the candidate's mean ADC / |p| of each readout layer over the reference's, per |p| bin."""
    out = np.full((len(edges) - 1, ref.n_layers), np.nan)
    which_r, which_c = (np.clip(np.digitize(o.p, edges) - 1, 0, len(edges) - 2) for o in (ref, cand))
    for b in range(len(edges) - 1):
        mr, mc = which_r == b, which_c == b
        if mr.sum() >= mt.MIN_EVENTS_PER_BIN and mc.sum() >= mt.MIN_EVENTS_PER_BIN:
            r = (ref.total_adc_layer[mr] / ref.p[mr, None]).mean(axis=0)
            c = (cand.total_adc_layer[mc] / cand.p[mc, None]).mean(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[b] = c / r
    return out


def _nested(flat: dict[str, float]) -> dict[str, Any]:
    table2_keys = ("shower_position_w1_strips", "hits_per_event_w1", "per_hit_log10_adc_w1", "energy_scale_ratio", "energy_scale_max_dev")
    resolution_keys = ("energy_resolution_ratio", "energy_resolution_max_dev")
    return {
        "table2": {k: flat[k] for k in (*table2_keys, *resolution_keys)},
        "occupancy_max_abs_diff": flat["occupancy_max_abs_diff"],
        "classifier_auc": flat["classifier_auc"],
        "classifier_auc_by_group": flat["classifier_auc_by_group"],
    }


def evaluate(ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """The noise floor: the same metrics for the reference against its replica (Geant4 again at the
    same conditions and size) where one is given, else between two halves of the reference."""
    obs_ref, obs_cand = calo_observables(ref), calo_observables(cand)
    if replica is not None:
        obs_rep = calo_observables(replica)
        floor = {**_nested(mt.compare(obs_ref, obs_rep)), "kind": "replica", "n": replica.n_events}
        floor["classifier_auc_low_level"] = mt.low_level_auc(ref, replica, obs_ref, obs_rep)
    else:
        floor = {**_nested(mt.noise_floor(obs_ref)), "kind": "halves", "n_per_half": ref.n_events // 2}
        first, second = halves(ref.n_events)
        floor["classifier_auc_low_level"] = mt.low_level_auc(ref.select(first), ref.select(second), obs_ref.select(first), obs_ref.select(second))
    metrics = {
        **_nested(mt.compare(obs_ref, obs_cand)),
        "classifier_auc_low_level": mt.low_level_auc(ref, cand, obs_ref, obs_cand),
        "noise_floor": floor,
        "paper_table2": mt.PAPER_TABLE2,
        "per_layer": _per_layer(obs_ref, obs_cand),
        "energy_response": _response(obs_ref, obs_cand),
        "classifier": {
            "model": "sklearn HistGradientBoostingClassifier",
            "settings": mt.CLASSIFIER_SETTINGS,
            "seed": mt.CLASSIFIER_SEED,
            "split": "paired" if mt.paired(obs_ref, obs_cand) else "independent",
        },
    }
    figures = []
    if plots:
        from hitgen.detectors.clas12_ecal.plots import make_plots

        figures = make_plots(obs_ref, obs_cand, out / "plots")
    return metrics, figures


def summary_tables(m: dict[str, Any]) -> list[Table]:
    floor = m["noise_floor"]
    rows = [[label, fmt_value(fmt, get(m, key)), fmt_value(fmt, get(floor, key)), paper] for key, label, fmt, paper in SUMMARY_ROWS]
    return [("summary", ["metric", "candidate", f"noise floor ({floor.get('kind', 'halves')})", "CLAS12 paper"], rows)]


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    floor = metrics["noise_floor"]
    rows = [
        {"name": label, "value": fmt_value(fmt, get(metrics, key)), "floor": fmt_value(fmt, get(floor, key)), "paper": paper}
        for key, label, fmt, paper in SUMMARY_ROWS
    ]
    layers = metrics["per_layer"]
    layer_rows = [
        {
            "name": name,
            "occ_ref": f"{layers['occupancy_reference'][i]:.4f}",
            "occ_cand": f"{layers['occupancy_candidate'][i]:.4f}",
            "hits_ref": f"{layers['hits_reference'][i]:.2f}",
            "hits_cand": f"{layers['hits_candidate'][i]:.2f}",
            "w1_strip": fmt_value("{:.3f}", layers["shower_position_w1_strips"][i]),
            "w1_adc": fmt_value("{:.4f}", layers["per_hit_log10_adc_w1"][i]),
        }
        for i, name in enumerate(layers["names"])
    ]
    resp = metrics["energy_response"]
    edges = resp["edges"]
    response_rows = [
        {
            "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
            "n_ref": resp["n_reference"][i],
            "n_cand": resp["n_candidate"][i],
            "mean_ref": fmt_value("{:.4g}", resp["mean_reference"][i]),
            "mean_cand": fmt_value("{:.4g}", resp["mean_candidate"][i]),
            "ratio": fmt_value("{:.4f}", resp["ratio"][i]),
            "spread_ref": fmt_value("{:.4f}", resp["spread_reference"][i]),
            "spread_cand": fmt_value("{:.4f}", resp["spread_candidate"][i]),
            "spread_ratio": fmt_value("{:.3f}", _ratio(resp["spread_candidate"][i], resp["spread_reference"][i])),
        }
        for i in range(len(edges) - 1)
    ]
    per_layer = resp.get("per_layer_ratio")  # evaluations before it was measured lack it
    per_layer_rows = (
        [{"bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}", "ratios": [fmt_value("{:.3f}", v) for v in per_layer[i]]} for i in range(len(edges) - 1)]
        if per_layer
        else []
    )
    return render_template(
        "hitgen.detectors.clas12_ecal",
        "report.html.j2",
        path,
        metrics,
        figures,
        rows=rows,
        layer_rows=layer_rows,
        response_rows=response_rows,
        per_layer_rows=per_layer_rows,
    )
