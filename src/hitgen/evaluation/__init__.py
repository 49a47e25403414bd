"""`hitgen evaluate`: candidate vs reference event files -> metrics.json, plots/, report.html."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hitgen import __version__
from hitgen.errors import HitgenError
from hitgen.evaluation import metrics as mt
from hitgen.evaluation.observables import CaloObservables, calo_observables
from hitgen.evaluation.stats import w1
from hitgen.events import EventSet

SUPPORTED = {"clas12-ecal", "odd-tracker"}  # detectors whose observables are defined here


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    out: Path


def conditions_match(ref: EventSet, cand: EventSet) -> tuple[bool, str]:
    """Whether the candidate was made for the reference's own conditions, and a sentence saying so."""
    same = ref.n_events == cand.n_events and all(k in cand.conditions and np.array_equal(v, cand.conditions[k]) for k, v in ref.conditions.items())
    if same:
        return True, f"Matched: the candidate has the reference's own conditions, event by event ({ref.n_events} events)."
    p_ref = np.linalg.norm(ref.conditions["momentum"].astype(np.float64), axis=1)
    p_cand = np.linalg.norm(cand.conditions["momentum"].astype(np.float64), axis=1)
    return False, (
        "The conditions differ: the candidate was not generated for the reference's own conditions, so the samples are "
        f"compared as distributions only. |p| W1 between the condition samples: {w1(p_ref, p_cand):.3f} GeV; "
        "differences in the conditions show up in every metric below."
    )


def _load(path: Path, max_events: int | None) -> EventSet:
    events = EventSet.read(path)
    if max_events is not None and events.n_events > max_events:
        events = events.select(np.arange(max_events))
    return events


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
    }


def _nested(flat: dict[str, float]) -> dict[str, Any]:
    table2_keys = ("shower_position_w1_strips", "hits_per_event_w1", "per_hit_log10_adc_w1", "energy_scale_ratio", "energy_scale_max_dev")
    return {
        "table2": {k: flat[k] for k in table2_keys},
        "occupancy_max_abs_diff": flat["occupancy_max_abs_diff"],
        "classifier_auc": flat["classifier_auc"],
        "classifier_auc_by_group": flat["classifier_auc_by_group"],
    }


def _json_safe(x: Any) -> Any:
    """NaN -> None, so that metrics.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def _calorimeter(ref: EventSet, cand: EventSet, out: Path, plots: bool) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """clas12-ecal: the CLAS12 paper's Table 2, occupancy, response, classifier; and the plots."""
    obs_ref, obs_cand = calo_observables(ref), calo_observables(cand)
    metrics = {
        **_nested(mt.compare(obs_ref, obs_cand)),
        "noise_floor": {**_nested(mt.noise_floor(obs_ref)), "n_per_half": ref.n_events // 2},
        "paper_table2": mt.PAPER_TABLE2,
        "per_layer": _per_layer(obs_ref, obs_cand),
        "energy_response": _response(obs_ref, obs_cand),
        "classifier": {"model": "sklearn HistGradientBoostingClassifier", "settings": mt.CLASSIFIER_SETTINGS, "seed": mt.CLASSIFIER_SEED},
    }
    figures = []
    if plots:
        from hitgen.evaluation.plots import make_plots

        figures = make_plots(obs_ref, obs_cand, out / "plots")
    return metrics, figures


def evaluate(reference: str | Path, candidate: str | Path, out: str | Path, max_events: int | None = None, plots: bool = True) -> Evaluation:
    t0 = time.perf_counter()
    reference, candidate, out = Path(reference), Path(candidate), Path(out)
    if max_events is not None and max_events <= 0:
        raise HitgenError(f"--max-events must be positive (got {max_events})")
    if out.exists() and not out.is_dir():
        raise HitgenError(f"{out}: exists and is not a folder")
    ref, cand = _load(reference, max_events), _load(candidate, max_events)
    if ref.detector != cand.detector:
        raise HitgenError(f"files are of different detectors: {reference} is {ref.detector}, {candidate} is {cand.detector}")
    if ref.detector not in SUPPORTED:
        raise HitgenError(f"no evaluation is defined for detector '{ref.detector}' yet (supported: {', '.join(sorted(SUPPORTED))})")
    if ref.n_events < 20 or cand.n_events < 20:
        raise HitgenError(f"too few events to evaluate: {ref.n_events} reference, {cand.n_events} candidate (need at least 20 each)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HitgenError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise HitgenError(f"{out}: folder is not writable")

    matched, note = conditions_match(ref, cand)
    if ref.detector == "odd-tracker":
        from hitgen.evaluation.tracker import evaluate_tracker

        part, figures = evaluate_tracker(ref, cand, out, plots)
    else:
        part, figures = _calorimeter(ref, cand, out, plots)
    metrics: dict[str, Any] = {
        "detector": ref.detector,
        "n_reference": ref.n_events,
        "n_candidate": cand.n_events,
        "reference": {"path": str(reference), "producer": ref.producer, "seed": ref.seed, "timing": ref.notes.get("timing")},
        "candidate": {
            "path": str(candidate),
            "producer": cand.producer,
            "seed": cand.seed,
            "timing": cand.notes.get("timing"),
            "sampling": cand.notes.get("sampling"),
        },
        "conditions_matched": matched,
        "conditions_note": note,
        **part,
        "hitgen_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metrics["seconds"] = time.perf_counter() - t0
    metrics = _json_safe(metrics)
    _write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    if plots:
        from hitgen.evaluation.report import render_report

        tmp = out / ".report.html.partial"
        render_report(metrics, figures, tmp)
        os.replace(tmp, out / "report.html")
    return Evaluation(metrics, out)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
