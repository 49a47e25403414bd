"""Reference-vs-candidate plots with ratio panels, in the HEP style (mplhep)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from hitgen.evaluation.metrics import energy_response, momentum_edges  # noqa: E402
from hitgen.evaluation.observables import CaloObservables  # noqa: E402
from hitgen.evaluation.stats import UnitHistogram, common_edges, integer_edges, ratio  # noqa: E402

if TYPE_CHECKING:
    from hitgen.evaluation.tracker import TrackerObservables

REF_STYLE = dict(color="black", label="reference")
CAND_STYLE = dict(color="tab:red", label="candidate")
BAND = 0.2  # the shaded +-20% band of every ratio panel
DPI = 90


def _grid(n: int, ncols: int, title: str) -> tuple[plt.Figure, list[tuple[plt.Axes, plt.Axes]]]:
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
    ax.set_ylim(0.5, 1.5)
    ax.set_yticks([0.6, 1.0, 1.4])
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


def _per_layer(
    ref: CaloObservables, cand: CaloObservables, values: Callable[[CaloObservables, int], np.ndarray], edges_of, xlabel: str, title: str
) -> plt.Figure:
    fig, pairs = _grid(ref.n_layers, 3, title)
    for i, (top, bottom) in enumerate(pairs):
        a, b = values(ref, i), values(cand, i)
        hist_compare(top, bottom, a, b, edges_of(i, a, b), xlabel, ref.layer_names[i])
    return fig


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def make_plots(ref: CaloObservables, cand: CaloObservables, folder: Path) -> list[tuple[str, Path]]:
    """Every comparison plot of the report, as (caption, path) in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    hits_max = int(max(ref.hits_layer.max(initial=0), cand.hits_layer.max(initial=0)))
    # ROOT style, lighter: minor ticks and tight bounding boxes cost most of the drawing time
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        fig, [(top, bottom)] = _grid(1, 1, "")
        total_max = int(max(ref.total_hits.max(initial=0), cand.total_hits.max(initial=0)))
        hist_compare(top, bottom, ref.total_hits, cand.total_hits, integer_edges(0, total_max), "hits per event", "all layers")
        out.append(("Total hits per event", _save(fig, folder / "hits_total.png")))

        fig = _per_layer(ref, cand, lambda o, i: o.hits_layer[:, i], lambda i, a, b: integer_edges(0, hits_max), "hits per event", "Hits per event")
        out.append(("Hits per event in each readout layer", _save(fig, folder / "hits_per_layer.png")))

        fig, [(top, bottom)] = _grid(1, 1, "")
        x = np.arange(ref.n_layers)
        occ_r, occ_c = ref.occupancy, cand.occupancy
        err_r = np.sqrt(occ_r * (1 - occ_r) / max(ref.n_events, 1))
        err_c = np.sqrt(occ_c * (1 - occ_c) / max(cand.n_events, 1))
        top.errorbar(x, occ_r, yerr=err_r, fmt="s", ms=5, **REF_STYLE)
        top.errorbar(x, occ_c, yerr=err_c, fmt="o", ms=4, **CAND_STYLE)
        top.set_ylabel("fraction of events with >= 1 hit", fontsize=12)
        top.legend(fontsize=9)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = occ_c / occ_r
            err = r * np.sqrt((err_c / occ_c) ** 2 + (err_r / occ_r) ** 2)
        ratio_panel(bottom, x, r, err, "readout layer")
        bottom.set_xticks(x, ref.layer_names, rotation=45, ha="right", fontsize=9)
        out.append(("Layer occupancy", _save(fig, folder / "occupancy.png")))

        def strip_edges(i: int, a, b) -> np.ndarray:
            return integer_edges(0, ref.strips_per_layer[i] - 1)

        fig = _per_layer(ref, cand, lambda o, i: o.strips_of_layer(i), strip_edges, "strip", "Fired strip index")
        out.append(("Fired strip index per layer (shower position)", _save(fig, folder / "strips_per_layer.png")))
        fig = _per_layer(ref, cand, lambda o, i: o.centroid[:, i][o.centroid[:, i] >= 0], strip_edges, "strip", "Centroid strip (highest ADC)")
        out.append(("Centroid strip per layer (the strip with the highest ADC)", _save(fig, folder / "centroid_per_layer.png")))
        fig = _per_layer(ref, cand, lambda o, i: o.log10_adc_of_layer(i), lambda i, a, b: common_edges(a, b, 50), "log10(ADC)", "Per-hit log10(ADC)")
        out.append(("Per-hit log10(ADC) per layer", _save(fig, folder / "log_adc_per_layer.png")))

        def log_total(o: CaloObservables, i: int) -> np.ndarray:
            t = o.total_adc_layer[:, i]
            return np.log10(t[t > 0])

        fig = _per_layer(ref, cand, log_total, lambda i, a, b: common_edges(a, b, 50, (0.001, 0.999)), "log10(total ADC)", "Total ADC per layer")
        out.append(("Total ADC per layer (log10, events with hits in the layer)", _save(fig, folder / "total_adc_per_layer.png")))

        out.append(("Energy-momentum response", _save(_response_figure(ref, cand), folder / "response.png")))
        out.append(("log10(total ADC) vs |p|", _save(_density_figure(ref, cand), folder / "response_2d.png")))
    return out


