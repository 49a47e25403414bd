"""Shared fixtures: a small real Geant4 sample for the model tests."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.simulation.runner import simulate


def toy_events(name: str) -> EventSet:
    """30 one-hit events of a made-up one-layer detector called `name`."""
    spec = {
        "name": name,
        "version": 1,
        "hit_fields": {f: {"dtype": dt, "shape": []} for f, dt in (("layer", "int8"), ("strip", "int16"), ("adc", "int32"))},
        "conditions": {"momentum": {"dtype": "float32", "shape": [3]}},
        "readout_layers": ["L0"],
        "strips_per_layer": [4],
    }
    n = 30
    return EventSet(
        name,
        spec,
        {"momentum": np.ones((n, 3), np.float32)},
        np.arange(n + 1, dtype=np.int64),
        {"layer": np.zeros(n, np.int8), "strip": np.ones(n, np.int16), "adc": np.full(n, 5, np.int32)},
        "toy",
    )


@pytest.fixture
def toy_file(tmp_path):
    """toy_file(name) writes toy_events(name) and returns its path."""
    return lambda name: toy_events(name).write(tmp_path / f"{name}.h5", overwrite=True)


@pytest.fixture(scope="session")
def g4_train_file(tmp_path_factory):
    """240 real Geant4 events of clas12-ecal (seed 31), for training and generation tests."""
    path = tmp_path_factory.mktemp("g4train") / "train.h5"
    return simulate("clas12-ecal", 240, path, seed=31, workers=2).path


@pytest.fixture(scope="session")
def odd_muons(tmp_path_factory):
    """400 real Geant4 muons of both charges in odd-tracker (seed 41), the shipped model's kinematics."""
    kinematics = dict(particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
    return simulate("odd-tracker", 400, tmp_path_factory.mktemp("trk") / "mu.h5", seed=41, workers=2, **kinematics).path
