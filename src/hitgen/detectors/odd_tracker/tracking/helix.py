"""A helix in a uniform solenoid field: its intersection with a module plane and its fit to measurements.

Parameters at the perigee (the point of closest approach to the beam line, the z axis):
    d0 (mm): signed transverse distance, the perigee is d0 * (-sin phi0, cos phi0);
    z0 (mm): z at the perigee;
    phi0: azimuth of the momentum at the perigee;
    cot_theta: pz / pT;
    q_over_pt (1/GeV): charge over transverse momentum.
q/p = q_over_pt / sqrt(1 + cot_theta^2). In a field B along +z a particle of charge q turns with
signed curvature c = -q * K * B / pT (1/mm, K = 0.299792458e-3 GeV / (T mm)): positive charges turn
clockwise seen from +z. At transverse path length s from the perigee the track is at
    x = xc + sin(phi0 + c s) / c,  y = yc - cos(phi0 + c s) / c,  z = z0 + s cot_theta,
around the centre (xc, yc) = perigee + (-sin phi0, cos phi0) / c.

The fit is a least-squares fit (scipy's Levenberg-Marquardt) of the predicted local (u, v) on every
measured module to the measurements, in units of their resolutions: the circle and the line are
fitted together, as a helix. Multiple scattering and energy loss are not modelled (for the muons of
70-90 GeV this reconstruction is for, the deflection at the beam pipe and supports moves a hit by
about 1 um, against 14 um pixel resolution); electrons that radiate fail the fit's chi-square, as
they should. The covariance is (J^T J)^-1 at the minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

K = 0.299792458e-3  # GeV / (T mm): pT = K * B * R
N_PARAMS = 5
PARAM_NAMES = ("d0", "z0", "phi0", "cot_theta", "q_over_pt")
MIN_CURVATURE = 1e-12  # 1/mm; a straight line is the limit of a helix with this curvature


def curvature(q_over_pt: np.ndarray | float, field_tesla: float) -> np.ndarray | float:
    c = -np.asarray(q_over_pt) * K * field_tesla
    return np.where(np.abs(c) < MIN_CURVATURE, np.where(c < 0, -MIN_CURVATURE, MIN_CURVATURE), c)


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles to [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def helix_to_planes(x0, y0, z0, phi0, cot, c, centre, phi_m):
    """Crossing of helices (reference point x0, y0, z0 with direction phi0, cot theta, curvature c;
    arrays broadcasting against the module arrays centre (..., 3) and phi_m) with module planes:
    local u, v, transverse path length s (first crossing on the outgoing branch) and direction there."""
    xc, yc = x0 - np.sin(phi0) / c, y0 + np.cos(phi0) / c
    cos_m, sin_m = np.cos(phi_m), np.sin(phi_m)
    dist = (xc - centre[..., 0]) * cos_m + (yc - centre[..., 1]) * sin_m
    arg = -c * dist
    ok = np.abs(arg) <= 1.0
    psi = np.arcsin(np.clip(arg, -1.0, 1.0))
    turn = wrap(psi + phi_m - phi0)
    s = turn / c
    x = xc + np.sin(phi0 + turn) / c
    y = yc - np.cos(phi0 + turn) / c
    u = -(x - centre[..., 0]) * sin_m + (y - centre[..., 1]) * cos_m
    v = z0 + s * cot - centre[..., 2]
    return u, v, np.where(ok, s, -np.inf), phi0 + turn


def intersect(params: np.ndarray, centre: np.ndarray, phi_m: np.ndarray, field_tesla: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local (u, v) where the helix `params` (5,) crosses the planes of modules with centres (M, 3)
    and azimuths (M,), and whether it crosses them at all (ahead of the perigee, on its first,
    outgoing half turn): helix_to_planes from the perigee."""
    d0, z0, phi0, cot, qpt = params
    c = float(curvature(qpt, field_tesla))
    u, v, s, _ = helix_to_planes(-d0 * np.sin(phi0), d0 * np.cos(phi0), z0, phi0, cot, c, centre, phi_m)
    return u, v, s > 0