def _response_figure(ref: CaloObservables, cand: CaloObservables) -> plt.Figure:
    edges = momentum_edges(ref.p)
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    fig, pairs = _grid(2, 2, "")
    r, c = energy_response(ref, edges), energy_response(cand, edges)
    # errors: of a mean, std / sqrt(n); of a relative spread, spread / sqrt(2 n)
    with np.errstate(divide="ignore", invalid="ignore"):
        em_r, em_c = r.std / np.sqrt(r.n), c.std / np.sqrt(c.n)
        es_r, es_c = r.spread / np.sqrt(2 * r.n), c.spread / np.sqrt(2 * c.n)
        panels = [
            (r.mean, em_r, c.mean, em_c, "mean total ADC"),
            (r.spread, es_r, c.spread, es_c, "relative spread of ADC/|p|"),
        ]
        for (top, bottom), (vr, er, vc, ec, ylabel) in zip(pairs, panels, strict=True):
            top.errorbar(centres, vr, yerr=er, xerr=half, fmt="s", ms=4, **REF_STYLE)
            top.errorbar(centres, vc, yerr=ec, xerr=half, fmt="o", ms=4, **CAND_STYLE)
            top.set_ylabel(ylabel, fontsize=12)
            top.legend(fontsize=9)
            q = vc / vr
            ratio_panel(bottom, centres, q, q * np.sqrt((er / vr) ** 2 + (ec / vc) ** 2), "|p| (GeV)", xerr=half)
    return fig


def _density_figure(ref: CaloObservables, cand: CaloObservables) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    y_r, y_c = np.log10(np.maximum(ref.total_adc, 1)), np.log10(np.maximum(cand.total_adc, 1))
    xe = momentum_edges(ref.p, 40)
    ye = common_edges(y_r, y_c, 40, (0.001, 0.999))
    for ax, p, y, name in ((axes[0], ref.p, y_r, "reference"), (axes[1], cand.p, y_c, "candidate")):
        h, _, _ = np.histogram2d(p, y, bins=(xe, ye), density=True)
        hep.hist2dplot(h, xe, ye, ax=ax, cbar=True)
        ax.set_title(name, fontsize=13)
        ax.set_xlabel("|p| (GeV)", fontsize=12)
    axes[0].set_ylabel("log10(total ADC)", fontsize=12)
    fig.tight_layout()
    return fig


def tracker_plots(ref: TrackerObservables, cand: TrackerObservables, pulls: dict[str, dict[str, np.ndarray]], folder: Path) -> list[tuple[str, Path]]:
    """odd-tracker: hits per track, every per-hit observable, and the pulls of the track fit
    (reference rounded vs candidate), as (caption, path)."""
    from hitgen.evaluation.tracker import HIT_OBSERVABLES

    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        fig, [(top, bottom)] = _grid(1, 1, "")
        hi = int(max(ref.hits_per_track.max(initial=0), cand.hits_per_track.max(initial=0)))
        hist_compare(top, bottom, ref.hits_per_track, cand.hits_per_track, integer_edges(0, hi), "hits per track")
        out.append(("Hits per track", _save(fig, folder / "hits_per_track.png")))
        fig, pairs = _grid(len(HIT_OBSERVABLES), 3, "Per hit (reference rounded as the tokeniser rounds)")
        for (name, (label, unit)), (top, bottom) in zip(HIT_OBSERVABLES.items(), pairs, strict=True):
            a, b = ref.per_hit[name], cand.per_hit[name]
            hist_compare(top, bottom, a, b, common_edges(a, b, 50, (0.001, 0.999)), f"{label} ({unit})")
        out.append(("Per-hit observables", _save(fig, folder / "per_hit.png")))
        fig, pairs = _grid(2, 2, "Track-fit pulls")
        for (name, label), (top, bottom) in zip((("qop", "q/p pull"), ("phi", "phi pull")), pairs, strict=True):
            a, b = pulls["reference_rounded"][name], pulls["candidate"][name]
            hist_compare(top, bottom, a, b, np.linspace(-5, 5, 41), label)
        out.append(("Pulls of q/p and phi (fitted - true) / uncertainty", _save(fig, folder / "pulls.png")))
    return out
