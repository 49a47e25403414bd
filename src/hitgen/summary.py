"""What `hitgen info` reports about one event file: sizes, hits per event, occupancy, response."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.events import EventSet


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


@dataclass
class Summary:
    detector: str
    producer: str
    seed: int | None
    n_events: int
    n_hits: int
    hits_mean: float
    hits_std: float
    layer_names: list[str]
    occupancy: np.ndarray  # fraction of events with >= 1 hit, per readout layer
    layer_hits_mean: np.ndarray  # mean hits per event, per readout layer
    momentum_bins: list[MomentumBin]


def per_layer_counts(events: EventSet, n_layers: int) -> np.ndarray:
    """Hits per (event, readout layer), shape (N, n_layers)."""
    counts = np.zeros((events.n_events, n_layers), dtype=np.int64)
    np.add.at(counts, (events.event_index(), events.hits["layer"].astype(np.int64)), 1)
    return counts


def _tracker_layers(events: EventSet) -> tuple[list[str], np.ndarray]:
    """odd-tracker: layer names and hits per (event, layer), from the geometry ids."""
    from hitgen.detectors import odd_tracker as odd

    modules = odd.build_modules()
    layer = modules.layer[odd.module_index(modules, events.hits["geometry_id"])]
    names = [f"{sub.name} {r:g} mm" for sub in odd.SUBSYSTEMS for r in sub.radii_mm]
    counts = np.zeros((events.n_events, len(names)), dtype=np.int64)
    np.add.at(counts, (events.event_index(), layer), 1)
    return names, counts


def summarize(events: EventSet, n_momentum_bins: int = 8) -> Summary:
    spec = events.detector_spec
    names = list(spec.get("readout_layers", []))
    hpe = events.hits_per_event()
    counts = per_layer_counts(events, len(names)) if names and "layer" in events.hits else np.zeros((events.n_events, 0))
    if "geometry_id" in events.hits and events.detector == "odd-tracker":
        names, counts = _tracker_layers(events)
    bins: list[MomentumBin] = []
    if "momentum" in events.conditions and events.n_events and "adc" in events.hits:
        p = np.linalg.norm(events.conditions["momentum"].astype(np.float64), axis=1)
        total_adc = np.bincount(events.event_index(), events.hits["adc"].astype(np.float64), minlength=events.n_events)
        visible = events.truth.get("visible_energy_layer")
        vis_frac = visible.sum(axis=1) / p if visible is not None else None
        edges = np.linspace(np.floor(p.min() * 2) / 2, np.ceil(p.max() * 2) / 2, n_momentum_bins + 1)
        which = np.clip(np.digitize(p, edges) - 1, 0, n_momentum_bins - 1)
        for b in range(n_momentum_bins):
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
    return Summary(
        detector=events.detector,
        producer=events.producer,
        seed=events.seed,
        n_events=events.n_events,
        n_hits=events.n_hits,
        hits_mean=float(hpe.mean()) if events.n_events else float("nan"),
        hits_std=float(hpe.std()) if events.n_events else float("nan"),
        layer_names=names,
        occupancy=(counts > 0).mean(axis=0) if events.n_events else np.zeros(len(names)),
        layer_hits_mean=counts.mean(axis=0) if events.n_events else np.zeros(len(names)),
        momentum_bins=bins,
    )
