"""ild-ecal evaluation: per particle, the W1 and quantile-binned KL of every shower observable, the
energy response and resolution per energy bin, the high- and low-level classifiers, each beside its
noise floor; plots and the report rows. One absorber and one field setting per comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.ild_ecal import metrics as mt
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, PARTICLES
from hitgen.detectors.ild_ecal.observables import START_MEV, ShowerObservables, energy_edges, shower_observables
from hitgen.evaluation.classifier import CLASSIFIER_SEED, CLASSIFIER_SETTINGS
from hitgen.evaluation.report import fmt_value, get, render_template
from hitgen.evaluation.stats import halves

MIN_EVENTS = 20  # per particle, in every sample
SETTINGS = ("absorber", "field")
PARTICLE_NAMES = {pdg: name for name, (pdg, _) in PARTICLES.items()}

SUMMARY_ROWS = [  # (key in a particle's block of metrics.json, label, format)
    ("hits_per_event_w1", "hits per event W1", "{:.3f}"),
    ("cell_log10_energy_w1", "cell log10(E/MeV) W1", "{:.4f}"),
    ("response_ratio_mean", "response (E_vis/E), mean ratio cand/ref over energy bins", "{:.4f}"),
    ("response_max_dev", "response, largest |ratio - 1|", "{:.4f}"),
    ("resolution_ratio_mean", "resolution (std/mean), mean ratio cand/ref", "{:.3f}"),
    ("resolution_max_dev", "resolution, largest |ratio - 1|", "{:.3f}"),
    ("rms90_max_dev", "resolution of the narrowest 90% (RMS90), largest |ratio - 1|", "{:.3f}"),
    ("classifier_auc", "high-level classifier AUC", "{:.3f}"),
    ("classifier_auc_low_level", "low-level classifier AUC (voxel window)", "{:.3f}"),
]


def _settings(events: EventSet) -> dict[str, Any]:
    return {k: events.detector_spec.get(k) for k in SETTINGS}


def check_settings(ref: EventSet, cand: EventSet, replica: EventSet | None) -> None:
    """One absorber and one field setting: refuse a candidate or replica made with other ones."""
    want = _settings(ref)
    for who, events in (("candidate", cand), ("replica", replica)):
        if events is not None and _settings(events) != want:
            got = _settings(events)
            raise HitgenError(
                f"ild-ecal compares files of one absorber and field only: the reference is absorber {want['absorber']}, "
                f"field {want['field']}; the {who} absorber {got['absorber']}, field {got['field']}"
            )


def _name(pdg: int) -> str:
    return PARTICLE_NAMES.get(int(pdg), str(int(pdg)))


def _particles(ref: ShowerObservables, cand: ShowerObservables, replica: ShowerObservables | None) -> list[int]:
    """The particles of the reference; the candidate (and replica) must hold the same ones, each
    with MIN_EVENTS events or more."""
    pdgs = sorted(int(p) for p in np.unique(ref.pdg))
    for who, o in (("candidate", cand), ("replica", replica)):
        if o is not None and sorted(int(p) for p in np.unique(o.pdg)) != pdgs:
            theirs = ", ".join(_name(p) for p in np.unique(o.pdg))
            raise HitgenError(f"the reference holds {', '.join(_name(p) for p in pdgs)}, the {who} {theirs}: compare files of the same particles")
    for who, o in (("reference", ref), ("candidate", cand)):
        for p in pdgs:
            if (o.pdg == p).sum() < MIN_EVENTS:
                raise HitgenError(f"too few {_name(p)} events in the {who}: {(o.pdg == p).sum()} (need at least {MIN_EVENTS} per particle)")
    return pdgs


def _paired(ref: ShowerObservables, cand: ShowerObservables) -> bool:
    return ref.n == cand.n and np.array_equal(ref.conditions, cand.conditions)


def _particle_block(ref: ShowerObservables, cand: ShowerObservables, replica: ShowerObservables | None) -> dict[str, Any]:
    """Every metric of one particle, its noise floor: reference vs replica where there is one (same
    conditions, same size, paired), else between two random halves of the reference."""
    edges = energy_edges(ref.energy)
    paired = _paired(ref, cand)
    if replica is not None:
        floor = {**mt.compare(ref, replica, edges, paired=True), "kind": "replica", "n": replica.n}
    else:
        first, second = halves(ref.n)
        floor = {**mt.compare(ref.select(first), ref.select(second), edges, paired=False), "kind": "halves", "n_per_half": ref.n // 2}
    return {
        **mt.compare(ref, cand, edges, paired),
        "noise_floor": floor,
        "n_reference": ref.n,
        "n_candidate": cand.n,
        "classifier": {"split": "paired" if paired else "independent"},
        "profile": {
            "layer_energy_reference": ref.layer_energy.mean(axis=0).tolist(),
            "layer_energy_candidate": cand.layer_energy.mean(axis=0).tolist(),
        },
    }


def evaluate(ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """Per particle of the reference (one block, at the top level of the metrics, for a file of one
    particle; `by_particle` for several), every metric with its noise floor."""
    check_settings(ref, cand, replica)
    obs_ref, obs_cand = shower_observables(ref), shower_observables(cand)
    obs_rep = None if replica is None else shower_observables(replica)
    pdgs = _particles(obs_ref, obs_cand, obs_rep)
    blocks: dict[str, dict[str, Any]] = {}
    selected: dict[str, tuple[ShowerObservables, ShowerObservables]] = {}
    for p in pdgs:
        r, c = obs_ref.select(np.flatnonzero(obs_ref.pdg == p)), obs_cand.select(np.flatnonzero(obs_cand.pdg == p))
        rep = None if obs_rep is None else obs_rep.select(np.flatnonzero(obs_rep.pdg == p))
        blocks[_name(p)] = _particle_block(r, c, rep)
        selected[_name(p)] = (r, c)
    metrics: dict[str, Any] = {
        "particles": list(blocks),
        "settings": {"reference": _settings(ref), "candidate": _settings(cand)},
        "definitions": {
            **mt.settings_note(),
            "start_layer_mev": START_MEV,
            "classifier_model": "sklearn HistGradientBoostingClassifier",
            "classifier_settings": CLASSIFIER_SETTINGS,
            "classifier_seed": CLASSIFIER_SEED,
        },
    }
    if len(blocks) == 1:
        metrics.update(next(iter(blocks.values())))
    else:
        metrics["by_particle"] = blocks
    figures: list[tuple[str, Path]] = []
    if plots:
        from hitgen.detectors.ild_ecal.plots import make_plots

        for name, (r, c) in selected.items():
            prefix = "" if len(blocks) == 1 else name
            figures += make_plots(r, c, blocks[name], out / "plots", prefix)
    return metrics, figures


def particle_blocks(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(particle, its metrics) of an evaluation; one block with an empty name for a file of one particle."""
    if "by_particle" in m:
        return list(m["by_particle"].items())
    return [("", m)]


