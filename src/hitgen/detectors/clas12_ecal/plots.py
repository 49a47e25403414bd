"""clas12-ecal: the reference-vs-candidate plots of the evaluation report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np

from hitgen.detectors.clas12_ecal.metrics import energy_response, momentum_edges
from hitgen.detectors.clas12_ecal.observables import CaloObservables
from hitgen.evaluation.plotting import CAND_STYLE, REF_STYLE, grid, hist_compare, ratio_panel, save
from hitgen.evaluation.stats import common_edges, integer_edges


def _per_layer(
    ref: CaloObservables, cand: CaloObservables, values: Callable[[CaloObservables, int], np.ndarray], edges_of, xlabel: str, title: str
) -> plt.Figure:
    fig, pairs = grid(ref.n_layers, 3, title)
    for i, (top, bottom) in enumerate(pairs):
        a, b = values(ref, i), values(cand, i)
        hist_compare(top, bottom, a, b, edges_of(i, a, b), xlabel, ref.layer_names[i])
    return fig


def make_plots(ref: CaloObservables, cand: CaloObservables, folder: Path) -> list[tuple[str, Path]]:
    """Every comparison plot of the report, as (caption, path) in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    hits_max = int(max(ref.hits_layer.max(initial=0), cand.hits_layer.max(initial=0)))
    # ROOT style, lighter: minor ticks and tight bounding boxes cost most of the drawing time
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        fig, [(top, bottom)] = grid(1, 1, "")
        total_max = int(max(ref.total_hits.max(initial=0), cand.total_hits.max(initial=0)))
        hist_compare(top, bottom, ref.total_hits, cand.total_hits, integer_edges(0, total_max), "hits per event", "all layers")
        out.append(("Total hits per event", save(fig, folder / "hits_total.png")))

        fig = _per_layer(ref, cand, lambda o, i: o.hits_layer[:, i], lambda i, a, b: integer_edges(0, hits_max), "hits per event", "Hits per event")
        out.append(("Hits per event in each readout layer", save(fig, folder / "hits_per_layer.png")))

        fig, [(top, bottom)] = grid(1, 1, "")
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
        out.append(("Layer occupancy", save(fig, folder / "occupancy.png")))

        def strip_edges(i: int, a, b) -> np.ndarray:
            return integer_edges(0, ref.strips_per_layer[i] - 1)

        fig = _per_layer(ref, cand, lambda o, i: o.strips_of_layer(i), strip_edges, "strip", "Fired strip index")
        out.append(("Fired strip index per layer (shower position)", save(fig, folder / "strips_per_layer.png")))
        fig = _per_layer(ref, cand, lambda o, i: o.centroid[:, i][o.centroid[:, i] >= 0], strip_edges, "strip", "Centroid strip (highest ADC)")
        out.append(("Centroid strip per layer (the strip with the highest ADC)", save(fig, folder / "centroid_per_layer.png")))
        fig = _per_layer(ref, cand, lambda o, i: o.log10_adc_of_layer(i), lambda i, a, b: common_edges(a, b, 50), "log10(ADC)", "Per-hit log10(ADC)")
        out.append(("Per-hit log10(ADC) per layer", save(fig, folder / "log_adc_per_layer.png")))

        def log_total(o: CaloObservables, i: int) -> np.ndarray:
            t = o.total_adc_layer[:, i]
            return np.log10(t[t > 0])

        fig = _per_layer(ref, cand, log_total, lambda i, a, b: common_edges(a, b, 50, (0.001, 0.999)), "log10(total ADC)", "Total ADC per layer")
        out.append(("Total ADC per layer (log10, events with hits in the layer)", save(fig, folder / "total_adc_per_layer.png")))

        out.append(("Energy-momentum response", save(_response_figure(ref, cand), folder / "response.png")))
        out.append(("log10(total ADC) vs |p|", save(_density_figure(ref, cand), folder / "response_2d.png")))
    return out


def _response_figure(ref: CaloObservables, cand: CaloObservables) -> plt.Figure:
    edges = momentum_edges(ref.p)
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    fig, pairs = grid(2, 2, "")
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
