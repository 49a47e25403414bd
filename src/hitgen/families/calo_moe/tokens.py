"""ild-ecal showers as the foundation model's token sequences, and back.

A shower is the list of its non-empty voxels of the 30 x 30 x 30 window (hitgen.detectors.ild_ecal.
views: 30 layers x 30 x 30 cells centred on the entry cell), ordered by decreasing energy. Each
position carries the voxel (layer, x, y within the window; its flat index is layer * 900 + x * 30 + y)
and its binned energy. Here a voxel is one detector cell (the window's cells are the detector's), so
the voxel energies are the cell energies above the 0.1 MeV threshold.

Energy bins: ENERGY_BINS bins uniform in log E from the threshold (0.1 MeV) to E_MAX_MEV = 64 MeV,
2.6% wide. Above 64 MeV a voxel takes the last bin (counted: none of the 6000 W photon showers of
1-10 GeV has a cell above 20 MeV). A bin is decoded by a uniform draw in log E within it, so that the
generated energies are continuous; the 2.6% bin width is far below the per-voxel spread.

Total-energy modules (a module per (particle, material), not in the paper): a shower's total, the energy of
its window's voxels in MeV per GeV of incident energy, in TOTAL_BINS bins uniform in log from
TOTAL_MIN to TOTAL_MAX (0.5% wide; the samples of 1-10 GeV photons and electrons in W, Ta and Pb hold
8-53 MeV/GeV), one more token for a total below the range (an empty window).

Condition: the incident kinetic energy (log, standardised by the training data), the entry point
within the entry cell (the window is centred on the entry cell, so only the offset inside it is
left), and the direction's x and y (zero at normal incidence, the training samples' case).

Shape features (a total-energy module's further input, where the model says so): the shower's
energy-weighted mean layer, its spread in layers and its mean distance from the window's centre in
cells, from its voxels with every energy at its bin's centre, so that a module trained on Geant4's
voxels and one drawing a generated shower's total see the same quantity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import CELL_SIZE_MM, N_LAYERS, cell_centre_mm, cell_of, require_ild_layout
from hitgen.detectors.ild_ecal.views import HALF_WINDOW, WINDOW, entry_cells

ENERGY_BINS = 256
E_MIN_MEV, E_MAX_MEV = 0.1, 64.0
_LOG_MIN, _LOG_MAX = np.log(E_MIN_MEV), np.log(E_MAX_MEV)
N_VOXELS = N_LAYERS * WINDOW * WINDOW
EOS_LAYER = N_LAYERS  # the layer head's extra class: the shower ends
N_COND = 5  # standardised log energy, entry offset x and y in the cell (/ half cell), direction x and y
N_SHAPE = 3  # shape_features: mean layer, layer spread, mean distance from the window's centre

PARTICLES = {22: "gamma", 11: "e-", -11: "e+"}  # EM showers only (no hadronic physics data here)
MATERIALS = ("W", "Ta", "Pb")


def expert_key(particle: str, material: str) -> str:
    return f"{particle}-{material}"


def served_by(key: str, experts: list[str], lora_particles: list[str]) -> str | None:
    """The expert that serves showers of `key` (particle-material): their own; else, for a particle
    added by LoRA, the material's photon expert; else None."""
    if key in experts:
        return key
    particle, material = key.rsplit("-", 1)
    fallback = expert_key("gamma", material)
    return fallback if particle in lora_particles and fallback in experts else None


TOTAL_BINS = 800
TOTAL_MIN, TOTAL_MAX = 2.0, 100.0  # MeV per GeV
_TOTAL_LOG_MIN, _TOTAL_LOG_MAX = np.log(TOTAL_MIN), np.log(TOTAL_MAX)


def total_bin(mev_per_gev: np.ndarray) -> np.ndarray:
    """The token of a total: its bin, TOTAL_BINS (the special token) below TOTAL_MIN; above TOTAL_MAX the last bin."""
    r = np.asarray(mev_per_gev, dtype=np.float64)
    x = (np.log(np.maximum(r, TOTAL_MIN)) - _TOTAL_LOG_MIN) / (_TOTAL_LOG_MAX - _TOTAL_LOG_MIN) * TOTAL_BINS
    return np.where(r < TOTAL_MIN, TOTAL_BINS, np.clip(np.floor(x), 0, TOTAL_BINS - 1)).astype(np.int64)


def bin_total(bins: np.ndarray, u: np.ndarray) -> np.ndarray:
    """MeV per GeV of total tokens, log-uniform within the bin by the uniforms u; 0 for the special token."""
    bins = np.asarray(bins)
    r = np.exp(_TOTAL_LOG_MIN + (np.minimum(bins, TOTAL_BINS - 1) + u) * (_TOTAL_LOG_MAX - _TOTAL_LOG_MIN) / TOTAL_BINS)
    return np.where(bins >= TOTAL_BINS, 0.0, r)


# every (particle, material) a model may hold an expert for; batches carry the index into this list
EXPERT_KEYS = tuple(expert_key(p, m) for p in PARTICLES.values() for m in MATERIALS)


