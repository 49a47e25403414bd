"""Real Geant4 runs of odd-tracker: the primary crosses every layer, hits sit on their modules, the
2.6 T field bends the track with the radius its pT and charge demand, and the geometry has no
overlapping volumes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.geant4 import merge_steps
from hitgen.simulation.runner import simulate

pytestmark = pytest.mark.geant4


@pytest.fixture(scope="module")
def modules():
    return odd.build_modules()


@pytest.fixture(scope="module")
def muons(tmp_path_factory):
    """150 muons of either charge, phi inclusive, 70 < pT < 90 GeV (the paper's second sample)."""
    out = tmp_path_factory.mktemp("odd") / "mu.h5"
    summary = simulate("odd-tracker", 150, out, seed=3, workers=2, particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
    return EventSet.read(summary.path)


def _circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic circle fit: centre and radius."""
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    c = np.linalg.lstsq(a, -(x**2 + y**2), rcond=None)[0]
    xc, yc = -c[0] / 2, -c[1] / 2
    return xc, yc, float(np.sqrt(xc**2 + yc**2 - c[2]))


def test_every_layer_hit_on_its_modules(muons, modules):
    h = muons.hits
    idx = odd.module_index(modules, h["geometry_id"])
    assert np.all(np.abs(h["local_u"]) <= modules.half_u[idx] + 1e-3)
    assert np.all(np.abs(h["local_v"]) <= modules.half_v[idx] + 1e-3)
    layers = modules.layer[idx]
    event = muons.event_index()
    per_event = np.zeros((muons.n_events, 10), int)
    np.add.at(per_event, (event, layers), 1)
    assert np.all(per_event >= 1)  # |eta| < 0.25 from |z| < 50 mm: every layer, every track
    assert per_event.sum(1).mean() > 10.3  # plus hits in the overlaps of neighbouring modules
    # hits come in the order the particle crossed the layers
    assert all(np.all(np.diff(layers[event == i]) >= 0) for i in range(muons.n_events))


def test_field_bends_with_the_radius_pt_demands(muons, modules):
    h = muons.hits
    idx = odd.module_index(modules, h["geometry_id"])
    xyz = odd.to_global(modules, idx, np.stack([h["local_u"], h["local_v"]], 1))
    event = muons.event_index()
    p0 = muons.conditions["momentum"].astype(np.float64)
    ratio, sign = [], []
    for i in range(muons.n_events):
        xc, yc, r = _circle(xyz[event == i, 0], xyz[event == i, 1])
        ratio.append(0.299792458 * odd.FIELD_TESLA * r / 1000 / np.hypot(p0[i, 0], p0[i, 1]))
        sign.append(-np.sign(p0[i, 0] * yc - p0[i, 1] * xc))  # B along +z bends positive charges clockwise
    assert abs(np.median(ratio) - 1) < 0.005 and np.std(ratio) < 0.03
    np.testing.assert_array_equal(np.array(sign), muons.conditions["charge"])
    assert len(set(muons.conditions["charge"].tolist())) == 2
    # a muon loses almost nothing: |p| after every hit within 0.1% of the initial |p|, never more
    p_hit = np.linalg.norm(np.stack([h["px"], h["py"], h["pz"]], 1).astype(np.float64), axis=1)
    loss = 1 - p_hit / np.linalg.norm(p0, axis=1)[event]
    assert np.all(loss > -1e-5) and np.all(loss < 1e-3)
    # z follows the polar angle from the vertex
    z_pred = muons.conditions["vertex"][event, 2] + np.hypot(xyz[:, 0], xyz[:, 1]) * p0[event, 2] / np.hypot(p0[event, 0], p0[event, 1])
    assert np.abs(xyz[:, 2] - z_pred).max() < 1.0


def test_merge_steps_one_hit_per_module_crossing():
    steps = [
        (5, 0, 0, 0, 1, 0, 0, 9, 0, 0),
        (5, 1, 0, 0, 2, 0, 0, 8, 0, 0),  # same module: merged, momentum of the last step
        (7, 3, 0, 0, 3, 1, 0, 7, 0, 0),
        (5, 9, 0, 0, 9, 2, 0, 6, 0, 0),  # module 5 again later: a new hit
    ]
    assert merge_steps(steps) == [(5, 1.0, 0.0, 0.0, 8, 0, 0), (7, 3.0, 0.5, 0.0, 7, 0, 0), (5, 9.0, 1.0, 0.0, 6, 0, 0)]


def test_neighbouring_modules_never_intersect(modules):
    """Rows along z overlap by 2%: neighbours in z sit at radii apart by more than the silicon's
    thickness. Neighbours in phi overlap at their edges: the inner one's edge stays below the outer
    one's back face (every combination of row parities)."""
    for layer in range(10):
        rows = np.nonzero(modules.layer == layer)[0]
        t, hu = modules.thickness[rows][0], modules.half_u[rows][0]
        phis, zs = np.unique(modules.phi[rows]), np.unique(modules.z[rows])
        grid = modules.radius[rows].reshape(len(phis), len(zs))  # built phi-major
        assert np.all(np.abs(np.diff(grid, axis=1)) > t)
        step = 2 * np.pi / len(phis)
        for a in range(len(zs)):
            for b in (a, min(a + 1, len(zs) - 1)):
                inner, outer = np.minimum(grid[:, a], np.roll(grid[:, b], -1)), np.maximum(grid[:, a], np.roll(grid[:, b], -1))
                edge = (inner + t / 2) * np.cos(step) + hu * np.sin(step)  # inner module's edge, seen from the outer one
                assert np.all(edge < outer - t / 2), f"layer {layer}"


def test_geant4_finds_no_overlaps():
    """Geant4's own check (random points on every surface) on the first 1000 modules (the inner
    pixel layers) and every passive volume (the whole detector passes too: 12 537 placements,
    about 40 s, see docs/detectors/odd-tracker.md)."""
    code = (
        "import geant4_pybind as g4\n"
        "from hitgen.detectors.odd_tracker.geant4 import make_construction\n"
        "c = make_construction(g4); c.Construct()\n"
        "pv = [o for o in c._keep if isinstance(o, g4.G4PVPlacement)]\n"
        "mods = [o for o in pv if o.GetName().startswith('Module')][:1000]\n"
        "other = [o for o in pv if not o.GetName().startswith('Module')]\n"
        "print(len(mods), sum(bool(o.CheckOverlaps(100, 0.0, False)) for o in mods + other))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, timeout=300)
    checked, bad = (int(v) for v in out.stdout.split()[-2:])
    assert checked == 1000 and bad == 0
