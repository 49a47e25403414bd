"""Per-event and per-hit observables of ild-ecal event files, shared by `hitgen info` and `evaluate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, SILICON_Z_MM

MIN_EVENTS_PER_BIN = 10  # an energy bin with fewer events (in either sample) gets no response


@dataclass
class ShowerObservables:
    energy: np.ndarray  # (N,) incident kinetic energy, GeV
    hits: np.ndarray  # (N,) hits per event
    layer_energy: np.ndarray  # (N, 30) MeV in the cells above threshold
    layer_hits: np.ndarray  # (N, 30)
    cell_log10_energy: np.ndarray  # (H,) log10 of every hit's energy in MeV
    truth_visible: np.ndarray | None  # (N,) GeV in the silicon before the threshold (Geant4 files only)

    @property
    def n(self) -> int:
        return len(self.energy)

    @property
    def visible(self) -> np.ndarray:
        """(N,) energy of the hits, GeV."""
        return self.layer_energy.sum(axis=1) / 1000.0

    @property
    def response(self) -> np.ndarray:
        """(N,) visible energy / incident energy."""
        return self.visible / self.energy

    @property
    def cog_depth_mm(self) -> np.ndarray:
        """(N,) energy-weighted mean depth of the silicon layers hit (nan for an empty event)."""
        total = self.layer_energy.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.layer_energy * SILICON_Z_MM).sum(axis=1) / total

    def select(self, idx: np.ndarray) -> ShowerObservables:
        return shower_observables_from(self, idx)


def shower_observables(events: EventSet) -> ShowerObservables:
    n = events.n_events
    event = events.event_index()
    layer = events.hits["layer"].astype(np.int64)
    energy = events.hits["energy"].astype(np.float64)
    layer_energy = np.zeros((n, N_LAYERS))
    np.add.at(layer_energy, (event, layer), energy)
    layer_hits = np.zeros((n, N_LAYERS))
    np.add.at(layer_hits, (event, layer), 1.0)
    truth = events.truth.get("visible_energy_layer")
    with np.errstate(divide="ignore"):
        log_e = np.log10(np.maximum(energy, 1e-12))
    return ShowerObservables(
        energy=events.conditions["energy"].astype(np.float64),
        hits=events.hits_per_event().astype(np.float64),
        layer_energy=layer_energy,
        layer_hits=layer_hits,
        cell_log10_energy=log_e,
        truth_visible=None if truth is None else truth.astype(np.float64).sum(axis=1) / 1000.0,
    )


def shower_observables_from(obs: ShowerObservables, idx: np.ndarray) -> ShowerObservables:
    """The observables of a subset of events (per-hit values are kept for the chosen events only
    where they can be told apart: the cell spectrum is rebuilt from per-event hit counts)."""
    idx = np.asarray(idx)
    counts = obs.hits.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cells = np.concatenate([obs.cell_log10_energy[offsets[i] : offsets[i + 1]] for i in idx]) if len(idx) else np.zeros(0)
    return ShowerObservables(
        energy=obs.energy[idx],
        hits=obs.hits[idx],
        layer_energy=obs.layer_energy[idx],
        layer_hits=obs.layer_hits[idx],
        cell_log10_energy=cells,
        truth_visible=None if obs.truth_visible is None else obs.truth_visible[idx],
    )


def energy_edges(energy: np.ndarray, n_bins: int = 6) -> np.ndarray:
    """Bin edges over the incident energies: geometric where they span more than a factor 3,
    else linear; one bin where they are (nearly) all the same."""
    lo, hi = float(np.min(energy)), float(np.max(energy))
    if hi <= lo * 1.001:
        return np.array([lo * 0.999, hi * 1.001])
    edges = np.geomspace(lo, hi, n_bins + 1) if hi > 3 * lo else np.linspace(lo, hi, n_bins + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    return edges


def bin_of(energy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.digitize(energy, edges) - 1, 0, len(edges) - 2)


@dataclass
class Response:
    """Per energy bin: events, mean response (visible / incident) and resolution (std / mean)."""

    n: np.ndarray
    response: np.ndarray
    resolution: np.ndarray


def response_in_bins(obs: ShowerObservables, edges: np.ndarray, visible: np.ndarray | None = None) -> Response:
    r = (obs.visible if visible is None else visible) / obs.energy
    which = bin_of(obs.energy, edges)
    k = len(edges) - 1
    n, mean, res = np.zeros(k, np.int64), np.full(k, np.nan), np.full(k, np.nan)
    for b in range(k):
        m = which == b
        n[b] = int(m.sum())
        if n[b] >= MIN_EVENTS_PER_BIN:
            mean[b] = r[m].mean()
            res[b] = r[m].std() / mean[b] if mean[b] > 0 else np.nan
    return Response(n, mean, res)
