"""Helix propagation from a track state to the modules it crosses next (vectorised over tracks).

A state is a point on the track and the momentum there; in the solenoid field the track is a helix
through it (tracking.helix conventions). `crossings_ahead` finds, for every state, the modules of
the next few layers that helix crosses inside their bounds, ordered by path length: the candidates
for the track's next hit. Candidate modules of a layer are found where the helix meets the layer's
cylinder: the module columns and rows around that point (3 x 3), which covers the stagger, the
overlaps and the tilt of flat modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.tracking.helix import curvature, helix_to_planes, wrap

N_LAYERS = sum(len(s.radii_mm) for s in odd.SUBSYSTEMS)
S_MIN_MM = 1e-3  # a crossing must lie this far ahead of the state (the state's own module is excluded too)
EDGE_SLACK_MM = 0.05  # a crossing this close outside a module still makes it a candidate (hits on edges)


@dataclass(frozen=True)
class LayerGrid:
    """Per layer: first module row, modules in phi and in z, the z of the first row and the row step."""

    first: np.ndarray
    n_phi: np.ndarray
    n_z: np.ndarray
    z0: np.ndarray
    z_step: np.ndarray
    radius: np.ndarray

    @classmethod
    def of(cls, modules: odd.Modules) -> LayerGrid:
        first, n_phi, n_z, z0, z_step = [], [], [], [], []
        for layer in range(N_LAYERS):
            rows = np.flatnonzero(modules.layer == layer)
            zs = np.unique(modules.z[rows])
            first.append(rows[0])
            n_z.append(len(zs))
            n_phi.append(len(rows) // len(zs))
            z0.append(zs[0])
            z_step.append(zs[1] - zs[0] if len(zs) > 1 else 1.0)
        radii = np.array([r for s in odd.SUBSYSTEMS for r in s.radii_mm])
        return cls(*(np.array(a) for a in (first, n_phi, n_z, z0, z_step)), radii)


@dataclass
class Crossings:
    """Per state (R,), up to k crossings ordered by path length: module row (-1 = none), local u, v,
    path length s (mm, transverse), and the momentum direction there (azimuth)."""

    module: np.ndarray  # (R, k) int64
    u: np.ndarray
    v: np.ndarray
    s: np.ndarray
    phi_dir: np.ndarray


def _cylinder_crossing(x0, y0, phi0, c, radius):
    """Transverse path length to the first crossing of radius `radius` ahead (inf if never)."""
    xc, yc = x0 - np.sin(phi0) / c, y0 + np.cos(phi0) / c
    r_curv = 1.0 / np.abs(c)
    d = np.hypot(xc, yc)
    a = (radius**2 - r_curv**2 + d**2) / (2 * np.maximum(d, 1e-12))
    h2 = radius**2 - a**2
    reach = h2 >= 0
    h = np.sqrt(np.maximum(h2, 0.0))
    ux, uy = xc / np.maximum(d, 1e-12), yc / np.maximum(d, 1e-12)
    best = np.full(np.shape(x0), np.inf)
    for sign in (1.0, -1.0):
        px, py = a * ux - sign * h * uy, a * uy + sign * h * ux
        ang0 = np.arctan2(y0 - yc, x0 - xc)
        ang = np.arctan2(py - yc, px - xc)
        turn = wrap(ang - ang0)  # rotation from the state to that point
        s = turn / c  # signed by the sense of rotation: c > 0 turns counter-clockwise
        s = np.where(s < -S_MIN_MM, s + 2 * np.pi / np.abs(c), s)
        best = np.where(reach & (s > S_MIN_MM) & (s < best), s, best)
    return best


def crossings_ahead(
    modules: odd.Modules,
    grid: LayerGrid,
    position: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    current_module: np.ndarray,
    current_layer: np.ndarray,
    field_tesla: float = odd.FIELD_TESLA,
    layers_ahead: int = 3,
    k: int = 6,
) -> Crossings:
    """The modules the helix through each state crosses in its own layer (beyond its own module) and
    the next `layers_ahead - 1` layers, up to k, ordered by path length. position, momentum (R, 3);
    charge (R,); current_module (R,) (-1 before the first hit); current_layer (R,) (-1 at the vertex)."""
    x0, y0, z0 = position.T
    pt = np.hypot(momentum[:, 0], momentum[:, 1])
    phi0 = np.arctan2(momentum[:, 1], momentum[:, 0])
    cot = momentum[:, 2] / np.maximum(pt, 1e-12)
    c = curvature(charge.astype(np.float64) / np.maximum(pt, 1e-9), field_tesla)
    centre_all = modules.centre()
    cand = []
    for j in range(layers_ahead):
        layer = np.clip(current_layer + j, 0, N_LAYERS - 1)
        valid_layer = (current_layer + j >= 0) & (current_layer + j < N_LAYERS)
        s_cyl = _cylinder_crossing(x0, y0, phi0, c, grid.radius[layer])
        if j == 0:  # own layer: the overlap partner lies just ahead, at about the layer radius
            s_cyl = np.where(current_layer >= 0, np.minimum(s_cyl, S_MIN_MM * 10), s_cyl)
        s_use = np.where(np.isfinite(s_cyl), s_cyl, 0.0)
        phi_c = phi0 + c * s_use
        xc, yc = x0 - np.sin(phi0) / c, y0 + np.cos(phi0) / c
        px, py = xc + np.sin(phi_c) / c, yc - np.cos(phi_c) / c
        pz = z0 + s_use * cot
        n_phi, n_z = grid.n_phi[layer], grid.n_z[layer]
        k_phi = np.round(np.arctan2(py, px) * n_phi / (2 * np.pi)).astype(np.int64)
        k_z = np.clip(np.round((pz - grid.z0[layer]) / grid.z_step[layer]).astype(np.int64), 0, n_z - 1)
        for dphi in (-1, 0, 1):
            for dz in (-1, 0, 1):
                kz = k_z + dz
                row = grid.first[layer] + ((k_phi + dphi) % n_phi) * n_z + np.clip(kz, 0, n_z - 1)
                keep = valid_layer & np.isfinite(s_cyl) & (kz >= 0) & (kz < n_z) & (row != current_module)
                cand.append(np.where(keep, row, -1))
    rows = np.stack(cand, axis=1)  # (R, C)
    safe = np.maximum(rows, 0)
    u, v, s, phi_dir = helix_to_planes(
        x0[:, None], y0[:, None], z0[:, None], phi0[:, None], cot[:, None], c[:, None], centre_all[safe], modules.phi[safe]
    )
    in_u = np.abs(u) <= modules.half_u[safe] + EDGE_SLACK_MM
    inside = (rows >= 0) & in_u & (np.abs(v) <= modules.half_v[safe] + EDGE_SLACK_MM) & (s > S_MIN_MM)
    # no module appears twice: rows beyond the barrel ends are -1, not clipped, and the layers differ
    key = np.where(inside, s, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    take = np.take_along_axis
    found = take(inside, order, 1)
    out_rows = np.where(found, take(rows, order, 1), -1)
    return Crossings(out_rows, take(u, order, 1), take(v, order, 1), np.where(found, take(s, order, 1), np.inf), take(phi_dir, order, 1))
