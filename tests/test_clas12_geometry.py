"""clas12-ecal geometry: strip indices of U, V, W on known points, strip outlines, kinematics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.path import Path as PolyPath

from hitgen.detectors.clas12_ecal import geometry as det

PCAL_U, PCAL_V, PCAL_W, ECIN_U = (det.READOUT_LAYERS[i] for i in (0, 1, 2, 3))


def test_layer_structure():
    assert det.N_LAYERS == 54
    assert det.STRIPS_PER_LAYER == (68, 62, 62, 36, 36, 36, 36, 36, 36)
    assert [len(r.layer_numbers) for r in det.READOUT_LAYERS] == [5, 5, 5, 5, 5, 5, 8, 8, 8]
    # U, V, W repeat within every module and each layer is read out by exactly one view
    assert sorted(n for r in det.READOUT_LAYERS for n in r.layer_numbers) == list(range(54))
    assert det.READOUT_LAYERS[7].layer_numbers[:2] == (31, 34)  # ECOUT V: 2nd and 5th ECOUT layers
    assert PCAL_U.strip_width_cm == pytest.approx(4.5)
    assert ECIN_U.strip_width_cm == pytest.approx(10.0)


def test_strip_index_at_known_points():
    h = PCAL_U.height_cm  # 306 cm
    a, b, c = det.triangle_vertices(h)
    centroid = np.zeros(2)
    inside = 1e-3  # move vertices a hair towards the centroid
    near = {name: v + (centroid - v) * inside for name, v in zip("ABC", (a, b, c), strict=True)}
    cases = {  # point -> (U, V, W): U counts from apex A to the base BC, V from B, W from C
        "A": (0, 61, 61),
        "B": (67, 0, 61),
        "C": (67, 61, 0),
    }
    for name, expected in cases.items():
        got = tuple(int(det.strip_index(near[name], r)) for r in (PCAL_U, PCAL_V, PCAL_W))
        assert got == expected, name
    # the centroid lies at d = 2H/3 in every view: 204 / 4.5 = 45.3, 204 / 4.935 = 41.3
    assert [int(det.strip_index(centroid, r)) for r in (PCAL_U, PCAL_V, PCAL_W)] == [45, 41, 41]
    assert int(det.strip_index(centroid, ECIN_U)) == 24  # 240 / 10
    # a point 1 cm in front of the apex along the axis: U coordinate 1 cm -> strip 0
    assert int(det.strip_index(np.array([-2 * h / 3 + 1.0, 0.0]), PCAL_U)) == 0
    # just beyond the base, and beside the triangle: outside
    assert int(det.strip_index(np.array([h / 3 + 0.5, 0.0]), PCAL_U)) == -1
    assert int(det.strip_index(np.array([0.0, 200.0]), PCAL_V)) == -1


def test_strip_outlines_tile_the_triangle_and_match_strip_index():
    rng = np.random.default_rng(0)
    for r in (PCAL_U, PCAL_V, PCAL_W, ECIN_U):
        polys = [det.strip_polygon(r, k) for k in range(r.n_strips)]
        area = sum(_area(p) for p in polys)  # outlines are counter-clockwise: positive areas
        assert area == pytest.approx(r.height_cm**2 / math.sqrt(3), rel=1e-9)
        assert len(polys[0]) == 3 and all(len(p) == 4 for p in polys[1:])  # a triangle, then trapezoids
        pts = rng.uniform(-250, 150, size=(4000, 2))
        idx = det.strip_index(pts, r)
        for k in (0, 7, r.n_strips // 2, r.n_strips - 1):
            inside = PolyPath(polys[k]).contains_points(pts)
            np.testing.assert_array_equal(inside, idx == k)


def _area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_frames_and_impact_points():
    n = det.LOCAL_TO_LAB[:, 2]
    assert math.degrees(math.acos(n[2])) == pytest.approx(25.0)
    # a photon along the face normal hits the face centre, at the origin of the face frame
    local = det.lab_to_local(det.impact_points(n[None], 0.0))
    np.testing.assert_allclose(local, [[0, 0, 0]], atol=1e-9)
    deep = det.lab_to_local(det.impact_points(n[None], np.array([10.0, 50.0])))
    np.testing.assert_allclose(deep[0], [[0, 0, 10], [0, 0, 50]], atol=1e-9)


def test_sampled_photons_are_in_range_and_hit_the_fiducial_triangle():
    c = det.sample_conditions(5000, np.random.default_rng(1), momentum_range=(0.5, 10.0))
    p = np.linalg.norm(c["momentum"].astype(np.float64), axis=1)
    assert p.min() >= 0.5 - 1e-5 and p.max() <= 10.0 + 1e-5
    theta = np.degrees(np.arccos(c["momentum"][:, 2] / p))
    phi = np.degrees(np.arctan2(c["momentum"][:, 1], c["momentum"][:, 0]))
    assert theta.min() >= 5 and theta.max() <= 35 and np.abs(phi).max() <= 30
    face = det.lab_to_local(det.impact_points(c["momentum"], 0.0))[:, :2]
    assert det.inside_triangle(face, PCAL_U.height_cm, det.FIDUCIAL_MARGIN_CM).all()
    assert (c["pdg"] == 22).all()
    # photons cover the whole fiducial triangle: its apex lies 2 * margin = 18 cm from A (U strip 4),
    # its base 9 cm before BC (d < 297 cm: U strip 65), and every U strip in between is hit
    used = np.unique(det.strip_index(face, PCAL_U))
    np.testing.assert_array_equal(used, np.arange(4, 66))
