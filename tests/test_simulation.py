"""Real Geant4 runs of clas12-ecal (about 100 events each): physics, ranges and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.evaluation.info import per_layer_counts
from hitgen.simulation.runner import simulate

pytestmark = pytest.mark.geant4


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """100 events each: seed 7 with 2 workers and with 1 worker, seed 8, and a low-|p| sample."""
    d = tmp_path_factory.mktemp("g4")
    out = {}
    for name, seed, workers, p_range in (
        ("a2", 7, 2, (0.5, 10.0)),
        ("a1", 7, 1, (0.5, 10.0)),
        ("b2", 8, 2, (0.5, 10.0)),
        ("low", 9, 2, (0.5, 1.5)),
    ):
        summary = simulate("clas12-ecal", 100, d / f"{name}.h5", seed=seed, workers=workers, momentum_range=p_range)
        out[name] = EventSet.read(summary.path)
    return out


def test_visible_energy_follows_momentum(runs):
    e = runs["a2"]
    p = np.linalg.norm(e.conditions["momentum"].astype(np.float64), axis=1)
    visible = e.truth["visible_energy_layer"].sum(axis=1)
    frac = visible / p
    # a sampling calorimeter: a fixed fraction of the energy is visible (about 27% for 1 cm
    # scintillator per 2.2 mm lead), the same at all |p| within its fluctuations
    assert 0.24 < frac.mean() < 0.30
    assert np.corrcoef(p, visible)[0, 1] > 0.98
    lo, hi = p < 3, p > 7
    assert abs(frac[lo].mean() - frac[hi].mean()) < 0.02
    assert frac[lo].std() > frac[hi].std()  # relative resolution improves with energy
    total_adc = np.bincount(e.event_index(), e.hits["adc"].astype(float), minlength=e.n_events)
    assert np.corrcoef(p, total_adc)[0, 1] > 0.95
    assert total_adc[hi].mean() > 2.5 * total_adc[lo].mean()


def test_occupancy_falls_with_depth(runs):
    # 0.5-1.5 GeV photons: nearly all convert in PCAL (6.3 X0), the shower peaks in ECIN and has
    # mostly died out by ECOUT (beyond 12.5 X0)
    e = runs["low"]
    counts = per_layer_counts(e, 9)
    occupancy = (counts > 0).mean(axis=0).reshape(3, 3).mean(axis=1)  # PCAL, ECIN, ECOUT
    hits = counts.mean(axis=0).reshape(3, 3).sum(axis=1)
    assert occupancy[2] < occupancy[1] - 0.05 and occupancy[2] < occupancy[0] - 0.05
    assert hits[0] > hits[1] > hits[2]
    visible = e.truth["visible_energy_layer"].mean(axis=0).reshape(3, 3).sum(axis=1)
    assert visible[2] < 0.5 * visible[1]


def test_indices_and_values_in_range(runs):
    e = runs["a2"]
    layer, strip = e.hits["layer"].astype(int), e.hits["strip"].astype(int)
    assert layer.min() >= 0 and layer.max() <= 8
    strips = np.array([68, 62, 62, 36, 36, 36, 36, 36, 36])
    assert (strip >= 0).all() and (strip < strips[layer]).all()
    assert per_layer_counts(e, 9).max() <= 20
    assert e.hits["adc"].min() >= 10 and e.hits["adc"].max() <= 94920
    tdc = e.hits["tdc"]
    assert (tdc >= 0).all() and tdc.max() < 2_000_000 and (tdc > 0).mean() > 0.5
    # hits are sorted by (layer, strip) within each event, one hit per strip
    key = e.event_index() * 1000 + layer * 100 + strip
    assert (np.diff(key) > 0).all()
    assert 25 < e.hits_per_event().mean() < 55
    assert "Geant4 geant4-11" in e.producer and e.seed == 7


def test_same_seed_same_file_whatever_the_worker_count(runs):
    a2, a1, b2 = runs["a2"], runs["a1"], runs["b2"]
    for k in ("momentum", "pdg"):
        np.testing.assert_array_equal(a2.conditions[k], a1.conditions[k])
    np.testing.assert_array_equal(a2.offsets, a1.offsets)
    for k in a1.hits:
        np.testing.assert_array_equal(a2.hits[k], a1.hits[k])
    np.testing.assert_array_equal(a2.truth["visible_energy_layer"], a1.truth["visible_energy_layer"])
    assert not np.array_equal(a2.conditions["momentum"], b2.conditions["momentum"])


def test_rerun_is_identical(runs, tmp_path):
    again = EventSet.read(simulate("clas12-ecal", 100, tmp_path / "again.h5", seed=7, workers=2).path)
    a2 = runs["a2"]
    np.testing.assert_array_equal(again.offsets, a2.offsets)
    for k in a2.hits:
        np.testing.assert_array_equal(again.hits[k], a2.hits[k])
