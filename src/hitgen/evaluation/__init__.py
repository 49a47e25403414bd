"""`hitgen evaluate`: candidate vs reference event files -> metrics.json, plots/, report.html."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hitgen import __version__
from hitgen.core.atomic import atomic_folder, check_new_output, write_text_atomic
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors import check_events
from hitgen.evaluation.stats import w1

MIN_EVENTS = 20


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    out: Path


def conditions_match(ref: EventSet, cand: EventSet) -> tuple[bool, str]:
    """Whether the candidate was made for the reference's own conditions, and a sentence saying so."""
    same = ref.n_events == cand.n_events and all(k in cand.conditions and np.array_equal(v, cand.conditions[k]) for k, v in ref.conditions.items())
    if same:
        return True, f"Matched: the candidate has the reference's own conditions, event by event ({ref.n_events} events)."
    note = "The conditions differ: the candidate was not generated for the reference's own conditions, "
    note += "so the samples are compared as distributions only. "
    if "momentum" in ref.conditions and "momentum" in cand.conditions:
        p_ref = np.linalg.norm(ref.conditions["momentum"].astype(np.float64), axis=1)
        p_cand = np.linalg.norm(cand.conditions["momentum"].astype(np.float64), axis=1)
        note += f"|p| W1 between the condition samples: {w1(p_ref, p_cand):.3f} GeV; "
    return False, note + "differences in the conditions show up in every metric below."


def _load(path: Path, max_events: int | None) -> EventSet:
    events = EventSet.read(path)
    if max_events is not None and events.n_events > max_events:
        events = events.select(np.arange(max_events))
    return events


def _json_safe(x: Any) -> Any:
    """NaN -> None, so that metrics.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def evaluate(
    reference: str | Path,
    candidate: str | Path,
    out: str | Path,
    max_events: int | None = None,
    plots: bool = True,
    overwrite: bool = False,
    replica: str | Path | None = None,
) -> Evaluation:
    """Compare the candidate with the reference by the detector's own metrics (with their noise
    floor); write metrics.json and, with plots, plots/ and report.html into the new folder `out`
    (an existing one is replaced only with overwrite). The folder appears when it is complete."""
    t0 = time.perf_counter()
    reference, candidate, out = Path(reference), Path(candidate), Path(out)
    if max_events is not None and max_events <= 0:
        raise HitgenError(f"--max-events must be positive (got {max_events})")
    check_new_output(out, overwrite, "--out", folder=True)
    ref, cand = _load(reference, max_events), _load(candidate, max_events)
    if ref.detector != cand.detector:
        raise HitgenError(f"files are of different detectors: {reference} is {ref.detector}, {candidate} is {cand.detector}")
    detector = check_events(ref, str(reference))
    check_events(cand, str(candidate))
    rep = _replica(replica, ref, max_events) if replica is not None else None
    if ref.n_events < MIN_EVENTS or cand.n_events < MIN_EVENTS:
        raise HitgenError(f"too few events to evaluate: {ref.n_events} reference, {cand.n_events} candidate (need at least {MIN_EVENTS} each)")
    with atomic_folder(out, overwrite) as tmp:
        metrics = _evaluate_into(tmp, detector, ref, cand, reference, candidate, plots, t0, rep, replica)
    return Evaluation(metrics, out)


def _replica(path: str | Path, ref: EventSet, max_events: int | None) -> EventSet:
    """The reference's replica: Geant4 again on the reference's own conditions (hitgen simulate
    --conditions REF --seed OTHER), checked to hold exactly those conditions."""
    rep = _load(Path(path), max_events)
    if rep.detector != ref.detector:
        raise HitgenError(f"--replica {path}: events of {rep.detector}, the reference is {ref.detector}")
    check_events(rep, str(path))
    same = rep.n_events == ref.n_events and all(np.array_equal(v, rep.conditions.get(k)) for k, v in ref.conditions.items())
    if not same:
        raise HitgenError(
            f"--replica {path}: its conditions are not the reference's (make it with hitgen simulate --conditions REFERENCE --seed OTHER)"
        )
    if rep.seed is not None and rep.seed == ref.seed:
        raise HitgenError(f"--replica {path}: made with the reference's own seed {ref.seed}; a replica needs another seed")
    return rep


def _evaluate_into(
    folder: Path, detector, ref: EventSet, cand: EventSet, reference: Path, candidate: Path, plots: bool, t0: float, rep, replica
) -> dict:
    matched, note = conditions_match(ref, cand)
    part, figures = detector.evaluate(ref, cand, folder, plots, rep)
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
        "replica": None if rep is None else {"path": str(replica), "producer": rep.producer, "seed": rep.seed},
        "conditions_matched": matched,
        "conditions_note": note,
        **part,
        "hitgen_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metrics["seconds"] = time.perf_counter() - t0
    metrics = _json_safe(metrics)
    write_text_atomic(folder / "metrics.json", json.dumps(metrics, indent=2))
    if plots:
        detector.render_report(metrics, figures, folder / "report.html")
    return metrics
