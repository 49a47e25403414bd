"""ild-ecal in `hitgen info`: per layer, totals, and the sampling fraction in bins of energy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, PARTICLES
from hitgen.detectors.ild_ecal.observables import MIN_EVENTS_PER_BIN, bin_of, energy_edges, response_in_bins, shower_observables
from hitgen.evaluation.info import per_layer_counts, save_info_plots
from hitgen.evaluation.report import fmt_value

LAYER_NAMES = [f"L{i}" for i in range(N_LAYERS)]


def info_tables(events: EventSet) -> list[Table]:
    spec = events.detector_spec
    setting = f"absorber {spec.get('absorber', '?')}, field {spec.get('field', '?')}"
    if not events.n_events:
        return [(f"totals ({setting})", ["events"], [["0"]])]
    obs = shower_observables(events)
    occupancy = (obs.layer_hits > 0).mean(axis=0)
    layer_rows = [
        [name, f"{o:.3f}", f"{h:.2f}", f"{e:.3f}"]
        for name, o, h, e in zip(LAYER_NAMES, occupancy, obs.layer_hits.mean(axis=0), obs.layer_energy.mean(axis=0), strict=True)
    ]
    tables: list[Table] = [("per layer", ["layer", "occupancy", "hits/event", "energy/event (MeV)"], layer_rows)]

    names = {pdg: name for name, (pdg, _) in PARTICLES.items()}
    particles = ", ".join(f"{names.get(int(p), p)} {int(c)}" for p, c in zip(*np.unique(events.conditions["pdg"], return_counts=True), strict=True))
    cos_theta = events.conditions["direction"][:, 2].astype(np.float64)
    totals = [
        ["particles", particles],
        ["incident energy (GeV)", f"{obs.energy.min():.3g} to {obs.energy.max():.3g}, mean {obs.energy.mean():.3g}"],
        ["largest polar angle (deg)", f"{np.degrees(np.arccos(np.clip(cos_theta.min(), -1, 1))):.2f}"],
        ["hits/event", f"{obs.hits.mean():.1f} (std {obs.hits.std():.1f})"],
        ["hit energy/event (MeV)", f"{obs.visible.mean() * 1000:.2f}"],
        ["sampling fraction (hits)", f"{obs.response.mean():.5f}"],
    ]
    if obs.truth_visible is not None:
        totals.append(["sampling fraction (all silicon, Geant4 truth)", f"{(obs.truth_visible / obs.energy).mean():.5f}"])
    tables.append((f"totals ({setting})", ["quantity", "value"], totals))

    edges = energy_edges(obs.energy)
    resp = response_in_bins(obs, edges)
    truth = response_in_bins(obs, edges, obs.truth_visible) if obs.truth_visible is not None else None
    which = bin_of(obs.energy, edges)
    cog = obs.cog_depth_mm
    rows = []
    for b in range(len(edges) - 1):
        m = which == b
        row = [f"{edges[b]:.3g}-{edges[b + 1]:.3g}", str(int(m.sum()))]
        row += [fmt_value("{:.5f}", resp.response[b]), fmt_value("{:.4f}", resp.resolution[b])]
        row.append(f"{np.nanmean(cog[m]):.1f}" if m.any() and np.isfinite(cog[m]).any() else "n/a")
        if truth is not None:
            row += [fmt_value("{:.5f}", truth.response[b]), fmt_value("{:.4f}", truth.resolution[b])]
        rows.append(row)
    columns = ["E GeV", "events", "E_hits/E", "std/mean", "depth cog (mm)"]
    if truth is not None:
        columns += ["E_Si/E (truth)", "std/mean (truth)"]
    title = f"sampling fraction in bins of incident energy (hits above threshold; truth: all silicon; n/a: < {MIN_EVENTS_PER_BIN} events)"
    tables.append((title, columns, rows))
    return tables


def info_plots(events: EventSet, folder: Path) -> list[Path]:
    """occupancy.png and hits_per_event.png (shared), longitudinal_profile.png and cell_energy.png."""
    import matplotlib.pyplot as plt
    import mplhep as hep

    paths = save_info_plots(events, LAYER_NAMES, per_layer_counts(events, N_LAYERS), folder)
    folder = Path(folder)
    label = f"{events.detector} ({events.detector_spec.get('absorber', '?')}), {events.n_events} events"
    obs = shower_observables(events)
    with plt.style.context(hep.style.ROOT):
        fig, ax = plt.subplots(figsize=(8, 6))
        mean = obs.layer_energy.mean(axis=0) if obs.n else np.zeros(N_LAYERS)
        err = obs.layer_energy.std(axis=0) / np.sqrt(max(obs.n, 1)) if obs.n else np.zeros(N_LAYERS)
        ax.errorbar(np.arange(N_LAYERS), mean, yerr=err, fmt="o-", ms=4)
        ax.set_xlabel("layer")
        ax.set_ylabel("mean energy per event (MeV)")
        ax.set_title(label, fontsize=14)
        fig.tight_layout()
        paths.append(folder / "longitudinal_profile.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(8, 6))
        values = obs.cell_log10_energy
        edges = np.linspace(-1.0, max(float(values.max()) if values.size else 1.0, 0.0) + 0.05, 61)
        hist, _ = np.histogram(values, bins=edges)
        hep.histplot(hist, edges, ax=ax, yerr=np.sqrt(hist), histtype="step")
        ax.set_yscale("log")
        ax.set_xlabel("log10(cell energy / MeV)")
        ax.set_ylabel("cells")
        ax.set_title(label, fontsize=14)
        fig.tight_layout()
        paths.append(folder / "cell_energy.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
