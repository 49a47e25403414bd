"""Generation engine and random streams: every decoder draws the same events, whatever the batch
size; the counter-based uniforms match an unsigned reference and are uniform; the samplers draw
the given distributions. No timing is asserted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, kstest

from hitgen.detectors.clas12_ecal import geometry as clas12_ecal
from hitgen.families import SamplingOptions
from hitgen.families.clas12_gpt.generate import generate
from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT
from hitgen.nn import streams as streams
from hitgen.nn.draw import inverse_cdf_sample, sample_from, sample_values
from sameness import assert_same_events

SMALL = GPTConfig(d_model=48, n_blocks=2, n_heads=4, d_ff=96, dropout=0.0)


def same_events(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


EXTRA = {
    "paper": {},
    "factorised": {"value_head": "factorised"},
    "energy_first": {"energy_first": True},
    "energy_first_rescaled": {"energy_first": True, "rescale_to_layer_energy": True},
    "total_first": {"energy_first": True, "energy_total_first": True, "rescale_to_layer_energy": True},
    "value_axis": {"value_heads_see_strip": True, "value_heads_see_axis": True, "tdc_sees_hit": True},
    "lead_mlp": {"energy_first": True, "rescale_to_layer_energy": True, "energy_lead": "mlp", "lead_width": 32, "lead_depth": 2},
    "lead_total": {"energy_first": True, "rescale_to_layer_energy": True, "energy_lead": "total", "lead_width": 32, "lead_depth": 2},
    "hit_heads": {
        "energy_first": True,
        "rescale_to_layer_energy": True,
        "value_heads_see_strip": True,
        "tdc_sees_hit": True,
        "tdc_in_bin": True,
        "tdc_threshold_rule": True,
    },
}


@pytest.mark.parametrize(
    "option",
    [
        "paper",
        "condition_every_position",
        "value_heads_see_strip",
        "deposit_feature",
        "factorised",
        "energy_first",
        "energy_first_rescaled",
        "total_first",
        "lead_mlp",
        "lead_total",
        "value_axis",
        "hit_heads",
    ],
)
def test_every_decoder_and_batch_size_draws_the_same_events(option):
    torch.manual_seed(1)
    extra = EXTRA.get(option, {option: True})
    model = HitGPT(dataclasses.replace(SMALL, **extra)).eval()
    with torch.no_grad():  # away from their zero initialisation, so the options matter
        if model.cond_tokens is not None:
            torch.nn.init.normal_(model.cond_tokens.weight, std=0.1)
        if model.value_mlp is not None:
            torch.nn.init.normal_(model.value_mlp[-1].weight, std=0.5)
        if model.value_axis is not None:
            torch.nn.init.normal_(model.value_axis.weight, std=0.5)
        for mlp in (model.deposit_mlp, model.layer_energy_mlp, model.tdc_mlp):
            if mlp is not None:
                torch.nn.init.normal_(mlp[-1].weight, std=0.5)
    momentum = clas12_ecal.sample_conditions(20, np.random.default_rng(3))["momentum"]
    ref = generate(model, momentum, SamplingOptions(batch_size=8, seed=2, decoder="plain"))
    assert ref[0][-1] > 20 * 9  # long sequences: the equality is not trivial
    # batches that divide the events and batches that leave a short last one (20 = 2 x 8 + 4 = 3 x 6 + 2)
    for decoder, batch in (("plain", 20), ("naive", 16), ("static", 8), ("static", 6), ("static", 64)):
        assert_same_events(generate(model, momentum, SamplingOptions(batch_size=batch, seed=2, decoder=decoder)), ref, f"{decoder} {batch}")
    # an event depends on its own stream only: the last 7 events alone, numbered as before
    tail = generate(model, momentum[13:], SamplingOptions(batch_size=4, seed=2, decoder="static"), first_event=13)
    ref_tail = (ref[0][13:] - ref[0][13], {k: v[ref[0][13] :] for k, v in ref[1].items()})
    assert_same_events(tail, ref_tail, "the last 7 alone")
    other = generate(model, momentum, SamplingOptions(batch_size=8, seed=3, decoder="plain"))
    assert not same_events(other, ref)


def test_mix32_matches_the_unsigned_reference():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2**32, 100_000, dtype=np.uint64), np.array([0, 1, 2**31, 2**32 - 1], np.uint64)])
    got = streams.mix32(torch.from_numpy(x.astype(np.int64))).numpy()
    np.testing.assert_array_equal(got.astype(np.uint64), streams.mix32_numpy(x))
    assert got.min() >= 0 and got.max() < 2**32


def test_uniforms_are_uniform_and_distinct_per_event_and_draw():
    keys = torch.from_numpy(streams.event_keys(7, np.arange(50_000)))
    assert len(np.unique(keys.numpy(), axis=0)) == 50_000
    u = streams.draw_uniforms(keys, torch.full((50_000,), 3), streams.ADC).numpy()
    assert u.min() >= 0 and u.max() < 1
    assert kstest(u, "uniform").pvalue > 1e-3
    # neighbouring draws of one event, and the same draw of neighbouring events, are uncorrelated
    v = streams.draw_uniforms(keys, torch.full((50_000,), 3), streams.TDC).numpy()
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.03 and abs(np.corrcoef(u[1:], u[:-1])[0, 1]) < 0.03
    # another seed: other keys
    assert not np.array_equal(streams.event_keys(8, np.arange(10)), keys[:10].numpy())


def test_uniforms_of_several_counters_in_one_call_are_those_of_one_call_each():
    keys = torch.from_numpy(streams.event_keys(3, np.arange(7)))
    block = streams.uniforms_from(keys, 40, 5)
    assert torch.equal(block, torch.stack([streams.uniforms(keys, torch.tensor(40 + d)) for d in range(5)], 1))
    first = torch.arange(7) * 11  # a first counter per row
    rows = streams.uniforms_from(keys, first, 3)
    assert torch.equal(rows, torch.stack([streams.uniforms(keys, first + d) for d in range(3)], 1))


def test_inverse_cdf_sampling_draws_the_given_distribution():
    p = torch.tensor([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    u = torch.rand(60_000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    counts = torch.bincount(inverse_cdf_sample(p.expand(60_000, -1), u), minlength=6)
    assert counts[[0, 2, 5]].sum() == 0  # tokens of probability zero are never drawn
    assert chisquare(counts[[1, 3, 4]].numpy(), 60_000 * np.array([0.5, 0.2, 0.3])).pvalue > 1e-3
    # unnormalised rows, a single allowed token, u at the edges
    q = torch.tensor([[0.0, 0.0, 2.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert inverse_cdf_sample(q, torch.tensor([0.0, 1.0 - 1e-17, 0.999999999], dtype=torch.float64)).tolist() == [2, 0, 1]


def test_top_k_keeps_only_the_k_most_likely_allowed_tokens():
    logp = torch.log_softmax(torch.tensor([[3.0, 2.5, 2.0, 1.0, 0.5]]).expand(4000, -1), -1)
    allowed = torch.ones_like(logp, dtype=torch.bool)
    allowed[:, 0] = False  # the most likely token is forbidden: top-2 of the rest is {1, 2}
    u = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    drawn = sample_from(logp, allowed, 1.0, 2, u)
    assert set(drawn.tolist()) == {1, 2}
    # renormalised over the two kept tokens: p(1) = e^2.5 / (e^2.5 + e^2) = 0.622
    assert abs(float((drawn == 1).float().mean()) - 0.622) < 0.03
    assert set(sample_from(logp, allowed, 1.0, 0, u).tolist()) == {1, 2, 3, 4}


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, 0), (0.7, 0), (1.3, 3)])
def test_value_sampling_is_the_masked_sampler_on_the_value_tokens(temperature, top_k):
    """The value streams skip the log-softmax and the mask: same draws as the general sampler."""
    logits = torch.randn(2000, 7, generator=torch.Generator().manual_seed(1)) * 2
    u = torch.rand(2000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    allowed = torch.ones(2000, 9, dtype=torch.bool)
    allowed[:, 7:] = False  # two special tokens after the values
    padded = torch.cat([logits, torch.full((2000, 2), 5.0)], dim=1)
    general = sample_from(torch.log_softmax(padded, -1), allowed, temperature, top_k, u)
    assert torch.equal(sample_values(logits, temperature, top_k, u), general)


def test_torchrun_generation_with_two_processes_equals_one_process(tmp_path):
    import os
    import subprocess
    import sys

    from hitgen.core.events import EventSet
    from hitgen.generation.job import generate_file
    from hitgen.models.io import save_model_dir
    from test_training import free_port

    torch.manual_seed(0)
    record = {"detector_spec": clas12_ecal.INFO.spec(), "data": {"momentum_range_gev": [0.5, 10.0]}}
    model = save_model_dir(tmp_path / "model", HitGPT(SMALL), "clas12-gpt", record)
    args = ["--momentum-range", "1:5", "--events", "21", "--batch-size", "4", "--seed", "3"]
    generate_file(str(model), tmp_path / "one.h5", options={"momentum_range": (1.0, 5.0)}, n_events=21, opts=SamplingOptions(batch_size=4, seed=3))
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    cmd += ["-m", "hitgen", "generate", str(model), "--out", str(tmp_path / "two.h5"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = EventSet.read(tmp_path / "one.h5"), EventSet.read(tmp_path / "two.h5")
    assert two.n_events == 21 and two.notes["timing"]["processes"] == 2
    assert_same_events((two.offsets, two.hits), (one.offsets, one.hits), "2 processes vs 1")
    np.testing.assert_array_equal(two.conditions["momentum"], one.conditions["momentum"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "one.h5", "two.h5"]  # the shares are gone


@pytest.mark.parametrize("option", ["paper", "condition_every_position", "deposit_feature", "energy_first", "total_first"])
def test_incremental_decoding_sees_what_teacher_forcing_sees(option):
    """The hidden states of a token sequence fed one token at a time through the KV cache, with the
    generator's running inputs (the per-event offset, the deposit fraction, the drawn layer energies
    and the layer-energy feature), equal those of the teacher-forced forward pass used in training."""
    from hitgen.families.clas12_gpt import tokenizer as tok
    from hitgen.families.clas12_gpt.model import KVCache
    from hitgen.families.clas12_gpt.sampler import Budget, Hit, LayerState, start_tokens
    from test_gpt import one_event_batch

    torch.manual_seed(2)
    model = HitGPT(dataclasses.replace(SMALL, **({} if option == "paper" else EXTRA.get(option, {option: True})))).eval()
    with torch.no_grad():
        for mlp in (model.cond_tokens, model.deposit_mlp and model.deposit_mlp[-1], model.layer_energy_mlp and model.layer_energy_mlp[-1]):
            if mlp is not None:
                torch.nn.init.normal_(mlp.weight, std=0.5)
    b = one_event_batch()
    momentum = b["momentum"]
    with torch.no_grad():
        cache = KVCache(len(model.blocks))
        budget = Budget(model, momentum)
        keys = torch.as_tensor(streams.event_keys(5, np.arange(1)))
        h0, cond, _, _ = start_tokens(model, momentum, keys, SamplingOptions(), cache, budget)
        energy = total = None
        if model.cfg.energy_first:  # the drawn energies are the sequence's: their tokens from the budget's fractions
            energy = torch.as_tensor(np.where(budget.target.numpy() == 0, tok.ENERGY_ZERO, tok.ENERGY_BINNING.encode(budget.target.numpy())))
            assert torch.equal(model.energy_value[energy], budget.target)
            total = None if budget.total is None else budget.total[:, None]
            assert (total is None) == (option != "total_first")
        h_forced, h_energy = model.hidden(momentum, b["strip"], b["adc"], b["tdc"], b["layer"], b["rank"], energy, total)
        steps = [h0]
        separators = torch.cumsum((b["strip"] == tok.STRIP.sep).long(), dim=1)
        for t in range(1, b["strip"].shape[1]):
            hit = Hit(*(b[k][:, t] for k in ("strip", "adc", "tdc", "layer", "rank")))
            after = LayerState(separators[:, t], torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
            steps.append(model.trunk(hit.embed(model, cond, budget.add(hit, after)), cache)[:, -1])
    torch.testing.assert_close(torch.cat(steps), h_forced[0], rtol=1e-4, atol=1e-5)
    assert (h_energy is None) == (option not in ("energy_first", "total_first"))


def test_kv_cache_attends_like_attention_over_everything_written():
    """The growing cache (contiguous buffers grown by CHUNK, unwritten positions masked) gives the
    attention of each new query over every key and value written so far, across chunk boundaries
    and after rows are dropped."""
    import torch.nn.functional as F  # noqa: N812

    from hitgen.families.clas12_gpt.model import KVCache

    torch.manual_seed(0)
    b, heads, dim, steps = 5, 2, 8, 2 * KVCache.CHUNK + 3
    cache = KVCache(1)
    k0, v0 = torch.randn(b, heads, 7, dim), torch.randn(b, heads, 7, dim)
    q0 = torch.randn(b, heads, 7, dim)
    torch.testing.assert_close(cache.attend(0, q0, k0, v0), F.scaled_dot_product_attention(q0, k0, v0, is_causal=True))
    keys, values, rows = [k0], [v0], torch.arange(b)
    for step in range(steps):
        if step == 12:  # drop two rows, as the decoder does when events finish
            rows = torch.tensor([0, 2, 4])
            cache.keep(rows)
            keys, values = [k[rows] for k in keys], [v[rows] for v in values]
        q, k, v = (torch.randn(len(rows), heads, 1, dim) for _ in range(3))
        keys.append(k)
        values.append(v)
        expected = F.scaled_dot_product_attention(q, torch.cat(keys, dim=2), torch.cat(values, dim=2))
        torch.testing.assert_close(cache.attend(0, q, k, v), expected)
    assert cache.length[0] == 7 + steps and cache.k[0].shape[2] % KVCache.CHUNK == 0


def test_times_follow_the_threshold_rule_and_fill_their_bins():
    """With tdc_threshold_rule a hit has a time exactly when its final ADC reaches the digitisation's
    TDC threshold (as in Geant4); with tdc_in_bin the times fill their bins (not only the centres)."""
    from hitgen.families.clas12_gpt import tokenizer as tok

    torch.manual_seed(4)
    cfg = dataclasses.replace(SMALL, energy_first=True, rescale_to_layer_energy=True, tdc_sees_hit=True, tdc_in_bin=True, tdc_threshold_rule=True)
    model = HitGPT(cfg).eval()
    momentum = clas12_ecal.sample_conditions(40, np.random.default_rng(5))["momentum"]
    _, hits = generate(model, momentum, SamplingOptions(batch_size=16, seed=7))
    adc, tdc = hits["adc"], hits["tdc"]
    timed = adc >= clas12_ecal.TDC_THRESHOLD_COUNTS
    assert 0.05 < timed.mean() < 0.95  # both kinds occur
    np.testing.assert_array_equal(tdc > 0, timed)
    # the place within the bin: uniform over [0, 1) (up to the rounding to whole counts of bins over 15 counts wide)
    k = tok.TDC_BINNING.encode(tdc[timed])
    lo, hi = tok.TDC_BINNING.edges[k], tok.TDC_BINNING.edges[k + 1]
    wide = hi - lo > 15
    place = (np.log(tdc[timed][wide]) - np.log(lo[wide])) / (np.log(hi[wide]) - np.log(lo[wide]))
    assert wide.sum() > 200
    assert kstest(np.clip(place, 0, 1), "uniform").pvalue > 1e-3
