"""The shipped CLAS12 GPT: its folder is complete and consistent, and it generates valid events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hitgen.detectors import clas12_ecal
from hitgen.events import EventSet
from hitgen.models import io
from hitgen.sampling.generate import SamplingOptions, generate

NAME = "clas12-ecal-gpt"
FOLDER = io.SHIPPED / NAME


@pytest.fixture(scope="module")
def shipped():
    return io.load_model(NAME)  # by name, checksum verified


def test_folder_is_complete_and_records_its_data(shipped):
    assert {p.name for p in FOLDER.iterdir()} >= {"config.json", "model.safetensors", "README.md", "metrics.json"}
    data = shipped.config["data"]
    assert data["n_events"] >= 200_000 and sum(data["events_per_file"]) == data["n_events"]
    assert shipped.config["finished"]
    # the evaluation reference is a Geant4 sample with a seed never used in training
    metrics = json.loads((FOLDER / "metrics.json").read_text())
    assert metrics["reference"]["seed"] not in data["seeds"]
    assert metrics["conditions_matched"] and metrics["n_reference"] >= 20_000
    card = (FOLDER / "README.md").read_text()
    assert "hitgen simulate clas12-ecal" in card and "hitgen train" in card and f"seed {metrics['reference']['seed']}" in card


def test_generates_valid_showers(shipped):
    rng = np.random.default_rng(0)
    cond = clas12_ecal.sample_conditions(64, rng)
    offsets, hits = generate(shipped.model, cond["momentum"], SamplingOptions(batch_size=32, seed=0))
    events = EventSet("clas12-ecal", clas12_ecal.INFO.spec(), cond, offsets, hits, shipped.producer)
    layer, strip, event = events.hits["layer"].astype(int), events.hits["strip"].astype(int), events.event_index()
    assert (np.diff(event * 1000 + layer * 100 + strip) > 0).all()  # layers in order, strips rising
    assert (strip < np.array(clas12_ecal.STRIPS_PER_LAYER)[layer]).all()
    # a trained model makes showers of Geant4's size (37.6 +- 8.8 hits per event), not a few hits
    assert 25 < events.hits_per_event().mean() < 50
