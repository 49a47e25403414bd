"""odd-tracker geometry (no Geant4): the modules tile every layer without gaps, local
and global coordinates invert each other, geometry ids round-trip in the ACTS bit layout, and the
particle conditions follow their ranges."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.errors import HitgenError
from hitgen.detectors.odd_tracker import geometry as odd


@pytest.fixture(scope="module")
def modules():
    return odd.build_modules()


def test_layers_radii_and_ids(modules):
    radii = [r for sub in odd.SUBSYSTEMS for r in sub.radii_mm]
    assert radii == [34, 70, 116, 172, 260, 360, 500, 660, 820, 1020]
    assert len(np.unique(modules.geometry_id)) == len(modules)  # every module its own id
    ids = odd.decode_geometry_id(modules.geometry_id)
    assert set(ids["volume"]) == {17, 24, 29}
    for layer in range(10):
        rows = modules.layer == layer
        stagger = [s.stagger_mm for s in odd.SUBSYSTEMS for _ in s.radii_mm][layer]
        offsets = np.unique(np.round(modules.radius[rows] - radii[layer], 9))
        f = odd.Z_STAGGER_FRACTION
        np.testing.assert_allclose(offsets, np.array([-1 - f, -1 + f, 1 - f, 1 + f]) * stagger)
        assert len(set(ids["layer"][rows])) == 1 and ids["sensitive"][rows].min() == 1


def test_every_radial_ray_crosses_every_layer(modules):
    """In the transverse plane a straight track from the beam line at any azimuth, and at any z of
    the barrel, lands inside a module of every layer (the tiling has no gaps)."""
    phi = np.linspace(0, 2 * np.pi, 20_001)
    for layer in range(10):
        rows = np.nonzero(modules.layer == layer)[0]
        ring = rows[modules.z[rows] == modules.z[rows][0]]  # one ring (all rings share the phi tiling)
        d = phi[:, None] - modules.phi[ring][None]
        d = (d + np.pi) % (2 * np.pi) - np.pi
        local_u = modules.radius[ring][None] * np.tan(np.clip(d, -1.5, 1.5))
        covered = ((np.abs(d) < np.pi / 2) & (np.abs(local_u) <= modules.half_u[ring][None])).any(axis=1)
        assert covered.all(), f"layer {layer}: {int((~covered).sum())} azimuths in a gap"
        z = np.linspace(-1, 1, 5001) * (modules.z[rows].max() + modules.half_v[rows][0])
        zs = np.unique(modules.z[rows])
        assert (np.abs(z[:, None] - zs[None]) <= modules.half_v[rows][0]).any(axis=1).all()


def test_local_and_global_invert_each_other(modules):
    rng = np.random.default_rng(1)
    index = rng.integers(0, len(modules), 1000)
    local = np.stack(
        [rng.uniform(-1, 1, 1000) * modules.half_u[index], rng.uniform(-1, 1, 1000) * modules.half_v[index], rng.uniform(-0.1, 0.1, 1000)], 1
    )
    points = odd.to_global(modules, index, local)
    np.testing.assert_allclose(odd.to_local(modules, index, points), local, atol=1e-9)
    # by hand: the centre of a module is (0, 0, 0); one mm along u is one mm along (-sin phi, cos phi, 0)
    k = 5
    np.testing.assert_allclose(odd.to_local(modules, np.array([k]), modules.centre()[[k]]), [[0, 0, 0]], atol=1e-12)
    step = modules.centre()[k] + np.array([-np.sin(modules.phi[k]), np.cos(modules.phi[k]), 0.0])
    np.testing.assert_allclose(odd.to_local(modules, np.array([k]), step[None]), [[1, 0, 0]], atol=1e-12)


def test_geometry_id_round_trip_and_range():
    gid = odd.encode_geometry_id(np.array([17, 24, 29]), np.array([2, 8, 4]), np.array([1, 1000, 0xFFFFF]))
    assert gid.dtype == np.uint64 and int(gid[0]) == (17 << 56) | (2 << 36) | (1 << 8)
    back = odd.decode_geometry_id(gid)
    assert back["volume"].tolist() == [17, 24, 29] and back["layer"].tolist() == [2, 8, 4] and back["sensitive"].tolist() == [1, 1000, 0xFFFFF]
    with pytest.raises(ValueError, match="sensitive"):
        odd.encode_geometry_id(17, 2, 0x100000)


def test_conditions_follow_their_ranges():
    c = odd.sample_conditions(20_000, np.random.default_rng(0), "mu+-", (70, 90), (0.05, 0.25), None)
    p = c["momentum"].astype(np.float64)
    pt = np.hypot(p[:, 0], p[:, 1])
    eta = np.arcsinh(p[:, 2] / pt)
    phi = np.arctan2(p[:, 1], p[:, 0]) % (2 * np.pi)
    assert pt.min() >= 70 - 1e-3 and pt.max() <= 90 + 1e-3 and eta.min() >= 0.05 - 1e-5 and eta.max() <= 0.25 + 1e-5
    assert np.histogram(phi, bins=8, range=(0, 2 * np.pi))[0].min() > 2200  # phi inclusive
    assert set(c["pdg"]) == {13, -13} and np.all(c["charge"] == -np.sign(c["pdg"]))  # mu- is PDG +13
    assert np.all(c["vertex"][:, :2] == 0) and np.abs(c["vertex"][:, 2]).max() <= 50
    pions = odd.sample_conditions(10, np.random.default_rng(0), "pi+")
    assert np.all(pions["charge"] == 1)
    with pytest.raises(HitgenError, match="unknown particle"):
        odd.sample_conditions(1, np.random.default_rng(0), "proton")
