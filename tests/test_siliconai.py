"""The SiliconAI paper's model: one token per feature in a shared dictionary, sliding
windows of four hits, one feature per step with allowed-token masks; trained and generated through
the same commands as the other models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.families.siliconai import tokenizer as tok
from hitgen.families.siliconai.data import SiliconAIData
from hitgen.families.siliconai.model import SiliconAI, SiliconAIConfig, siliconai_loss
from hitgen.families.siliconai.sampler import generate_siliconai
from hitgen.models.io import load_model
from hitgen.training.trainer import train
from sameness import assert_same_events

CONFIG = "configs/siliconai/tiny.toml"


@pytest.fixture(scope="module")
def muons(odd_muons):
    return EventSet.read(odd_muons)


@pytest.fixture(scope="module")
def data(muons):
    return SiliconAIData.from_events(muons)


@pytest.fixture(scope="module")
def tiny_run(odd_muons, tmp_path_factory):
    return train(CONFIG, odd_muons, tmp_path_factory.mktemp("siliconai") / "run")


def _untrained(data: SiliconAIData) -> SiliconAI:
    torch.manual_seed(0)
    return SiliconAI(SiliconAIConfig(vocabulary=data.vocab.to_dict(), d_model=32, n_blocks=2, n_heads=4, d_ff=64, dropout=0.0)).eval()


@pytest.mark.geant4
def test_vocabulary_blocks_are_disjoint_and_cover_the_dictionary(data):
    v = data.vocab
    blocks = sorted(v.blocks())
    assert blocks[0][0] == v.index_offset == 1 + len(tok.PARTICLES)  # PAD and the particles come first
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False)) and blocks[-1][1] == v.size
    assert v.block("module") == (v.end, v.end + 1 + len(odd.build_modules()))
    # the data's range, one token per hundredth: u and v span the modules (+- 24 and +- 54 mm)
    assert v.count["u"] <= 4801 and v.count["v"] <= 10801 and v.low["u"] >= -2400 and v.low["v"] >= -5400


@pytest.mark.geant4
def test_tokens_give_back_the_geant4_hits_to_two_decimals(muons, data):
    offsets, hits = tok.decode(data.vocab, [data.tokens[i, : data.length[i]] for i in range(len(data))])
    np.testing.assert_array_equal(offsets, muons.offsets)
    np.testing.assert_array_equal(hits["geometry_id"], muons.hits["geometry_id"])
    for k in ("local_u", "local_v", "px", "py", "pz"):
        np.testing.assert_allclose(hits[k], np.rint(muons.hits[k].astype(np.float64) * 100) / 100, atol=1e-5)
    # every row: index, module, five values in their blocks; the end row: the next index and END
    i = 3
    n = muons.offsets[i + 1] - muons.offsets[i]
    seq = data.tokens[i, : data.length[i]]
    assert data.length[i] == tok.ROW * (n + 1) + 2 and seq[-1] == data.vocab.end
    assert seq[-2] == data.vocab.index_offset + n + 1 and (data.tokens[i, data.length[i] :] == tok.PAD).all()


@pytest.mark.geant4
def test_every_token_is_trained_once_in_its_column(data):
    idx = np.arange(25)
    b = data.batch(idx)
    targets, columns = b["targets"].numpy(), b["columns"].numpy()
    assert targets.shape[1] == tok.ROW * 4 - 1
    # each track's tokens after the start row are targets once each
    assert (targets >= 0).sum() == int((data.length[idx] - tok.ROW).sum())
    for c, name in enumerate(tok.COLUMNS):
        lo, hi = data.vocab.block(name)
        t = targets[:, columns == c]
        assert ((t < 0) | ((t >= lo) & (t < hi))).all(), name
    # a window's inputs are the track's tokens from a row boundary
    first = b["tokens"][0].numpy()
    np.testing.assert_array_equal(first, data.tokens[0, : tok.ROW * 4 - 1])


@pytest.mark.geant4
def test_training_windows_see_what_the_sampler_sees(data):
    """The hidden state of every trained position equals the one the sampler computes from the last
    three complete rows and the row being written: training and generation condition alike."""
    model = _untrained(data)
    i = int(np.argmax(data.length[:50]))  # a long track: many windows
    b = data.batch(np.array([i]))
    with torch.no_grad():
        h = model(b["tokens"])
        seq = torch.from_numpy(data.tokens[i, : data.length[i]].astype(np.int64))
        checked = 0
        for w, place in zip(*np.nonzero(b["targets"].numpy() >= 0), strict=True):
            p = tok.ROW * w + place + 1  # the target's place in the track
            row = p // tok.ROW
            first = tok.ROW * max(0, row - 3)
            ref = model(seq[None, first:p])[0, -1]
            torch.testing.assert_close(h[w, place], ref, atol=1e-5, rtol=1e-5)
            checked += 1
    assert checked == data.length[i] - tok.ROW


@pytest.mark.geant4
def test_loss_is_the_cross_entropy_over_each_column_block(data):
    model = _untrained(data)
    b = data.batch(np.arange(6))
    loss, parts = siliconai_loss(model, b)
    with torch.no_grad():
        h = model(b["tokens"])
        total, n = 0.0, 0
        for w, place in zip(*np.nonzero(b["targets"].numpy() >= 0), strict=True):
            c = int(b["columns"][place])
            lo, hi = model.blocks_of_columns[c]
            logits = h[w, place] @ model.wte.weight[lo:hi].T
            total -= float(torch.log_softmax(logits, -1)[int(b["targets"][w, place]) - lo])
            n += 1
    assert float(loss.detach()) == pytest.approx(total / n, rel=1e-5)
    assert set(parts) == {"loss", *(f"ce_{c}" for c in tok.COLUMNS)}


@pytest.mark.geant4
def test_generation_is_valid_and_batch_independent(muons, tiny_run):
    model = load_model(tiny_run).model
    cond = {k: v[:24] for k, v in muons.conditions.items()}
    offsets, hits = generate_siliconai(model, cond, seed=3, batch_size=24)
    offsets_b, hits_b = generate_siliconai(model, cond, seed=3, batch_size=5)
    assert_same_events((offsets, hits), (offsets_b, hits_b), "batch 24 vs 5")
    assert np.diff(offsets).max() <= tok.MAX_HITS and offsets[-1] > 0
    modules = odd.build_modules()
    module = odd.module_index(modules, hits["geometry_id"])  # raises on an unknown id
    assert len(module) == offsets[-1]
    v = model.vocab
    for c, f in (("u", "local_u"), ("px", "px"), ("pz", "pz")):  # values on the grid of hundredths, in range
        k = np.rint(hits[f].astype(np.float64) * 100) - v.low[c]
        assert k.min() >= 0 and k.max() < v.count[c]
    _, other = generate_siliconai(model, cond, seed=4, batch_size=24)
    assert not np.array_equal(other["local_u"][:10], hits["local_u"][:10])


@pytest.mark.geant4
def test_cli_trains_generates_and_refuses_foreign_conditions(odd_muons, tiny_run, tmp_path):
    from test_cli import assert_one_line_error, hitgen

    muons = EventSet.read(odd_muons)
    some = muons.select(np.arange(40)).write(tmp_path / "some.h5")
    out = tmp_path / "gen.h5"
    r = hitgen("generate", str(tiny_run), "--conditions", str(some), "--out", str(out), "--batch-size", "16", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    gen = EventSet.read(out)
    assert gen.n_events == 40 and "siliconai" in gen.producer
    assert gen.notes["sampling"] == {"temperature": 1.0, "batch_size": 16, "seed": 0, "dtype": "bf16", "backend": "torch"}  # what was used, no more
    base = ("generate", str(tiny_run), "--conditions", str(some), "--out", str(tmp_path / "x.h5"))
    assert_one_line_error(hitgen(*base, "--top-k", "5"), "does not apply")
    assert_one_line_error(hitgen(*base, "--decoder", "naive"), "does not apply")  # it has no other decoder
    assert_one_line_error(hitgen(*base, "--dtype", "fp16"), "--dtype")
    np.testing.assert_array_equal(gen.conditions["momentum"], muons.conditions["momentum"][:40])
    far = muons
    far.conditions["vertex"][:, 2] += 500.0  # vertices far beyond the beam spot the model knows
    bad = far.write(tmp_path / "far.h5")
    assert_one_line_error(hitgen("generate", str(tiny_run), "--conditions", str(bad), "--out", str(tmp_path / "x.h5")), "trained on")
    assert not (tmp_path / "x.h5").exists()


def test_flops_per_siliconai_track_grow_with_the_window():
    from hitgen.families.siliconai.flops import flops_per_siliconai_track

    vocab = tok.Vocabulary(10, {c: 0 for c in tok.CONTINUOUS}, {c: 5 for c in tok.CONTINUOUS}).to_dict()
    cfg = SiliconAIConfig(vocabulary=vocab, d_model=4, n_blocks=1, n_heads=1, d_ff=8)
    per_position = 2 * (4 * 16 + 2 * 4 * 8)
    blocks = tok.Vocabulary.from_dict(vocab).blocks()
    # a track with no hit: two steps (the end row's index from the 7-token start row, then END from 8)
    expected = sum(t * per_position + t * (t + 1) * 2 * 4 + 2 * 4 * (blocks[c][1] - blocks[c][0]) for t, c in ((7, 0), (8, 1)))
    assert flops_per_siliconai_track(cfg, np.array([0])) == pytest.approx(expected)
    assert flops_per_siliconai_track(cfg, np.array([10])) > 10 * flops_per_siliconai_track(cfg, np.array([0]))


@pytest.mark.geant4
def test_bench_of_a_siliconai_model(tiny_run):
    """The bench's JSON contract holds; the model decodes without a cache, so naive is itself."""
    from hitgen.benchmark.run import bench

    r = bench(str(tiny_run), events=8, batch_sizes=(4, 8), repeats=1, geant4_events=20)
    for key in ("geant4_events_per_s", "model_events_per_s", "speedup_vs_geant4", "naive_events_per_s", "flops_per_event"):
        assert r[key] > 0, key
    assert 0 < r["roofline_fraction"] < 1 and r["per_batch"][0]["mean_sequence_length"] > 1
    assert r["kv_cache"] is False
