"""Track reconstruction of odd-tracker events: seeding from pixel triplets, a helix fit, pulls.

One particle per event, so the hits of an event are the track's hits ("technical" efficiencies:
truth association, no pattern recognition among other particles' hits):
- seeding: a seed is three measurements on three different pixel layers, inside out, whose circle
  passes the beam line within SEED_MAX_D0_MM with pT above SEED_MIN_PT_GEV, whose straight line in
  (r, z) meets the beam line inside the beam spot (|z0| < SEED_MAX_Z0_MM) and passes the middle
  measurement within SEED_MAX_DZ_MM. Seeding efficiency: the fraction of tracks with at least one seed.
- fitting: the helix (tracking.helix) fitted to all the measurements of a seeded track, started from
  a circle and line through all of them (three pixel points alone leave the curvature of a 80 GeV
  track uncertain by more than itself: its sagitta over the pixels is 16 um); a fit succeeds when it
  converges and its chi-square probability is at least FIT_MIN_PROBABILITY. Fitting efficiency: the
  fraction of all tracks with a seed and a successful fit.
- pulls of q/p and phi0: (fitted - true) / fitted uncertainty, true from the event's initial
  momentum (the vertex is on the beam line, so the perigee is the vertex); their width is the
  standard deviation of the pulls within +-PULL_RANGE (the fraction outside is reported beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.tracking import helix
from hitgen.detectors.odd_tracker.tracking.measurements import Measurements, digitize

N_PIXEL_LAYERS = len(odd.SUBSYSTEMS[0].radii_mm)
SEED_MAX_D0_MM = 1.0
SEED_MIN_PT_GEV = 1.0
SEED_MAX_Z0_MM = odd.BEAM_SPOT_HALF_Z_MM + 5.0
SEED_MAX_DZ_MM = 1.0
FIT_MIN_PROBABILITY = 1e-3
PULL_RANGE = 5.0


@dataclass
class Tracks:
    """Per event: seeded, fitted (successful fit), fitted parameters, their uncertainties, chi2/ndf,
    and the truth the pulls are taken against."""

    seeded: np.ndarray  # (N,) bool
    fitted: np.ndarray  # (N,) bool
    params: np.ndarray  # (N, 5), NaN where not fitted
    sigma: np.ndarray  # (N, 5)
    q_over_p: np.ndarray  # (N,) fitted, and its uncertainty
    q_over_p_sigma: np.ndarray
    chi2: np.ndarray
    ndf: np.ndarray
    true_q_over_p: np.ndarray
    true_phi: np.ndarray

    def pulls(self) -> dict[str, np.ndarray]:
        f = self.fitted
        dphi = helix.wrap(self.params[f, 2] - self.true_phi[f])
        return {"qop": (self.q_over_p[f] - self.true_q_over_p[f]) / self.q_over_p_sigma[f], "phi": dphi / self.sigma[f, 2]}

    def summary(self) -> dict[str, float]:
        out = {"n_tracks": int(len(self.seeded)), "seeding_efficiency": float(self.seeded.mean()), "fitting_efficiency": float(self.fitted.mean())}
        for name, pull in self.pulls().items():
            core = pull[np.abs(pull) < PULL_RANGE]
            out[f"{name}_pull_width"] = float(core.std()) if len(core) > 1 else float("nan")
            out[f"{name}_pull_mean"] = float(core.mean()) if len(core) else float("nan")
            out[f"{name}_pull_outside"] = float(1 - len(core) / max(len(pull), 1))
        return out


def find_seed(points: np.ndarray, layers: np.ndarray, field_tesla: float = odd.FIELD_TESLA) -> tuple[int, int, int] | None:
    """The first triplet (inside out, innermost layers first) of pixel measurements passing the
    seed cuts, as indices into `points`; None if there is none."""
    pixel = np.flatnonzero(layers < N_PIXEL_LAYERS)
    for i, j, k in combinations(pixel, 3):
        if not layers[i] < layers[j] < layers[k]:
            continue
        if seed_compatible(points[[i, j, k]], field_tesla):
            return int(i), int(j), int(k)
    return None


def seed_compatible(p: np.ndarray, field_tesla: float) -> bool:
    """Three points (inside out): a helix from the beam line, inside the beam spot, above the pT cut."""
    (x1, y1), (x2, y2), (x3, y3) = p[:, :2]
    d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
    if abs(d) < 1e-12:
        return False
    s1, s2, s3 = x1**2 + y1**2, x2**2 + y2**2, x3**2 + y3**2
    xc = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
    yc = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
    radius = np.hypot(x1 - xc, y1 - yc)
    if abs(np.hypot(xc, yc) - radius) > SEED_MAX_D0_MM or helix.K * field_tesla * radius < SEED_MIN_PT_GEV:
        return False
    r = np.hypot(p[:, 0], p[:, 1])
    slope = (p[2, 2] - p[0, 2]) / (r[2] - r[0])
    z0 = p[0, 2] - slope * r[0]
    return abs(z0) < SEED_MAX_Z0_MM and abs(p[0, 2] + slope * (r[1] - r[0]) - p[1, 2]) < SEED_MAX_DZ_MM


def reconstruct(events: EventSet, measurements: Measurements | None = None) -> Tracks:
    """Seed and fit every event's track (see the module docstring)."""
    m = measurements if measurements is not None else digitize(events)
    n = m.n_tracks
    field = float(events.detector_spec.get("field_tesla", odd.FIELD_TESLA))
    points = m.global_positions()
    centre, phi_m = m.modules.centre()[m.module], m.modules.phi[m.module]
    seeded, fitted = np.zeros(n, bool), np.zeros(n, bool)
    params, sigma = np.full((n, 5), np.nan), np.full((n, 5), np.nan)
    qop, qop_sigma, chi2, ndf = (np.full(n, np.nan) for _ in range(4))
    for t in range(n):
        sl = m.track(t)
        seed = find_seed(points[sl], m.layer[sl], field)
        if seed is None:
            continue
        seeded[t] = True
        start = helix.helix_from_points(points[sl], field)
        r = helix.fit(start, centre[sl], phi_m[sl], m.u[sl], m.v[sl], m.sigma_u[sl], m.sigma_v[sl], field)
        chi2[t], ndf[t] = r.chi2, r.ndf
        if r.converged and r.ndf > 0 and r.probability >= FIT_MIN_PROBABILITY:
            fitted[t] = True
            params[t], sigma[t] = r.params, np.sqrt(np.diag(r.cov))
            qop[t], qop_sigma[t] = r.q_over_p, r.q_over_p_sigma
    p0 = events.conditions["momentum"].astype(np.float64)
    charge = events.conditions["charge"].astype(np.float64)
    return Tracks(seeded, fitted, params, sigma, qop, qop_sigma, chi2, ndf, charge / np.linalg.norm(p0, axis=1), np.arctan2(p0[:, 1], p0[:, 0]))
