"""odd-tracker: the reference-vs-candidate plots of the evaluation report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np

from hitgen.evaluation.plotting import grid, hist_compare, save
from hitgen.evaluation.stats import common_edges, integer_edges


def tracker_plots(
    ref: Any, cand: Any, pulls: dict[str, dict[str, np.ndarray]], folder: Path, hit_observables: dict[str, tuple[str, str]]
) -> list[tuple[str, Path]]:
    """odd-tracker: hits per track, every per-hit observable, and the pulls of the track fit
    (reference rounded vs candidate), as (caption, path); ref and cand are TrackerObservables,
    hit_observables their per-hit observables as name: (label, unit)."""

    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        fig, [(top, bottom)] = grid(1, 1, "")
        hi = int(max(ref.hits_per_track.max(initial=0), cand.hits_per_track.max(initial=0)))
        hist_compare(top, bottom, ref.hits_per_track, cand.hits_per_track, integer_edges(0, hi), "hits per track")
        out.append(("Hits per track", save(fig, folder / "hits_per_track.png")))
        fig, pairs = grid(len(hit_observables), 3, "Per hit (reference rounded as the tokeniser rounds)")
        for (name, (label, unit)), (top, bottom) in zip(hit_observables.items(), pairs, strict=True):
            a, b = ref.per_hit[name], cand.per_hit[name]
            hist_compare(top, bottom, a, b, common_edges(a, b, 50, (0.001, 0.999)), f"{label} ({unit})")
        out.append(("Per-hit observables", save(fig, folder / "per_hit.png")))
        fig, pairs = grid(2, 2, "Track-fit pulls")
        for (name, label), (top, bottom) in zip((("qop", "q/p pull"), ("phi", "phi pull")), pairs, strict=True):
            a, b = pulls["reference_rounded"][name], pulls["candidate"][name]
            hist_compare(top, bottom, a, b, np.linspace(-5, 5, 41), label)
        out.append(("Pulls of q/p and phi (fitted - true) / uncertainty", save(fig, folder / "pulls.png")))
    return out
