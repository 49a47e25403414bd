"""Two views of ild-ecal event files, the shapes other shower models use.

- points: one row per hit, (x, y, layer, energy) with x, y in mm at the cell centre and energy in
  MeV (the point clouds of AllShowers and ShowerData);
- voxels: a WINDOW x WINDOW cell window of every layer centred on the entry cell, (N, 30, 30, 30)
  float32 MeV indexed [event, layer, x, y] (the CaloChallenge-style grids of the foundation model).
  Energy outside the window is counted and returned, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, layout_of

WINDOW = 30  # cells per side of the voxel window
HALF_WINDOW = WINDOW // 2  # the entry cell sits at index HALF_WINDOW of the window


@dataclass
class Points:
    """The hits of N events as points: CSR offsets (N+1,) and per-hit x, y (mm), layer, energy (MeV)."""

    offsets: np.ndarray
    x: np.ndarray  # float32 mm, cell centre
    y: np.ndarray
    layer: np.ndarray  # int8
    energy: np.ndarray  # float32 MeV

    def event(self, i: int) -> np.ndarray:
        """(hits, 4) float32 array of event i: x, y, layer, energy."""
        s = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return np.stack([self.x[s], self.y[s], self.layer[s].astype(np.float32), self.energy[s]], axis=1)


def points(events: EventSet) -> Points:
    h = events.hits
    geometry = layout_of(events.detector_spec)
    return Points(
        offsets=events.offsets.copy(),
        x=geometry.cell_centre_mm(h["cell_x"]).astype(np.float32),
        y=geometry.cell_centre_mm(h["cell_y"]).astype(np.float32),
        layer=h["layer"].astype(np.int8),
        energy=h["energy"].astype(np.float32),
    )


@dataclass
class Voxels:
    """The voxel view: grids (N, layers, WINDOW, WINDOW) float32 MeV, indexed [event, layer, x, y],
    the window's first cell per event (origin_x, origin_y), and what fell outside the window."""

    grid: np.ndarray
    origin_x: np.ndarray  # (N,) int64: cell_x of window index 0
    origin_y: np.ndarray
    outside_hits: np.ndarray  # (N,) int64 hits outside the window
    outside_energy: np.ndarray  # (N,) float64 MeV outside the window

    @property
    def outside_fraction(self) -> float:
        """Share of all hit energy outside the windows."""
        total = float(self.grid.sum(dtype=np.float64)) + float(self.outside_energy.sum())
        return float(self.outside_energy.sum()) / total if total > 0 else 0.0


def entry_cells(events: EventSet) -> tuple[np.ndarray, np.ndarray]:
    """The cell (x, y) where each particle enters the front face."""
    entry = events.conditions["entry_point"].astype(np.float64)
    geometry = layout_of(events.detector_spec)
    return geometry.cell_of(entry[:, 0]), geometry.cell_of(entry[:, 1])


def voxels(events: EventSet) -> Voxels:
    n = events.n_events
    ex, ey = entry_cells(events)
    ox, oy = ex - HALF_WINDOW, ey - HALF_WINDOW
    event = events.event_index()
    h = events.hits
    i = h["cell_x"].astype(np.int64) - ox[event]
    j = h["cell_y"].astype(np.int64) - oy[event]
    inside = (i >= 0) & (i < WINDOW) & (j >= 0) & (j < WINDOW)
    energy = h["energy"].astype(np.float64)
    grid = np.zeros((n, N_LAYERS, WINDOW, WINDOW), np.float32)
    np.add.at(grid, (event[inside], h["layer"][inside].astype(np.int64), i[inside], j[inside]), energy[inside].astype(np.float32))
    outside_hits = np.bincount(event[~inside], minlength=n).astype(np.int64)
    outside_energy = np.bincount(event[~inside], weights=energy[~inside], minlength=n)
    return Voxels(grid, ox, oy, outside_hits, outside_energy)
