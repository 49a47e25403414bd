"""Digitisation for the reconstruction: a hit becomes a measurement at the centre of its read-out cell.

Every module is read out in cells of its subsystem's pitch (odd_tracker.SUBSYSTEMS: 50 x 50 um
pixels, 80 um x 1.2 mm short strips, 80 um x 10.8 mm long strips). A hit is measured at the centre
of the cell it falls in, with the resolution of a uniform distribution over the cell, pitch /
sqrt(12), in u and in v. Single-cell clusters, no charge sharing, no noise, no inefficiency: the
same deterministic rule for Geant4 and for the model, so differences in tracking come from the hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd


@dataclass(frozen=True)
class Measurements:
    """Per hit (CSR over tracks, one track per event): module row, measured local (u, v), their
    resolutions, and the module's layer. Hits of an event keep the event file's order."""

    offsets: np.ndarray  # (N+1,)
    module: np.ndarray  # (H,) rows of `modules`
    u: np.ndarray
    v: np.ndarray
    sigma_u: np.ndarray
    sigma_v: np.ndarray
    layer: np.ndarray
    modules: odd.Modules

    @property
    def n_tracks(self) -> int:
        return len(self.offsets) - 1

    def global_positions(self) -> np.ndarray:
        return odd.to_global(self.modules, self.module, np.stack([self.u, self.v], axis=1))

    def track(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def _pitches(modules: odd.Modules) -> tuple[np.ndarray, np.ndarray]:
    pitch_u, pitch_v, first = np.zeros(10), np.zeros(10), 0
    for sub in odd.SUBSYSTEMS:
        n = len(sub.radii_mm)
        pitch_u[first : first + n], pitch_v[first : first + n] = sub.pitch_u_mm, sub.pitch_v_mm
        first += n
    return pitch_u[modules.layer], pitch_v[modules.layer]


def digitize(events: EventSet, modules: odd.Modules | None = None) -> Measurements:
    """Measurements of every hit of an odd-tracker event file (see the module docstring)."""
    modules = modules if modules is not None else odd.build_modules()
    module = odd.module_index(modules, events.hits["geometry_id"])
    pitch_u, pitch_v = (p[module] for p in _pitches(modules))
    half_u, half_v = modules.half_u[module], modules.half_v[module]
    # cells counted from the module's lower edge; a hit on the far edge belongs to the last cell
    cell_u = np.minimum(np.floor((events.hits["local_u"] + half_u) / pitch_u), np.ceil(2 * half_u / pitch_u) - 1)
    cell_v = np.minimum(np.floor((events.hits["local_v"] + half_v) / pitch_v), np.ceil(2 * half_v / pitch_v) - 1)
    u = (np.maximum(cell_u, 0) + 0.5) * pitch_u - half_u
    v = (np.maximum(cell_v, 0) + 0.5) * pitch_v - half_v
    s12 = np.sqrt(12.0)
    return Measurements(events.offsets, module, u, v, pitch_u / s12, pitch_v / s12, modules.layer[module], modules)
