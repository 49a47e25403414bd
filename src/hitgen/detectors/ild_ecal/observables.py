"""Per-event and per-hit observables of ild-ecal event files, shared by `hitgen info` and `evaluate`.

Positions are measured from the shower axis: the straight line through the entry point along the
incident direction (the field bends charged particles away from it; that shows as an offset).
Per hit, dx and dy are the cell centre minus the axis in the plane of the hit's silicon layer, r the
distance of (cell centre, silicon z) from the axis line in 3-D. Definitions: docs/detectors/ild-ecal.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, SILICON_Z_MM, layout_of
from hitgen.detectors.ild_ecal.views import HALF_WINDOW, WINDOW, entry_cells

MIN_EVENTS_PER_BIN = 10  # an energy bin with fewer events (in either sample) gets no response
# The shower starts in the first of two consecutive layers that each hold at least this much: about
# two minimum-ionising particles (a 10 GeV muon leaves 0.24 MeV per layer, measured), i.e. a pair.
START_MEV = 0.5
NO_START = N_LAYERS  # the start layer of an event without such a pair of layers
CONDITION_COLUMNS = 8  # energy, direction (3), entry point (3), pdg


@dataclass
class ShowerObservables:
    energy: np.ndarray  # (N,) incident kinetic energy, GeV
    conditions: np.ndarray  # (N, 8) energy, direction, entry point, pdg: the paired split's key
    hits: np.ndarray  # (N,) hits per event
    layer_energy: np.ndarray  # (N, 30) MeV in the cells above threshold
    layer_hits: np.ndarray  # (N, 30)
    layer_window_hits: np.ndarray  # (N, 30) hits inside the 30 x 30 voxel window (views.voxels)
    layer_cx: np.ndarray  # (N, 30) energy-weighted mean dx per layer, mm (0 in an empty layer)
    layer_cy: np.ndarray
    layer_wx: np.ndarray  # (N, 30) energy-weighted std of dx per layer, mm (0 in an empty layer)
    layer_wy: np.ndarray
    cog_x: np.ndarray  # (N,) energy-weighted mean dx over the event, mm (nan for an empty event)
    cog_y: np.ndarray
    width_x: np.ndarray  # (N,) energy-weighted std of dx over the event, mm (nan for an empty event)
    width_y: np.ndarray
    cell_log10_energy: np.ndarray  # (H,) log10 of every hit's energy in MeV
    hit_energy: np.ndarray  # (H,) MeV
    hit_layer: np.ndarray  # (H,) int8
    hit_r: np.ndarray  # (H,) mm from the shower axis
    hit_window: np.ndarray  # (H,) int32 flat index layer * 900 + i * 30 + j in the window, -1 outside
    truth_visible: np.ndarray | None  # (N,) GeV in the silicon before the threshold (Geant4 files only)
    silicon_z_mm: np.ndarray = field(default_factory=lambda: SILICON_Z_MM)  # (30,) of the events' layout

    @property
    def n(self) -> int:
        return len(self.energy)

    @property
    def pdg(self) -> np.ndarray:
        return self.conditions[:, 7].astype(np.int64)

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
            return (self.layer_energy * self.silicon_z_mm).sum(axis=1) / total

    @property
    def start_layer(self) -> np.ndarray:
        """(N,) first layer l with layers l and l + 1 both at START_MEV or more; NO_START (30) if none."""
        both = (self.layer_energy[:, :-1] >= START_MEV) & (self.layer_energy[:, 1:] >= START_MEV)
        return np.where(both.any(axis=1), both.argmax(axis=1), NO_START).astype(np.float64)

    @property
    def sparsity(self) -> np.ndarray:
        """(N, 30) fraction of each layer's window cells with a hit (CaloChallenge's sparsity)."""
        return self.layer_window_hits / (WINDOW * WINDOW)

    def event_of_hit(self) -> np.ndarray:
        return np.repeat(np.arange(self.n), self.hits.astype(np.int64))

    def select(self, idx: np.ndarray) -> ShowerObservables:
        """The observables of the events at idx (any order)."""
        idx = np.asarray(idx, dtype=np.int64)
        counts = self.hits.astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[idx]
        chosen = counts[idx]
        flat = np.repeat(starts - np.concatenate([[0], np.cumsum(chosen)[:-1]]), chosen) + np.arange(chosen.sum())
        per_hit = {"cell_log10_energy", "hit_energy", "hit_layer", "hit_r", "hit_window"}
        parts = {}
        for f in fields(self):
            v = getattr(self, f.name)
            parts[f.name] = None if v is None else v if f.name == "silicon_z_mm" else (v[flat] if f.name in per_hit else v[idx])
        return ShowerObservables(**parts)


def _weighted_moments(group: np.ndarray, size: int, weight: np.ndarray, d: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and std of d per group (nan where a group weighs nothing)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(group, weight * d, minlength=size) / total
        var = np.bincount(group, weight * d * d, minlength=size) / total - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def shower_observables(events: EventSet) -> ShowerObservables:
    n = events.n_events
    event = events.event_index()
    h = events.hits
    layer = h["layer"].astype(np.int64)
    energy = h["energy"].astype(np.float64)
    c = events.conditions
    direction = c["direction"].astype(np.float64)
    entry = c["entry_point"].astype(np.float64)

    # offsets from the shower axis, in the plane of the hit's silicon
    geometry = layout_of(events.detector_spec)
    z = geometry.silicon_z_mm[layer]
    slope = direction[:, :2] / direction[:, 2:3]
    x, y = geometry.cell_centre_mm(h["cell_x"]), geometry.cell_centre_mm(h["cell_y"])
    dx = x - (entry[event, 0] + slope[event, 0] * z)
    dy = y - (entry[event, 1] + slope[event, 1] * z)
    v = np.stack([x - entry[event, 0], y - entry[event, 1], z - entry[event, 2]], axis=1)
    along = (v * direction[event]).sum(axis=1)
    r = np.sqrt(np.maximum((v * v).sum(axis=1) - along**2, 0.0))

    # the voxel window of views.voxels, as a flat index per hit
    ex, ey = entry_cells(events)
    i = h["cell_x"].astype(np.int64) - (ex - HALF_WINDOW)[event]
    j = h["cell_y"].astype(np.int64) - (ey - HALF_WINDOW)[event]
    inside = (i >= 0) & (i < WINDOW) & (j >= 0) & (j < WINDOW)
    window = np.where(inside, (layer * WINDOW + i) * WINDOW + j, -1).astype(np.int32)

    size = n * N_LAYERS
    group = event * N_LAYERS + layer
    layer_energy = np.bincount(group, energy, minlength=size)
    layer_cx, layer_wx = _weighted_moments(group, size, energy, dx, layer_energy)
    layer_cy, layer_wy = _weighted_moments(group, size, energy, dy, layer_energy)
    total = np.bincount(event, energy, minlength=n)
    cog_x, width_x = _weighted_moments(event, n, energy, dx, total)
    cog_y, width_y = _weighted_moments(event, n, energy, dy, total)
    truth = events.truth.get("visible_energy_layer")

    def per_layer(a: np.ndarray) -> np.ndarray:
        return np.nan_to_num(a).reshape(n, N_LAYERS)

    return ShowerObservables(
        energy=c["energy"].astype(np.float64),
        conditions=np.column_stack([c["energy"], direction, entry, c["pdg"]]).astype(np.float64),
        hits=events.hits_per_event().astype(np.float64),
        layer_energy=layer_energy.reshape(n, N_LAYERS),
        layer_hits=np.bincount(group, minlength=size).reshape(n, N_LAYERS).astype(np.float64),
        layer_window_hits=np.bincount(group[inside], minlength=size).reshape(n, N_LAYERS).astype(np.float64),
        layer_cx=per_layer(layer_cx),
        layer_cy=per_layer(layer_cy),
        layer_wx=per_layer(layer_wx),
        layer_wy=per_layer(layer_wy),
        cog_x=cog_x,
        cog_y=cog_y,
        width_x=width_x,
        width_y=width_y,
        cell_log10_energy=np.log10(np.maximum(energy, 1e-12)),
        hit_energy=energy,
        hit_layer=layer.astype(np.int8),
        hit_r=r,
        hit_window=window,
        truth_visible=None if truth is None else truth.astype(np.float64).sum(axis=1) / 1000.0,
        silicon_z_mm=geometry.silicon_z_mm,
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
    """Per energy bin: events, mean response (visible / incident) and resolution (std / mean),
    with their statistical errors (std / sqrt(n); resolution / sqrt(2 n)), and the resolution of the
    narrowest 90% (rms90)."""

    n: np.ndarray
    response: np.ndarray
    resolution: np.ndarray
    response_error: np.ndarray
    resolution_error: np.ndarray
    rms90: np.ndarray


def rms90(values: np.ndarray) -> float:
    """The std / mean of the values in the narrowest range that holds 90% of them: the resolution as
    calorimetry quotes it where tails (a few showers far off) would rule the plain std / mean (CALICE's
    and ILD's RMS90). Of a normal distribution, 0.79 of its std / mean."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    k = int(np.ceil(0.9 * len(x)))
    start = int(np.argmin(x[k - 1 :] - x[: len(x) - k + 1]))
    core = x[start : start + k]
    return float(core.std() / core.mean())


def response_in_bins(obs: ShowerObservables, edges: np.ndarray, visible: np.ndarray | None = None) -> Response:
    r = (obs.visible if visible is None else visible) / obs.energy
    which = bin_of(obs.energy, edges)
    k = len(edges) - 1
    n = np.bincount(which, minlength=k).astype(np.int64)
    mean, res, mean_err, res_err, res90 = (np.full(k, np.nan) for _ in range(5))
    for b in np.flatnonzero(n >= MIN_EVENTS_PER_BIN):
        rb = r[which == b]
        mean[b] = rb.mean()
        mean_err[b] = rb.std() / np.sqrt(n[b])
        if mean[b] > 0:
            res[b] = rb.std() / mean[b]
            res_err[b] = res[b] / np.sqrt(2 * n[b])
            res90[b] = rms90(rb)
    return Response(n, mean, res, mean_err, res_err, res90)
