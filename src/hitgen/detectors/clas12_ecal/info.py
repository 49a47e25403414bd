"""clas12-ecal in `hitgen info`: the readout layers, and the response in bins of |p|."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Table
from hitgen.evaluation.info import per_layer_counts, per_layer_table, save_info_plots


@dataclass
class MomentumBin:
    lo: float
    hi: float
    n_events: int
    hits_mean: float
    total_adc_mean: float
    response_rel_std: float  # relative spread of total ADC / |p| (free of the bin's |p| width)
    visible_fraction_mean: float | None  # visible energy / |p| (Geant4 truth), if the file has it
    visible_fraction_rel_std: float | None


def momentum_bins(events: EventSet, n_bins: int = 8) -> list[MomentumBin]:
    if not events.n_events:
        return []
    p = np.linalg.norm(events.conditions["momentum"].astype(np.float64), axis=1)
    hpe = events.hits_per_event()
    total_adc = np.bincount(events.event_index(), events.hits["adc"].astype(np.float64), minlength=events.n_events)
    visible = events.truth.get("visible_energy_layer")
    vis_frac = visible.sum(axis=1) / p if visible is not None else None
    edges = np.linspace(np.floor(p.min() * 2) / 2, np.ceil(p.max() * 2) / 2, n_bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        m = which == b
        if not m.any():
            continue
        adc = total_adc[m]
        response = adc / p[m]
        vf = vis_frac[m] if vis_frac is not None else None
        bins.append(
            MomentumBin(
                lo=float(edges[b]),
                hi=float(edges[b + 1]),
                n_events=int(m.sum()),
                hits_mean=float(hpe[m].mean()),
                total_adc_mean=float(adc.mean()),
                response_rel_std=float(response.std() / response.mean()) if response.mean() > 0 else float("nan"),
                visible_fraction_mean=None if vf is None else float(vf.mean()),
                visible_fraction_rel_std=None if vf is None else float(vf.std() / vf.mean()),
            )
        )
    return bins


def _layers(events: EventSet) -> tuple[list[str], np.ndarray]:
    names = list(events.detector_spec.get("readout_layers", []))
    return names, per_layer_counts(events, len(names))


def info_tables(events: EventSet) -> list[Table]:
    tables = [per_layer_table(*_layers(events))]
    bins = momentum_bins(events)
    if bins:
        columns = ["|p| GeV", "events", "hits/event", "total ADC", "ADC/|p| spread"]
        has_truth = bins[0].visible_fraction_mean is not None
        if has_truth:
            columns += ["E_vis/|p|", "E_vis/|p| spread"]
        rows = []
        for b in bins:
            row = [f"{b.lo:.1f}-{b.hi:.1f}", str(b.n_events), f"{b.hits_mean:.1f}", f"{b.total_adc_mean:.4g}", f"{b.response_rel_std:.3f}"]
            if has_truth:
                row += [f"{b.visible_fraction_mean:.4f}", f"{b.visible_fraction_rel_std:.4f}"]
            rows.append(row)
        tables.append(("response in bins of |p| (spreads are relative: std / mean)", columns, rows))
    return tables


def info_plots(events: EventSet, folder: Path) -> list[Path]:
    return save_info_plots(events, *_layers(events), folder)
