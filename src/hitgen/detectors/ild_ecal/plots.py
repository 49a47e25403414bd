"""ild-ecal: the reference-vs-candidate plots of the evaluation report (one set per particle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mplhep as hep
import numpy as np
from matplotlib.ticker import MaxNLocator

from hitgen.detectors.ild_ecal.geometry import N_LAYERS
from hitgen.detectors.ild_ecal.metrics import OBSERVABLES
from hitgen.detectors.ild_ecal.observables import NO_START, ShowerObservables
from hitgen.evaluation.plotting import CAND_STYLE, REF_STYLE, grid, hist_compare, ratio_panel, save
from hitgen.evaluation.stats import UnitHistogram, common_edges, integer_edges, ratio

RADIAL_BINS = 30


def _edges(key: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if key == "start_layer":
        return integer_edges(0, NO_START)
    if key == "cell_log10_energy":
        return common_edges(a, b, 50, (0.0, 0.999))
    return common_edges(a, b, 25, (0.005, 0.995))


def _points(top: plt.Axes, bottom: plt.Axes, x: np.ndarray, ref: tuple, cand: tuple, ylabel: str, xlabel: str, xerr=None) -> None:
    """Reference and candidate points with errors, and their ratio with both errors."""
    (vr, er), (vc, ec) = ref, cand
    top.errorbar(x, vr, yerr=er, xerr=xerr, fmt="s", ms=4, **REF_STYLE)
    top.errorbar(x, vc, yerr=ec, xerr=xerr, fmt="o", ms=4, **CAND_STYLE)
    top.set_ylabel(ylabel, fontsize=12)
    top.legend(fontsize=9)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = vc / vr
        ratio_panel(bottom, x, r, r * np.hypot(er / vr, ec / vc), xlabel, xerr=xerr)
    # means differ by percents, not tens of percents: zoom onto the points (at least +-2%) when they fit in +-50%
    finite = r[np.isfinite(r)]
    span = max(0.02, 1.15 * float(np.abs(finite - 1).max())) if finite.size else 0.5
    if span < 0.5:
        bottom.set_ylim(1 - span, 1 + span)
        bottom.yaxis.set_major_locator(MaxNLocator(4))


def _fit_ratio_axis(bottom: plt.Axes, r: np.ndarray, err: np.ndarray) -> None:
    """Fit the ratio axis to the points measured to +-0.3 or better (at least 0.5-1.5): a tail bin of
    a few events, with its error bar to match, would otherwise squash the bulk onto the line."""
    ok = np.isfinite(r) & np.isfinite(err) & (err <= 0.3)
    if ok.any():
        bottom.set_ylim(min(0.5, float((r - err)[ok].min())), max(1.5, float((r + err)[ok].max())))


def _mean_and_error(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values.mean(axis=0), values.std(axis=0) / np.sqrt(max(len(values), 1))


def _radial(o: ShowerObservables, edges: np.ndarray) -> np.ndarray:
    """(N, bins) energy per event in rings of distance from the axis, MeV per mm."""
    ring = np.digitize(o.hit_r, edges) - 1
    inside = (ring >= 0) & (ring < len(edges) - 1)
    out = np.zeros((o.n, len(edges) - 1))
    np.add.at(out, (o.event_of_hit()[inside], ring[inside]), o.hit_energy[inside])
    return out / np.diff(edges)


def make_plots(ref: ShowerObservables, cand: ShowerObservables, block: dict[str, Any], folder: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """Every comparison plot of one particle, as (caption, path) in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_" if prefix else ""
    who = f" ({prefix})" if prefix else ""
    out: list[tuple[str, Path]] = []
    style = {"xtick.labelsize": 11, "ytick.labelsize": 11, "xtick.minor.visible": False, "ytick.minor.visible": False}
    with plt.style.context([hep.style.ROOT, style]):
        shown = [o for o in OBSERVABLES if o[0] not in ("longitudinal_profile", "radial_profile")]
        fig, pairs = grid(len(shown), 3, "")
        for (top, bottom), (key, label, unit, sample) in zip(pairs, shown, strict=True):
            (a, _), (b, _) = sample(ref), sample(cand)
            edges = _edges(key, a, b)
            hist_compare(top, bottom, a, b, edges, label + (f" ({unit})" if unit else ""))
            _fit_ratio_axis(bottom, *ratio(UnitHistogram.of(b, edges), UnitHistogram.of(a, edges)))
        out.append(("Shower observables" + who, save(fig, folder / f"{stem}distributions.png")))

        fig, [(t1, b1), (t2, b2)] = grid(2, 2, "")
        x = np.arange(N_LAYERS)
        _points(t1, b1, x, _mean_and_error(ref.layer_energy), _mean_and_error(cand.layer_energy), "mean energy per event (MeV)", "layer")
        r_max = float(np.quantile(ref.hit_r, 0.995)) if ref.hit_r.size else 1.0
        edges = np.linspace(0.0, max(r_max, 1.0), RADIAL_BINS + 1)
        centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
        radial = _mean_and_error(_radial(ref, edges)), _mean_and_error(_radial(cand, edges))
        _points(t2, b2, centres, *radial, "MeV per mm per event", "distance from the axis (mm)", half)
        t2.set_yscale("log")
        caption = "Longitudinal profile (energy per layer) and radial profile (energy vs distance from the shower axis)"
        out.append((caption + who, save(fig, folder / f"{stem}profiles.png")))

        bins = block["energy_bins"]
        e = np.asarray(bins["edges"])
        centres, half = 0.5 * (e[1:] + e[:-1]), 0.5 * np.diff(e)
        fig, pairs = grid(2, 2, "")
        for (top, bottom), key, label in zip(pairs, ("response", "resolution"), ("E_vis / E", "std / mean of E_vis / E"), strict=True):
            values = [(np.asarray(bins[f"{key}_{s}"], float), np.asarray(bins[f"{key}_error_{s}"], float)) for s in ("reference", "candidate")]
            _points(top, bottom, centres, values[0], values[1], label, "incident energy (GeV)", half)
        out.append(("Energy response and resolution per energy bin" + who, save(fig, folder / f"{stem}response.png")))
    return out
