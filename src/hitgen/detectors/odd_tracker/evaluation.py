"""odd-tracker evaluation: hit-level distributions and track reconstruction, candidate vs
Geant4 and vs Geant4 rounded the way the paper's tokeniser rounds (two decimals of mm and GeV).

Hit level: hits per track, local u and v, global x and z, momentum components after every hit,
each as a Wasserstein-1 distance between the candidate and the rounded reference, beside the noise
floor (the same distance between two disjoint random halves of the rounded reference).
Track level (hitgen.detectors.odd_tracker.tracking): technical seeding and fitting efficiencies and the widths of the q/p
and phi pulls of the reference, the rounded reference and the candidate, side by side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.tracking.reconstruct import reconstruct
from hitgen.evaluation.report import fmt_value, render_template
from hitgen.evaluation.stats import halves, w1

ROUND_DECIMALS = 2  # the paper rounds every continuous feature to two decimals
ROUNDED_FIELDS = ("local_u", "local_v", "px", "py", "pz")
HIT_OBSERVABLES = {  # name: (label, unit)
    "local_u": ("local u", "mm"),
    "local_v": ("local v", "mm"),
    "x": ("global x", "mm"),
    "z": ("global z", "mm"),
    "px": ("px after the hit", "GeV"),
    "py": ("py after the hit", "GeV"),
    "pz": ("pz after the hit", "GeV"),
}
TRACKING_KEYS = ("seeding_efficiency", "fitting_efficiency", "qop_pull_width", "phi_pull_width")


def rounded(events: EventSet, decimals: int = ROUND_DECIMALS) -> EventSet:
    """A copy whose continuous hit fields are rounded to `decimals` (float32 kept)."""
    hits = dict(events.hits)
    for name in ROUNDED_FIELDS:
        hits[name] = np.round(hits[name].astype(np.float64), decimals).astype(hits[name].dtype)
    return dataclasses.replace(events, hits=hits)


@dataclass
class TrackerObservables:
    hits_per_track: np.ndarray  # (N,)
    per_hit: dict[str, np.ndarray]  # HIT_OBSERVABLES name -> (H,)
    layer: np.ndarray  # (H,)
    off_module: np.ndarray  # (H,) the local position lies outside its module (beyond the rounding)
    inward: np.ndarray  # (N,) the track has a hit in a lower layer than an earlier hit of it

    @classmethod
    def of(cls, events: EventSet, modules: odd.Modules) -> TrackerObservables:
        h = events.hits
        module = odd.module_index(modules, h["geometry_id"])
        xyz = odd.to_global(modules, module, np.stack([h["local_u"], h["local_v"]], axis=1))
        per_hit = {"local_u": h["local_u"], "local_v": h["local_v"], "x": xyz[:, 0], "z": xyz[:, 2], "px": h["px"], "py": h["py"], "pz": h["pz"]}
        tol = 0.5 * 10.0**-ROUND_DECIMALS
        off = (np.abs(h["local_u"]) > modules.half_u[module] + tol) | (np.abs(h["local_v"]) > modules.half_v[module] + tol)
        layer = modules.layer[module]
        track = events.event_index()
        back = np.zeros(events.n_hits, bool)  # a hit in a lower layer than the hit before it on its track
        back[1:] = (np.diff(layer.astype(np.int64)) < 0) & (track[1:] == track[:-1])
        inward = np.bincount(track[back], minlength=events.n_events) > 0
        return cls(events.hits_per_event(), {k: np.asarray(v, np.float64) for k, v in per_hit.items()}, layer, off, inward)


def hit_distances(ref: TrackerObservables, cand: TrackerObservables) -> dict[str, float]:
    out = {"hits_per_track_w1": w1(ref.hits_per_track, cand.hits_per_track)}
    out |= {f"{name}_w1": w1(ref.per_hit[name], cand.per_hit[name]) for name in HIT_OBSERVABLES}
    return out


def evaluate_tracker(
    ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None
) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """metrics.json entries and figures for odd-tracker (see the module docstring). The noise floor
    is the reference (rounded) against its replica (Geant4 again at the same conditions) where one
    is given, else against itself in two halves."""
    modules = odd.build_modules()
    ref_rounded = rounded(ref)
    obs_ref, obs_cand = TrackerObservables.of(ref_rounded, modules), TrackerObservables.of(cand, modules)
    if replica is not None:
        floor = {**hit_distances(obs_ref, TrackerObservables.of(rounded(replica), modules)), "kind": "replica", "n": replica.n_events}
    else:
        first, second = halves(ref.n_events)
        obs_a = TrackerObservables.of(ref_rounded.select(first), modules)
        obs_b = TrackerObservables.of(ref_rounded.select(second), modules)
        floor = {**hit_distances(obs_a, obs_b), "kind": "halves", "n_per_half": len(first)}
    tracks = {name: reconstruct(events) for name, events in (("reference", ref), ("reference_rounded", ref_rounded), ("candidate", cand))}
    tracking = {name: t.summary() for name, t in tracks.items()}
    metrics: dict[str, Any] = {
        **hit_distances(obs_ref, obs_cand),
        "noise_floor": floor,
        "hits_per_track_mean": {"reference": float(obs_ref.hits_per_track.mean()), "candidate": float(obs_cand.hits_per_track.mean())},
        "validity": {  # what a physical track never does; Geant4's own rate beside the candidate's
            "hits_off_their_module": {"reference": float(obs_ref.off_module.mean()), "candidate": float(obs_cand.off_module.mean())},
            "tracks_stepping_inwards": {"reference": float(obs_ref.inward.mean()), "candidate": float(obs_cand.inward.mean())},
        },
        "tracking": {key: {name: s[key] for name, s in tracking.items()} for key in TRACKING_KEYS},
        "tracking_details": tracking,
        "compared_with": f"hit level: candidate vs the reference rounded to {ROUND_DECIMALS} decimals",
    }
    figures: list[tuple[str, Path]] = []
    if plots:
        from hitgen.detectors.odd_tracker.plots import tracker_plots

        figures = tracker_plots(obs_ref, obs_cand, {name: t.pulls() for name, t in tracks.items()}, out / "plots", HIT_OBSERVABLES)
    return metrics, figures


TRACKER_HIT_ROWS = [  # (key in metrics.json, label, format)
    ("hits_per_track_w1", "hits per track W1", "{:.4f}"),
    ("local_u_w1", "local u W1 (mm)", "{:.4f}"),
    ("local_v_w1", "local v W1 (mm)", "{:.4f}"),
    ("x_w1", "global x W1 (mm)", "{:.4f}"),
    ("z_w1", "global z W1 (mm)", "{:.4f}"),
    ("px_w1", "px W1 (GeV)", "{:.4f}"),
    ("py_w1", "py W1 (GeV)", "{:.4f}"),
    ("pz_w1", "pz W1 (GeV)", "{:.4f}"),
]
TRACKER_TRACKING_ROWS = [
    ("seeding_efficiency", "technical seeding efficiency", "{:.4f}"),
    ("fitting_efficiency", "technical fitting efficiency", "{:.4f}"),
    ("qop_pull_width", "q/p pull width", "{:.3f}"),
    ("phi_pull_width", "phi pull width", "{:.3f}"),
]
TRACKER_VALIDITY_ROWS = [("hits_off_their_module", "hits off their module"), ("tracks_stepping_inwards", "tracks stepping back inwards")]


def summary_tables(m: dict[str, Any]) -> list[Table]:
    floor = m["noise_floor"]
    hits = [[label, fmt_value(fmt, m[key]), fmt_value(fmt, floor[key])] for key, label, fmt in TRACKER_HIT_ROWS]
    who = ("reference", "reference_rounded", "candidate")
    tracks = [[label, *(fmt_value(fmt, m["tracking"][key][w]) for w in who)] for key, label, fmt in TRACKER_TRACKING_ROWS]
    tables: list[Table] = [
        ("hits vs Geant4 rounded", ["metric", "candidate", f"noise floor ({floor.get('kind', 'halves')})"], hits),
        ("track reconstruction", ["", "Geant4", "Geant4 rounded", "candidate"], tracks),
    ]
    if "validity" in m:  # evaluations before it was measured lack it
        valid = [[label, *(f"{m['validity'][key][w]:.2%}" for w in ("reference", "candidate"))] for key, label in TRACKER_VALIDITY_ROWS]
        tables.append(("what real tracks never do", ["", "Geant4 rounded", "candidate"], valid))
    return tables


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    floor = metrics["noise_floor"]
    rows = [{"name": label, "value": fmt_value(fmt, metrics[key]), "floor": fmt_value(fmt, floor[key])} for key, label, fmt in TRACKER_HIT_ROWS]
    tracking = [
        {"name": label, **{k: fmt_value(fmt, metrics["tracking"][key][k]) for k in ("reference", "reference_rounded", "candidate")}}
        for key, label, fmt in TRACKER_TRACKING_ROWS
    ]
    return render_template("hitgen.detectors.odd_tracker", "report.html.j2", path, metrics, figures, rows=rows, tracking=tracking)
