"""The odd-tracker reconstruction: helix geometry, fit statistics on toy tracks, digitisation,
seeding and fitting cuts that reject broken tracks, and Geant4 muons reconstructed as expected."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.tracking import helix
from hitgen.detectors.odd_tracker.tracking.measurements import digitize
from hitgen.detectors.odd_tracker.tracking.reconstruct import find_seed, reconstruct

B = odd.FIELD_TESLA


@pytest.fixture(scope="module")
def modules():
    return odd.build_modules()


def crossings(modules, params):
    """Modules a helix crosses inside their bounds, in flight order, and the local (u, v) there."""
    u, v, ok = helix.intersect(params, modules.centre(), modules.phi, B)
    idx = np.flatnonzero(ok & (np.abs(u) <= modules.half_u) & (np.abs(v) <= modules.half_v))
    order = np.argsort(np.hypot(*modules.centre()[idx, :2].T))
    return idx[order], u[idx[order]], v[idx[order]]


def toy_event_set(modules, params: np.ndarray, smear: float, rng) -> EventSet:
    """Events whose hits lie on the given helices, shifted by Gaussian noise of `smear` mm."""
    offsets, cols = [0], {k: [] for k in ("geometry_id", "local_u", "local_v", "px", "py", "pz")}
    for p in params:
        idx, u, v = crossings(modules, p)
        cols["geometry_id"].append(modules.geometry_id[idx])
        cols["local_u"].append(u + rng.normal(0, smear, len(u)))
        cols["local_v"].append(v + rng.normal(0, smear, len(v)))
        for k in ("px", "py", "pz"):
            cols[k].append(np.zeros(len(idx)))
        offsets.append(offsets[-1] + len(idx))
    pt = 1 / np.abs(params[:, 4])
    momentum = np.stack([pt * np.cos(params[:, 2]), pt * np.sin(params[:, 2]), pt * params[:, 3]], 1)
    info = odd.INFO
    conditions = {
        "pdg": np.where(params[:, 4] > 0, -13, 13).astype(np.int32),
        "charge": np.sign(params[:, 4]).astype(np.int8),
        "vertex": np.stack([np.zeros(len(params)), np.zeros(len(params)), params[:, 1]], 1).astype(np.float32),
        "momentum": momentum.astype(np.float32),
    }
    hits = {k: np.concatenate(v).astype(info.spec()["hit_fields"][k]["dtype"]) for k, v in cols.items()}
    return EventSet(odd.NAME, info.spec(), conditions, np.array(offsets, np.int64), hits, "toy helices")


def random_params(rng, n: int) -> np.ndarray:
    q = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    cot = np.sinh(rng.uniform(0.05, 0.25, n))
    return np.stack([np.zeros(n), rng.uniform(-50, 50, n), rng.uniform(-np.pi, np.pi, n), cot, q / rng.uniform(70, 90, n)], 1)


def test_starting_parameters_recover_a_helix_exactly(modules):
    for q in (1, -1):
        for d0 in (0.0, 0.3, -0.3):
            true = np.array([d0, 12.0, 2.5, 0.15, q / 3.0])  # 3 GeV: a visibly bent track
            idx, u, v = crossings(modules, true)
            assert len(idx) >= 10
            points = odd.to_global(modules, idx, np.stack([u, v], 1))
            np.testing.assert_allclose(helix.helix_from_points(points, B), true, rtol=1e-6, atol=1e-7)


def test_fit_is_unbiased_with_unit_pulls_on_toy_tracks(modules):
    """Gaussian-smeared measurements of known helices: chi2/ndf averages 1 and the pulls of every
    parameter have mean 0 and width 1."""
    rng = np.random.default_rng(5)
    pulls, chi2_ndf = [], []
    sigma = 0.02
    n = 600
    for true in random_params(rng, n):
        idx, u, v = crossings(modules, true)
        mu, mv = u + rng.normal(0, sigma, len(u)), v + rng.normal(0, sigma, len(v))
        points = odd.to_global(modules, idx, np.stack([mu, mv], 1))
        s = np.full(len(idx), sigma)
        r = helix.fit(helix.helix_from_points(points, B), modules.centre()[idx], modules.phi[idx], mu, mv, s, s, B)
        assert r.converged
        diff = r.params - true
        diff[2] = np.angle(np.exp(1j * diff[2]))
        pulls.append(diff / np.sqrt(np.diag(r.cov)))
        chi2_ndf.append(r.chi2 / r.ndf)
    pulls = np.array(pulls)
    assert abs(np.mean(chi2_ndf) - 1) < 0.05
    # 4 standard errors: of a mean, 1 / sqrt(n); of a width, 1 / sqrt(2 n)
    assert np.all(np.abs(pulls.mean(0)) < 4 / np.sqrt(n)) and np.all(np.abs(pulls.std(0) - 1) < 4 / np.sqrt(2 * n))


def test_digitisation_measures_at_the_cell_centre(modules):
    rng = np.random.default_rng(0)
    events = toy_event_set(modules, random_params(rng, 3), 0.0, rng)
    m = digitize(events, modules)
    pixel = m.layer < 4
    assert np.all(m.sigma_u[pixel] == pytest.approx(0.05 / np.sqrt(12)))
    assert np.all(np.abs(m.u - events.hits["local_u"]) <= 0.5 * np.sqrt(12) * m.sigma_u + 1e-9)
    assert np.all(np.abs(m.v - events.hits["local_v"]) <= 0.5 * np.sqrt(12) * m.sigma_v + 1e-9)
    # by hand: a pixel hit at u = 0.012 mm lies in cell 168 of 336 (from -8.4 mm), centre 0.025 mm
    k = int(np.flatnonzero(pixel)[0])
    events.hits["local_u"][k] = 0.012
    assert digitize(events, modules).u[k] == pytest.approx(0.025)
    events.hits["local_u"][k] = modules.half_u[m.module[k]]  # the far edge: the last cell
    assert digitize(events, modules).u[k] == pytest.approx(8.4 - 0.025)


def test_broken_tracks_fail_seeding_or_fit(modules):
    rng = np.random.default_rng(2)
    params = random_params(rng, 40)
    good = toy_event_set(modules, params, 0.0, rng)
    tracks = reconstruct(good)
    assert tracks.seeded.all() and tracks.fitted.all()
    # two pixel layers moved 5 mm in z: every pixel triplet is broken, no seed
    m = digitize(good, modules)
    points, layers = m.global_positions()[m.track(0)], m.layer[m.track(0)]
    assert find_seed(points, layers) is not None
    moved = points.copy()
    moved[(layers == 1) | (layers == 2), 2] += 5.0
    assert find_seed(moved, layers) is None
    # one strip hit 1 mm off in u (towards the module centre): still seeded, the fit's chi2 rejects it
    bad = toy_event_set(modules, params, 0.0, rng)
    for t in range(bad.n_events):
        sl = slice(int(bad.offsets[t]), int(bad.offsets[t + 1]))
        bad.hits["local_u"][sl][-3] -= np.sign(bad.hits["local_u"][sl][-3])
    broken = reconstruct(bad)
    assert broken.seeded.all() and not broken.fitted.any()


@pytest.mark.geant4
def test_geant4_muons_reconstruct(tmp_path):
    from hitgen.simulation.runner import simulate

    kinematics = dict(particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
    summary = simulate("odd-tracker", 300, tmp_path / "mu.h5", seed=21, workers=2, **kinematics)
    s = reconstruct(EventSet.read(summary.path)).summary()
    assert s["seeding_efficiency"] == 1.0 and s["fitting_efficiency"] >= 0.98
    # multiple scattering is not in the fit: pulls slightly wider than 1, never much
    assert 0.9 < s["qop_pull_width"] < 1.2 and 0.9 < s["phi_pull_width"] < 1.2
    assert abs(s["qop_pull_mean"]) < 0.2 and abs(s["phi_pull_mean"]) < 0.2
