"""Shared parts of the comparison plots: reference vs candidate with ratio panels, in the HEP style (mplhep)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from hitgen.evaluation.stats import UnitHistogram, ratio  # noqa: E402

REF_STYLE = dict(color="black", label="reference")
CAND_STYLE = dict(color="tab:red", label="candidate")
BAND = 0.2  # the shaded +-20% band of every ratio panel
DPI = 90


def grid(n: int, ncols: int, title: str) -> tuple[plt.Figure, list[tuple[plt.Axes, plt.Axes]]]:
    nrows = -(-n // ncols)
    width, height = 5.2 * ncols, 4.6 * nrows + (0.5 if title else 0.0)
    fig = plt.figure(figsize=(width, height))
    margins = dict(left=0.85 / width, right=1 - 0.2 / width, bottom=0.65 / height, top=1 - (0.85 if title else 0.3) / height)
    outer = fig.add_gridspec(nrows, ncols, hspace=0.35, wspace=0.3, **margins)
    pairs = []
    for i in range(n):
        inner = outer[i // ncols, i % ncols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
        top = fig.add_subplot(inner[0])
        bottom = fig.add_subplot(inner[1], sharex=top)
        top.tick_params(labelbottom=False)
        pairs.append((top, bottom))
    fig.suptitle(title, fontsize=16)
    return fig, pairs


def ratio_panel(ax: plt.Axes, x: np.ndarray, r: np.ndarray, err: np.ndarray, xlabel: str, xerr=None) -> None:
    ax.axhspan(1 - BAND, 1 + BAND, color="grey", alpha=0.2, lw=0)
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.errorbar(x, r, yerr=err, xerr=xerr, fmt="o", ms=3, color=CAND_STYLE["color"], lw=1)
    # 0.5-1.5 unless a point lies beyond: a ratio panel shows every ratio it is there to show
    finite = np.isfinite(r)
    lo, hi = (float(r[finite].min()), float(r[finite].max())) if finite.any() else (1.0, 1.0)
    if lo >= 0.5 and hi <= 1.5:
        ax.set_ylim(0.5, 1.5)
        ax.set_yticks([0.6, 1.0, 1.4])
    else:
        ax.set_ylim(min(0.5, 0.9 * lo), max(1.5, 1.1 * hi))
    ax.set_ylabel("cand/ref", fontsize=11)
    ax.set_xlabel(xlabel, fontsize=12)


def hist_compare(top: plt.Axes, bottom: plt.Axes, ref: np.ndarray, cand: np.ndarray, edges: np.ndarray, xlabel: str, title: str = "") -> None:
    """Unit-area histograms of reference and candidate, and their ratio with statistical errors."""
    href, hcand = UnitHistogram.of(ref, edges), UnitHistogram.of(cand, edges)
    hep.histplot(href.density, edges, yerr=href.error, ax=top, histtype="step", **REF_STYLE)
    hep.histplot(hcand.density, edges, yerr=hcand.error, ax=top, histtype="step", **CAND_STYLE)
    top.set_ylabel("density", fontsize=12)
    top.set_title(title, fontsize=12)
    top.legend(fontsize=9)
    centres = 0.5 * (edges[1:] + edges[:-1])
    r, err = ratio(hcand, href)
    ratio_panel(bottom, centres, r, err, xlabel)


def save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