def energy_bin(energy_mev: np.ndarray) -> np.ndarray:
    x = (np.log(np.maximum(energy_mev, E_MIN_MEV)) - _LOG_MIN) / (_LOG_MAX - _LOG_MIN) * ENERGY_BINS
    return np.clip(np.floor(x), 0, ENERGY_BINS - 1).astype(np.int64)


def bin_energy(bins: np.ndarray, u: np.ndarray) -> np.ndarray:
    """MeV of bins, log-uniform within the bin by the uniforms u in [0, 1)."""
    return np.exp(_LOG_MIN + (bins + u) * (_LOG_MAX - _LOG_MIN) / ENERGY_BINS)


def particle_names(pdg: np.ndarray) -> np.ndarray:
    """The particle name of every PDG code; one clear error for a particle the family has no name for."""
    pdg = np.asarray(pdg)
    known = np.isin(pdg, list(PARTICLES))
    if not known.all():
        raise HitgenError(f"particle PDG {int(pdg[~known][0])} is not an EM particle of this model family (known: {sorted(PARTICLES)})")
    return np.array([PARTICLES[int(p)] for p in pdg])


def condition_vector(conditions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, N_COND) float32 conditions of the prefix token: log energy (GeV; the model standardises it),
    entry offset in the cell (/ half cell), direction x and y."""
    log_e = np.log(conditions["energy"].astype(np.float64))
    entry = conditions["entry_point"][:, :2].astype(np.float64)
    offset = (entry - cell_centre_mm(cell_of(entry))) / (CELL_SIZE_MM / 2)
    direction = conditions["direction"][:, :2].astype(np.float64)
    return np.concatenate([log_e[:, None], offset, direction], axis=1).astype(np.float32)


@dataclass
class Sequences:
    """Voxel tokens of N showers in CSR form, ordered by decreasing energy within each shower."""

    offsets: np.ndarray  # (N + 1,) int64
    layer: np.ndarray  # (T,) int64
    x: np.ndarray
    y: np.ndarray
    ebin: np.ndarray
    outside_energy: np.ndarray  # (N,) MeV outside the window (not in the tokens)
    window_energy: np.ndarray  # (N,) MeV of the tokens' voxels (before binning)
    clipped: int  # voxels above E_MAX_MEV (in the last bin)


def tokenize(events: EventSet) -> Sequences:
    require_ild_layout(events.detector_spec, "the calorimetry foundation model")
    h = events.hits
    ex, ey = entry_cells(events)
    event = events.event_index()
    i = h["cell_x"].astype(np.int64) - (ex - HALF_WINDOW)[event]
    j = h["cell_y"].astype(np.int64) - (ey - HALF_WINDOW)[event]
    energy = h["energy"].astype(np.float64)
    inside = (i >= 0) & (i < WINDOW) & (j >= 0) & (j < WINDOW)
    n = events.n_events
    outside = np.bincount(event[~inside], weights=energy[~inside], minlength=n)
    event, layer, i, j, energy = event[inside], h["layer"][inside].astype(np.int64), i[inside], j[inside], energy[inside]
    order = np.lexsort((-energy, event))
    counts = np.bincount(event, minlength=n)
    return Sequences(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        layer=layer[order],
        x=i[order],
        y=j[order],
        ebin=energy_bin(energy[order]),
        outside_energy=outside,
        window_energy=np.bincount(event, weights=energy, minlength=n),
        clipped=int((energy > E_MAX_MEV).sum()),
    )


def to_cells(entry_point: np.ndarray, x: np.ndarray, y: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Detector cells (cell_x, cell_y) of window voxels (x, y) of the given events."""
    cx, cy = cell_of(entry_point[:, 0]), cell_of(entry_point[:, 1])
    return x + (cx - HALF_WINDOW)[event], y + (cy - HALF_WINDOW)[event]


def shape_features(event: np.ndarray, layer: np.ndarray, x: np.ndarray, y: np.ndarray, ebin: np.ndarray, n: int) -> np.ndarray:
    """(n, N_SHAPE) float32 of the showers 0..n-1 from their voxels (event index, layer, x, y, energy
    bin): the energy-weighted mean layer, the layer spread and the mean distance from the window's
    centre (cells), energies at their bins' centres; zeros for a shower without voxels."""
    e = bin_energy(np.asarray(ebin), np.full(len(ebin), 0.5))
    w = np.bincount(event, weights=e, minlength=n)
    safe = np.where(w > 0, w, 1.0)
    mean = np.bincount(event, weights=e * layer, minlength=n) / safe
    spread = np.sqrt(np.maximum(np.bincount(event, weights=e * np.square(layer.astype(np.float64)), minlength=n) / safe - mean**2, 0.0))
    radius = np.bincount(event, weights=e * np.hypot(x - HALF_WINDOW, y - HALF_WINDOW), minlength=n) / safe
    return np.where(w[:, None] > 0, np.stack([mean, spread, radius], axis=1), 0.0).astype(np.float32)