def _auc(block: dict[str, Any], key: str) -> str:
    value, err = get(block, key), get(block, "classifier_auc_error")
    return "n/a" if value is None else f"{value:.3f} +- {err:.3f}"


def _summary_rows(b: dict[str, Any]) -> list[list[str]]:
    """[label, candidate, floor] of SUMMARY_ROWS for one particle's block."""
    floor = b["noise_floor"]
    rows = []
    for key, label, fmt in SUMMARY_ROWS:
        if key.startswith("classifier_auc"):
            rows.append([label, _auc(b, key), _auc(floor, key)])
        else:
            rows.append([label, fmt_value(fmt, get(b, key)), fmt_value(fmt, get(floor, key))])
    err, err_floor = get(b, "classifier_auc_error"), get(floor, "classifier_auc_error")
    floor_groups = floor.get("classifier_auc_by_group", {})
    for group, auc in b.get("classifier_auc_by_group", {}).items():  # which features tell them apart
        at_floor = floor_groups.get(group)
        rows.append(
            [f"high-level AUC, {group} alone", f"{auc:.3f} +- {err:.3f}", "n/a" if at_floor is None else f"{at_floor:.3f} +- {err_floor:.3f}"]
        )
    return rows


def _observable_rows(b: dict[str, Any]) -> list[list[str]]:
    """[label (unit), W1, W1 floor, KL, KL floor] of every observable for one particle's block."""
    floor = b["noise_floor"]
    return [
        [label + (f" ({unit})" if unit else ""), *(fmt_value("{:.4g}", get(x, f"{key}_{d}")) for d in ("w1", "kl") for x in (b, floor))]
        for key, label, unit, _ in mt.OBSERVABLES
    ]


def summary_tables(m: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    for name, b in particle_blocks(m):
        kind = f"noise floor ({b['noise_floor'].get('kind', 'halves')})"
        suffix = f" ({name})" if name else ""
        tables.append(("summary" + suffix, ["metric", "candidate", kind], _summary_rows(b)))
        tables.append(("observables" + suffix, ["observable", "W1", "W1 floor", "KL", "KL floor"], _observable_rows(b)))
    return tables


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    sections = []
    for name, b in particle_blocks(metrics):
        floor = b["noise_floor"]
        rows = [{"name": name_, "value": value, "floor": fl} for name_, value, fl in _summary_rows(b)]
        obs_rows = [
            {
                "name": row[0],
                "cells": row[1:],
                "w1_over_floor": fmt_value("{:.2f}", (get(b, f"{key}_w1") or np.nan) / (get(floor, f"{key}_w1") or np.nan)),
            }
            for row, (key, *_) in zip(_observable_rows(b), mt.OBSERVABLES, strict=True)
        ]
        bins = b["energy_bins"]
        edges = bins["edges"]
        bin_rows = [
            {
                "bin": f"{edges[i]:.3g}-{edges[i + 1]:.3g}",
                "n_ref": bins["n_reference"][i],
                "n_cand": bins["n_candidate"][i],
                "cells": [
                    fmt_value(fmt, bins[key][i])
                    for key, fmt in (
                        ("response_reference", "{:.5f}"),
                        ("response_candidate", "{:.5f}"),
                        ("response_ratio", "{:.4f}"),
                        ("response_ratio_error", "{:.4f}"),
                        ("resolution_reference", "{:.4f}"),
                        ("resolution_candidate", "{:.4f}"),
                        ("resolution_ratio", "{:.3f}"),
                        ("resolution_ratio_error", "{:.3f}"),
                        ("rms90_ratio", "{:.3f}"),
                    )
                ],
            }
            for i in range(len(edges) - 1)
        ]
        layer_rows = [
            {
                "layer": i,
                "ref": f"{b['profile']['layer_energy_reference'][i]:.3f}",
                "cand": f"{b['profile']['layer_energy_candidate'][i]:.3f}",
                "w1": fmt_value("{:.4f}", b["layer_energy_w1"][i]),
                "floor": fmt_value("{:.4f}", floor["layer_energy_w1"][i]),
            }
            for i in range(N_LAYERS)
        ]
        sections.append({"name": name, "b": b, "rows": rows, "obs_rows": obs_rows, "bin_rows": bin_rows, "layer_rows": layer_rows})
    return render_template("hitgen.detectors.ild_ecal", "report.html.j2", path, metrics, figures, sections=sections)
