"""The track GPT: mirrored binnings, the propagation tokens (Geant4 muons land on the
first candidate, and the tokens give back the hits up to the binning), training with exact resume,
and generation that is structurally valid and independent of the batch size."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from hitgen.core.binning import signed_hybrid
from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.families.track_gpt import tokenizer as tok
from hitgen.families.track_gpt.sampler import generate_tracks
from hitgen.models.io import load_model
from hitgen.training.trainer import train
from sameness import assert_same_events

CONFIG = "configs/track-gpt/tiny.toml"


@pytest.fixture(scope="module")
def geometry():
    return tok.Geometry()


@pytest.fixture(scope="module")
def muons(odd_muons):
    return odd_muons


def test_signed_binning_round_trip():
    b = signed_hybrid(1e-3, 50.0, 10, 290)
    x = np.concatenate([-np.geomspace(1e-3, 49, 500), [0.0], np.geomspace(1e-3, 49, 500), np.linspace(-1e-3, 1e-3, 101)])
    k = b.encode(x)
    assert k.min() >= 0 and k.max() < b.n_bins
    back = b.decode(k)
    assert np.all(np.sign(back) == np.where(x >= 0, 1, -1))
    big = np.abs(x) > 1e-3
    ratio = (5e4) ** (1 / 290)  # one log bin
    assert np.all(np.abs(back[big] / x[big] - 1) <= ratio - 1)
    assert np.all(np.abs(back[~big] - x[~big]) <= 1e-4 / 2 + 1e-12)  # linear bins of 0.1 um


@pytest.mark.geant4
def test_tokens_give_back_the_geant4_hits(muons, geometry):
    events = EventSet.read(muons)
    t = tok.encode(events, geometry)
    assert t.unmatched == 0
    hits = t.which[(t.which >= 0) & (t.which < tok.END)]
    assert np.mean(hits == 0) > 0.99  # the next hit is where the helix goes first
    assert np.all(t.which[np.arange(events.n_events), t.length - 1] == tok.END)
    offsets, back = tok.decode(t, events.conditions, geometry)
    np.testing.assert_array_equal(offsets, events.offsets)
    module = odd.module_index(geometry.modules, events.hits["geometry_id"])
    np.testing.assert_array_equal(back["module"], module)
    # deviations binned to a few per cent, and the walk continues from the decoded states: the hits
    # come back to a tenth of a micron typically, and always within a third of the pixel resolution
    # (50 um / sqrt 12 = 14 um)
    for k in ("local_u", "local_v"):
        err = np.abs(back[k] - events.hits[k])
        assert np.median(err) < 1e-4 and err.max() < 5e-3, k
    p = np.stack([events.hits[k] for k in ("px", "py", "pz")], 1).astype(np.float64)
    # within half the 0.01 GeV to which the paper's tokeniser rounds momenta
    assert np.abs(back["momentum"] - p).max() < 5e-3


@pytest.fixture(scope="module")
def tiny_model(muons, tmp_path_factory):
    return train(CONFIG, muons, tmp_path_factory.mktemp("trk") / "run")


@pytest.mark.geant4
def test_resume_continues_exactly(muons, tiny_model, tmp_path):
    run = tmp_path / "run"
    train(CONFIG, muons, run, stop_after=10)
    train(CONFIG, muons, run)
    rows = lambda p: list(csv.DictReader(open(p / "log.csv")))  # noqa: E731
    a, b = rows(tiny_model), rows(run)
    assert len(a) == len(b) == 30
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


@pytest.mark.geant4
def test_generation_is_valid_and_batch_independent(muons, tiny_model, geometry):
    model = load_model(tiny_model).model
    cond = {k: v[:40] for k, v in EventSet.read(muons).conditions.items()}
    offsets, hits = generate_tracks(model, cond, seed=3, batch_size=40, geometry=geometry)
    offsets_b, hits_b = generate_tracks(model, cond, seed=3, batch_size=7, geometry=geometry)
    assert_same_events((offsets, hits), (offsets_b, hits_b), "batch 40 vs 7")
    assert offsets[-1] > 0 and np.diff(offsets).max() <= tok.MAX_HITS
    module = odd.module_index(geometry.modules, hits["geometry_id"])
    m = geometry.modules
    assert np.all(np.abs(hits["local_u"]) <= m.half_u[module] + 1e-4) and np.all(np.abs(hits["local_v"]) <= m.half_v[module] + 1e-4)
    for i in range(40):  # every track moves outwards, never back into an earlier layer
        layers = m.layer[module[offsets[i] : offsets[i + 1]]]
        assert np.all(np.diff(layers) >= 0)
    other_seed, _ = generate_tracks(model, cond, seed=4, batch_size=40, geometry=geometry)
    assert not np.array_equal(other_seed, offsets) or not np.array_equal(_["local_u"], hits["local_u"])


@pytest.mark.geant4
def test_naive_decoding_draws_the_same_tracks(muons, tiny_model, geometry):
    """No cache, the whole sequence recomputed at every step (the bench's baseline): same tracks."""
    model = load_model(tiny_model).model
    cond = {k: v[:30] for k, v in EventSet.read(muons).conditions.items()}
    offsets, hits = generate_tracks(model, cond, seed=5, batch_size=30, geometry=geometry)
    offsets_n, hits_n = generate_tracks(model, cond, seed=5, batch_size=30, geometry=geometry, cache=False)
    assert_same_events((offsets, hits), (offsets_n, hits_n), "naive vs cache", atol=1e-5)


@pytest.mark.geant4
def test_bench_of_a_track_model(tiny_model):
    """The same JSON contract for the tracker: Geant4 and the model on the same muons."""
    from hitgen.benchmark.run import bench

    r = bench(str(tiny_model), events=16, batch_sizes=(4, 8), repeats=1, geant4_events=40)
    assert r["detector"] == "odd-tracker" and r["geant4"]["events"] == 40
    for key in ("geant4_events_per_s", "model_events_per_s", "speedup_vs_geant4", "naive_events_per_s", "speedup_vs_naive", "flops_per_event"):
        assert r[key] > 0, key
    assert 0 < r["roofline_fraction"] < 1
    assert r["per_batch"][0]["mean_sequence_length"] > 1


def test_flops_per_track_by_hand():
    from hitgen.families.track_gpt.flops import flops_per_track
    from hitgen.families.track_gpt.model import TrackGPTConfig

    cfg = TrackGPTConfig(d_model=4, n_blocks=1, n_heads=1, d_ff=8, n_features=3, n_conditions=2, which_vocab=2, value_vocab=5)
    # 2 positions: trunk 2 (4*16 + 2*4*8) + features 2*3*4 = 280 each; heads 2*4*2 + 2*4*5*5 = 216 each;
    # attention over 1 + 2 = 3 context positions, 2*2*4 each; condition MLP 2 (2*4 + 2*16) = 80
    assert flops_per_track(cfg, np.array([2])) == pytest.approx(2 * (280 + 216) + 3 * 16 + 80)


@pytest.mark.geant4
def test_cli_for_the_tracker(muons, tiny_model, tmp_path):
    """generate, info and simulate options through the command line; bad input in one line."""
    from test_cli import assert_one_line_error, hitgen

    out = tmp_path / "gen.h5"
    r = hitgen("generate", str(tiny_model), "--conditions", str(muons), "--out", str(out), "--batch-size", "64")
    assert r.returncode == 0, r.stderr
    generated = EventSet.read(out)
    assert generated.detector == "odd-tracker" and generated.n_events == 400 and "track-gpt" in generated.producer
    info = hitgen("info", str(out))
    assert info.returncode == 0 and "pixel 34 mm" in info.stdout and "long_strip 1020 mm" in info.stdout
    no_conditions = ("generate", str(tiny_model), "--momentum-range", "1:2", "--events", "5", "--out", str(tmp_path / "x.h5"))
    assert_one_line_error(hitgen(*no_conditions), "--conditions")
    static = ("generate", str(tiny_model), "--conditions", str(muons), "--out", str(tmp_path / "x.h5"), "--decoder", "static")
    assert_one_line_error(hitgen(*static), "decodes with plain or naive")
    assert_one_line_error(hitgen("simulate", "odd-tracker", "-n", "5", "-o", str(tmp_path / "y.h5"), "--momentum-range", "1:2"), "does not apply")
    assert_one_line_error(hitgen("simulate", "odd-tracker", "-n", "5", "-o", str(tmp_path / "y.h5"), "--particle", "proton"), "unknown particle")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_shipped_track_model_makes_tracks_that_fit():
    """models/odd-tracker-gpt loads without pickle (checksum verified) and its muons reconstruct:
    a broken or untrained model would not put eleven hits on a helix to the micron."""
    loaded = load_model("odd-tracker-gpt")
    assert loaded.config["architecture"] == "track-gpt" and loaded.config["detector_spec"]["name"] == "odd-tracker"
    kinematics = dict(particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
    cond = odd.sample_conditions(200, np.random.default_rng(8), **kinematics)
    offsets, hits = generate_tracks(loaded.model, cond, seed=8, batch_size=200)
    events = EventSet(odd.NAME, loaded.config["detector_spec"], cond, offsets, hits, loaded.producer)
    from hitgen.detectors.odd_tracker.tracking.reconstruct import reconstruct

    s = reconstruct(events).summary()
    assert 10.5 < events.hits_per_event().mean() < 11.6
    assert s["fitting_efficiency"] >= 0.97 and 0.85 < s["qop_pull_width"] < 1.3


@pytest.mark.geant4
def test_generation_pool_draws_what_one_process_draws(muons, tiny_model, tmp_path):
    """bench --processes: K processes with a share each give the same file as one process."""
    from hitgen.benchmark.pool import GenerationPool, generate_share
    from hitgen.families import SamplingOptions

    cond = {k: v[:50] for k, v in EventSet.read(muons).conditions.items()}
    opts = SamplingOptions(batch_size=16, seed=2)
    offsets, hits = generate_share(load_model(tiny_model), cond, opts, "cpu")
    pool = GenerationPool(str(tiny_model), 2)
    try:
        seconds, events = pool.run(cond, opts, tmp_path)
    finally:
        pool.close()
    assert seconds > 0 and pool.peak_rss_bytes > 0
    assert_same_events((events.offsets, events.hits), (offsets, hits), "2 processes vs 1")
