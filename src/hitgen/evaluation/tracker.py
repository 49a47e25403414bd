"""odd-tracker evaluation (issue #6): hit-level distributions and track reconstruction, candidate vs
Geant4 and vs Geant4 rounded the way the paper's tokeniser rounds (two decimals of mm and GeV).

Hit level: hits per track, local u and v, global x and z, momentum components after every hit,
each as a Wasserstein-1 distance between the candidate and the rounded reference, beside the noise
floor (the same distance between two disjoint random halves of the rounded reference).
Track level (hitgen.tracking): technical seeding and fitting efficiencies and the widths of the q/p
and phi pulls of the reference, the rounded reference and the candidate, side by side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.detectors import odd_tracker as odd
from hitgen.evaluation.stats import w1
from hitgen.events import EventSet
from hitgen.tracking.reconstruct import reconstruct

ROUND_DECIMALS = 2  # the paper rounds every continuous feature to two decimals
ROUNDED_FIELDS = ("local_u", "local_v", "px", "py", "pz")
NOISE_FLOOR_SEED = 12345
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


def evaluate_tracker(ref: EventSet, cand: EventSet, out: Path, plots: bool) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """metrics.json entries and figures for odd-tracker (see the module docstring)."""
    modules = odd.build_modules()
    ref_rounded = rounded(ref)
    obs_ref, obs_cand = TrackerObservables.of(ref_rounded, modules), TrackerObservables.of(cand, modules)
    halves = np.random.default_rng(NOISE_FLOOR_SEED).permutation(ref.n_events)
    half = ref.n_events // 2
    obs_a = TrackerObservables.of(ref_rounded.select(np.sort(halves[:half])), modules)
    obs_b = TrackerObservables.of(ref_rounded.select(np.sort(halves[half : 2 * half])), modules)
    tracks = {name: reconstruct(events) for name, events in (("reference", ref), ("reference_rounded", ref_rounded), ("candidate", cand))}
    tracking = {name: t.summary() for name, t in tracks.items()}
    metrics: dict[str, Any] = {
        **hit_distances(obs_ref, obs_cand),
        "noise_floor": {**hit_distances(obs_a, obs_b), "n_per_half": half},
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
        from hitgen.evaluation.plots import tracker_plots

        figures = tracker_plots(obs_ref, obs_cand, {name: t.pulls() for name, t in tracks.items()}, out / "plots")
    return metrics, figures
