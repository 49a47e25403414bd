"""ild-ecal: the reference-vs-candidate plots of the evaluation report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np

from hitgen.detectors.ild_ecal.geometry import N_LAYERS
from hitgen.detectors.ild_ecal.observables import ShowerObservables
from hitgen.evaluation.plotting import CAND_STYLE, REF_STYLE, grid, hist_compare, ratio_panel, save
from hitgen.evaluation.stats import common_edges


def make_plots(ref: ShowerObservables, cand: ShowerObservables, metrics: dict[str, Any], folder: Path) -> list[tuple[str, Path]]:
    """Every comparison plot of the report, as (caption, path) in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        fig, pairs = grid(3, 3, "")
        (t1, b1), (t2, b2), (t3, b3) = pairs
        hist_compare(t1, b1, ref.hits, cand.hits, common_edges(ref.hits, cand.hits, 40), "hits per event")
        hist_compare(t2, b2, ref.cell_log10_energy, cand.cell_log10_energy, np.linspace(-1.0, 3.0, 61), "log10(cell E / MeV)")
        cog_r, cog_c = ref.cog_depth_mm, cand.cog_depth_mm
        cog_r, cog_c = cog_r[np.isfinite(cog_r)], cog_c[np.isfinite(cog_c)]
        hist_compare(t3, b3, cog_r, cog_c, common_edges(cog_r, cog_c, 40, (0.005, 0.995)), "depth of centre of gravity (mm)")
        out.append(("Hits per event, cell energy spectrum, shower depth", save(fig, folder / "distributions.png")))

        fig, [(top, bottom)] = grid(1, 1, "")
        x = np.arange(N_LAYERS)
        mr, mc = ref.layer_energy.mean(axis=0), cand.layer_energy.mean(axis=0)
        er = ref.layer_energy.std(axis=0) / np.sqrt(max(ref.n, 1))
        ec = cand.layer_energy.std(axis=0) / np.sqrt(max(cand.n, 1))
        top.errorbar(x, mr, yerr=er, fmt="s", ms=5, **REF_STYLE)
        top.errorbar(x, mc, yerr=ec, fmt="o", ms=4, **CAND_STYLE)
        top.set_ylabel("mean energy (MeV)", fontsize=12)
        top.legend(fontsize=9)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = mc / mr
            err = r * np.sqrt((ec / mc) ** 2 + (er / mr) ** 2)
        ratio_panel(bottom, x, r, err, "layer")
        out.append(("Longitudinal profile: mean energy per layer", save(fig, folder / "profile.png")))

        bins = metrics["energy_bins"]
        edges = np.asarray(bins["edges"])
        centres = 0.5 * (edges[1:] + edges[:-1])
        fig, pairs = grid(2, 2, "")
        for (top, bottom), key, label in zip(pairs, ("response", "resolution"), ("E_vis / E", "std / mean of E_vis / E"), strict=True):
            a = np.asarray(bins[f"{key}_reference"], dtype=float)
            b = np.asarray(bins[f"{key}_candidate"], dtype=float)
            top.plot(centres, a, "s", **REF_STYLE)
            top.plot(centres, b, "o", **CAND_STYLE)
            top.set_ylabel(label, fontsize=12)
            top.legend(fontsize=9)
            ratio_panel(bottom, centres, np.asarray(bins[f"{key}_ratio"], dtype=float), np.zeros(len(centres)), "incident energy (GeV)")
        out.append(("Energy response and resolution per energy bin", save(fig, folder / "response.png")))
    return out
