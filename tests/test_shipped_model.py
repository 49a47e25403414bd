"""The shipped CLAS12 GPT: its folder is complete and consistent, and it generates valid events."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.detectors.clas12_ecal import geometry as clas12_ecal
from hitgen.families import SamplingOptions
from hitgen.families.clas12_gpt.generate import generate
from hitgen.models import io as io

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


def test_bf16_draws_the_fp32_distribution(shipped):
    """bf16 autocast (the fast CPU and GPU path) samples the distribution of the fp32 path: with the
    per-event random streams both draw from the same uniform numbers, so the events pair up, and the
    paired differences of the shower observables have no mean shift beyond 3 standard errors, while
    the two paths do differ (bf16 is not a no-op here). The lead (prefix and layer energies) runs in
    fp32 under autocast, so the drawn layer energies, and with them the event's total, are the fp32
    path's; the hits are drawn in bf16. Measured on 1024 events: with the lead in bf16 the total ADC
    shifted by -0.04% at 7 standard errors on an AVX2 CPU (-0.07%, 2 s.e., with native bf16), about 5
    at the 512 events here (bf16 runs emulated, 4 times slower than fp32, on AVX2); sampling at
    temperature 1.15 instead of 1 shifts the mean log event energy by 1.6%; the 20 000-event
    evaluation in the model card compares the two paths at the noise floor."""
    import torch

    cond = clas12_ecal.sample_conditions(512, np.random.default_rng(5))["momentum"]
    opts = SamplingOptions(batch_size=512, seed=3)
    fp32 = generate(shipped.model, cond, opts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = generate(shipped.model, cond, opts)

    def observables(offsets, hits):
        counts = np.diff(offsets)
        event = np.repeat(np.arange(len(counts)), counts)
        adc = np.bincount(event, weights=hits["adc"], minlength=len(counts))
        mean_log_adc = np.bincount(event, weights=np.log10(hits["adc"]), minlength=len(counts)) / np.maximum(counts, 1)
        w = hits["adc"] * (hits["layer"] == 0)  # the shower's position along PCAL U, in strips
        u = np.bincount(event, weights=w * hits["strip"], minlength=len(counts)) / np.maximum(np.bincount(event, weights=w, minlength=len(counts)), 1)
        return {"hits": counts.astype(np.float64), "log_adc_sum": np.log1p(adc), "mean_log_adc": mean_log_adc, "u": u}

    a, b = observables(*fp32), observables(*bf16)
    assert not np.array_equal(a["hits"], b["hits"]) and not np.array_equal(a["mean_log_adc"], b["mean_log_adc"])
    for key in a:
        d = b[key] - a[key]
        assert abs(d.mean()) < 3 * d.std(ddof=1) / np.sqrt(len(d)) + 1e-12, key