def helix_from_points(points: np.ndarray, field_tesla: float) -> np.ndarray:
    """Starting parameters from three or more points in flight order (an algebraic circle fit in
    the transverse plane, a straight line in s-z)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    sol = np.linalg.lstsq(a, -(x**2 + y**2), rcond=None)[0]
    xc, yc = -sol[0] / 2, -sol[1] / 2
    radius = np.sqrt(max(xc**2 + yc**2 - sol[2], 1e-9))
    # the sense of rotation from the first to the last point around the centre
    t0, t1 = np.arctan2(y[0] - yc, x[0] - xc), np.arctan2(y[-1] - yc, x[-1] - xc)
    ccw = wrap(t1 - t0) > 0
    c = 1.0 / radius if ccw else -1.0 / radius
    # perigee: the point of the circle nearest the z axis, C - R * C / |C|
    rc = max(np.hypot(xc, yc), 1e-12)
    px, py = xc * (1 - radius / rc), yc * (1 - radius / rc)
    rx, ry = (px - xc) / radius, (py - yc) / radius
    phi0 = np.arctan2(rx, -ry) if ccw else np.arctan2(-rx, ry)  # the direction z x r (ccw) or r x z
    d0 = -px * np.sin(phi0) + py * np.cos(phi0)
    s = wrap(np.arctan2(y - yc, x - xc) - np.arctan2(py - yc, px - xc)) / c
    cot, z0 = np.polyfit(s, z, 1) if len(points) > 1 else (0.0, z[0])
    q_over_pt = -c / (K * field_tesla)
    return np.array([d0, z0, phi0, cot, q_over_pt])


@dataclass
class FitResult:
    params: np.ndarray  # (5,)
    cov: np.ndarray  # (5, 5)
    chi2: float
    ndf: int
    converged: bool

    @property
    def probability(self) -> float:
        return float(stats.chi2.sf(self.chi2, self.ndf)) if self.ndf > 0 else float("nan")

    @property
    def q_over_p(self) -> float:
        return float(self.params[4] / np.hypot(1.0, self.params[3]))

    @property
    def q_over_p_sigma(self) -> float:
        """Propagated from (cot_theta, q_over_pt): q/p = q_over_pt / sqrt(1 + cot^2)."""
        cot, qpt = self.params[3], self.params[4]
        norm = np.hypot(1.0, cot)
        grad = np.array([-qpt * cot / norm**3, 1.0 / norm])
        return float(np.sqrt(max(grad @ self.cov[3:5, 3:5] @ grad, 0.0)))


def fit(
    start: np.ndarray,
    centre: np.ndarray,
    phi_m: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    sigma_u: np.ndarray,
    sigma_v: np.ndarray,
    field_tesla: float,
) -> FitResult:
    """Least-squares helix through measurements (u, v) on modules (centre, phi_m) from `start`."""

    def residuals(p: np.ndarray) -> np.ndarray:
        pu, pv, ok = intersect(p, centre, phi_m, field_tesla)
        miss = np.where(ok, 0.0, 1e3)  # a module the helix does not reach: a large residual
        return np.concatenate([(pu - u) / sigma_u + miss, (pv - v) / sigma_v + miss])

    scale = np.array([0.01, 0.1, 1e-4, 1e-4, 1e-4])
    try:
        res = optimize.least_squares(residuals, start, method="lm", x_scale=scale, xtol=1e-10, ftol=1e-10)
    except (ValueError, np.linalg.LinAlgError):
        return FitResult(start, np.full((5, 5), np.nan), float("inf"), 2 * len(u) - N_PARAMS, False)
    jac = res.jac
    try:
        cov = np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov = np.full((5, 5), np.nan)
    chi2 = float(np.sum(res.fun**2))
    return FitResult(res.x, cov, chi2, 2 * len(u) - N_PARAMS, bool(res.success) and np.all(np.isfinite(cov)))
