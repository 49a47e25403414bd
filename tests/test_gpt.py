"""The CLAS12 GPT: soft routing and loss terms on hand-made cases, model folders without pickle."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.loss import LossWeights, compute_loss, expected_layer_lengths
from hitgen.families.clas12_gpt.model import PAPER, GPTConfig, HitGPT

TINY = GPTConfig(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0)


def constant_model(strip_logits: torch.Tensor, adc_logits: list[torch.Tensor] | None = None) -> HitGPT:
    """A model whose heads ignore the hidden state: zero weights, the given biases."""
    m = HitGPT(TINY)
    with torch.no_grad():
        for head in (m.head_strip, m.head_tdc, *m.head_adc):
            head.weight.zero_()
            head.bias.zero_()
        m.head_strip.bias.copy_(strip_logits)
        for head, logits in zip(m.head_adc, adc_logits or [], strict=False):
            head.bias.copy_(logits)
    return m


def test_paper_size():
    assert abs(HitGPT(PAPER).n_parameters() - 38.4e6) < 0.2e6


def test_soft_routing_blend_by_hand():
    # strip probabilities: PCAL strips 0.5 in all, ECIN 0.3, ECOUT 0.1, the four specials 0.1
    p = torch.zeros(tok.STRIP.vocab_size)
    p[0:192] = 0.5 / 192
    p[192:300] = 0.3 / 108
    p[300:408] = 0.1 / 108
    p[408:] = 0.1 / 4
    adc = [torch.full((tok.ADC.vocab_size,), -50.0) for _ in range(3)]
    for s, token in enumerate((5, 6, 7)):  # head s puts all its mass on ADC token 5 + s
        adc[s][token] = 50.0
    m = constant_model(torch.log(p), adc)
    h = torch.randn(4, TINY.d_model)
    strip_logp = m.strip_log_probs(h)
    weights = torch.exp(m.section_log_weights(strip_logp))
    # each section gets its strips' probability plus a third of the specials' 0.1
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.3, 0.1]).expand(4, 3) + 0.1 / 3)
    mix = torch.exp(m.adc_log_probs(h, strip_logp))
    torch.testing.assert_close(mix[:, 5:8], torch.tensor([0.5 + 0.1 / 3, 0.3 + 0.1 / 3, 0.1 + 0.1 / 3]).expand(4, 3))
    of = torch.exp(m.adc_log_prob_of(h, strip_logp, torch.tensor([5, 6, 7, 8])))
    torch.testing.assert_close(of[:3], torch.tensor([0.5 + 0.1 / 3, 0.3 + 0.1 / 3, 0.1 + 0.1 / 3]))
    assert of[3] < 1e-30
    # generation knows the section: only that head is evaluated, row by row
    u = torch.rand(4, dtype=torch.float64)
    assert m.sample_adc(h, torch.tensor([2, 0, 1, 0]), 1.0, 0, u, u).tolist() == [7, 5, 6, 5]


@pytest.mark.parametrize("value_head", ["flat", "factorised"])
def test_one_head_per_row_draws_what_its_section_head_gives(value_head):
    torch.manual_seed(3)
    m = HitGPT(dataclasses.replace(TINY, value_head=value_head, value_group=64))
    h = torch.randn(700, TINY.d_model)
    section = torch.arange(700) % 3
    g = torch.Generator().manual_seed(1)
    u, u_fine = (torch.rand(700, generator=g, dtype=torch.float64) for _ in range(2))
    drawn = m.sample_adc(h, section, 1.0, 0, u, u_fine)
    assert (drawn < tok.N_ADC).all()
    for i, head in enumerate(m.head_adc):
        rows = section == i
        torch.testing.assert_close(drawn[rows], head.sample(h[rows], 1.0, 0, u[rows], u_fine[rows]))


def test_factorised_head_is_a_normalised_distribution_and_draws_it():
    from scipy.stats import chisquare

    from hitgen.nn.heads import FactorisedHead

    torch.manual_seed(0)
    head = FactorisedHead(16, n_values=23, n_special=3, group=5)  # 5 groups, the last one short (3 bins)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(std=0.7)
    h = torch.randn(1, 16)
    with torch.no_grad():
        logp = head.log_probs(h)[0]
    assert logp.shape == (26,) and float(torch.logsumexp(logp, 0)) == pytest.approx(0.0, abs=1e-5)
    targets = torch.arange(26)
    with torch.no_grad():
        torch.testing.assert_close(head.log_prob(h.expand(26, -1), targets), logp)  # the two paths agree
    # two-stage draws (group, then bin) follow the value part of the distribution
    n = 200_000
    g = torch.Generator().manual_seed(2)
    u, u_fine = (torch.rand(n, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        drawn = head.sample(h.expand(n, -1), 1.0, 0, u, u_fine)
        tempered = head.sample(h.expand(n, -1), 0.5, 0, u, u_fine)
    p_values = torch.softmax(logp[:23].double(), 0).numpy()
    counts = torch.bincount(drawn, minlength=23).numpy()
    assert chisquare(counts, n * p_values).pvalue > 1e-3
    p_cold = p_values**2 / (p_values**2).sum()  # temperature 0.5 squares the probabilities
    assert chisquare(torch.bincount(tempered, minlength=23).numpy(), n * p_cold).pvalue > 1e-3


def test_a_factorised_model_trains_and_counts_fewer_head_parameters():
    cfg = dataclasses.replace(TINY, value_head="factorised")
    m = HitGPT(cfg)
    _, parts = compute_loss(m, one_event_batch(), LossWeights())
    assert all(math.isfinite(v) for v in parts.values()) and parts["distribution"] > 0
    flat = sum(p.numel() for p in HitGPT(TINY).head_adc.parameters())
    assert sum(p.numel() for p in m.head_adc.parameters()) < flat / 5


def test_expected_layer_lengths_by_hand():
    # segment 0: two hits then the terminator, stop probabilities 0.1, 0.2, 0.5
    # E = 0.9 + 0.9 * 0.8 + (0.9 * 0.8) * (1 - 0.5) / 0.5 = 2.34
    # segment 1: no hit, terminator stop probability 0.8: E = 1 * 0.2 / 0.8 = 0.25
    # segment 2: 19 hits with q = 0 then a terminator with q = 1e-9: the tail is capped at 20 - 19 = 1
    q = torch.tensor([0.1, 0.2, 0.5, 0.8] + [0.0] * 19 + [1e-9])
    is_hit = torch.tensor([True, True, False, False] + [True] * 19 + [False])
    segment = torch.tensor([0, 0, 0, 1] + [2] * 20)
    expected, n_true = expected_layer_lengths(q, is_hit, segment, 3)
    torch.testing.assert_close(expected, torch.tensor([2.34, 0.25, 20.0]))
    torch.testing.assert_close(n_true, torch.tensor([2.0, 0.0, 19.0]))
    # without the tail: only the true hits the model would emit before stopping
    body, _ = expected_layer_lengths(q, is_hit, segment, 3, tail=False)
    torch.testing.assert_close(body, torch.tensor([0.9 + 0.9 * 0.8, 0.0, 19.0]))


def one_event_batch() -> dict[str, torch.Tensor]:
    offsets = np.array([0, 5])
    hits = {
        "layer": np.array([0, 0, 3, 3, 8], np.int8),
        "strip": np.array([10, 11, 4, 9, 30], np.int16),
        "adc": np.array([100, 2000, 40, 70, 15], np.int32),
        "tdc": np.array([1200, 1300, 0, 0, 1500], np.int32),
    }
    b = tok.encode(offsets, hits)
    t = int(b.length.max())
    batch = {k: torch.from_numpy(getattr(b, k)[:, :t].astype(np.int64)) for k in ("strip", "adc", "tdc", "layer", "rank")}
    batch["momentum"] = torch.tensor([[1.0, 0.0, 3.0]])
    return batch


def test_loss_terms_of_a_constant_model_by_hand():
    # uniform strip logits except the two terminators, each with probability 0.05
    p = torch.full((tok.STRIP.vocab_size,), 0.9 / (tok.STRIP.vocab_size - 2))
    p[tok.STRIP.sep] = p[tok.STRIP.eos] = 0.05
    m = constant_model(torch.log(p))
    _, parts = compute_loss(m, one_event_batch(), LossWeights())
    # ADC and TDC heads are uniform: cross-entropy log(V) at every position
    assert parts["ce_adc"] == pytest.approx(math.log(tok.ADC.vocab_size), rel=1e-5)
    assert parts["ce_tdc"] == pytest.approx(math.log(tok.TDC.vocab_size), rel=1e-5)
    # strip targets: 5 hits (p = 0.9/410 each), 8 separators and EOS (0.05 each), weights 1, 4.5, 3
    nll_hit, nll_stop = -math.log(0.9 / 410), -math.log(0.05)
    assert parts["ce_strip"] == pytest.approx((5 * nll_hit + 8 * 4.5 * nll_stop + 3 * nll_stop) / (5 + 8 * 4.5 + 3), rel=1e-5)
    # occupancy: at every hit, -log(1 - p(stop)) with p(stop) = 0.1
    assert parts["occupancy"] == pytest.approx(-math.log(0.9), rel=1e-5)
    # length: layers 0 and 3 have 2 hits: E = 0.9 + 0.81 + 0.81 * 9 = 9.0; layer 8 one hit: 0.9 + 0.9 * 9 = 9.0;
    # the six empty layers: 0.9 / 0.1 = 9.0 each. Huber(delta 3) of the errors 7, 7, 8 and 9 (x6), averaged
    huber = [3 * (e - 1.5) for e in (7, 7, 8, 9, 9, 9, 9, 9, 9)]
    assert parts["length"] == pytest.approx(sum(huber) / 9, rel=1e-4)


def test_cross_entropy_only_ablation_drops_the_structure_terms():
    _, parts = compute_loss(HitGPT(TINY), one_event_batch(), LossWeights.cross_entropy_only())
    assert set(parts) == {"ce_strip", "ce_adc", "ce_tdc", "loss"}
    assert parts["loss"] == pytest.approx(parts["ce_strip"] + parts["ce_adc"] + parts["ce_tdc"], rel=1e-6)


def test_prefix_resolves_one_strip_of_direction_at_initialisation():
    """One PCAL strip (4.5 cm at 7 m: 0.0064 rad) must move the conditioning embeddings visibly from
    the start; on the raw momentum alone it moves them by 0.3% and the model learns it slowly."""

    def relative_change(octaves: int) -> float:
        torch.manual_seed(0)
        m = HitGPT(GPTConfig(d_model=128, n_blocks=1, n_heads=4, d_ff=256, direction_octaves=octaves))
        theta, step = 0.3, 0.0064
        p = torch.tensor([[5 * math.sin(t), 0.0, 5 * math.cos(t)] for t in (theta, theta + step)])
        with torch.no_grad():
            a, b = m.prefix_embeddings(p)
        return float((a - b).norm() / a.norm())

    assert relative_change(8) > 0.1
    assert relative_change(0) < 0.01


def test_condition_every_position_starts_as_the_paper_model_and_reaches_every_token():
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0, condition_every_position=True)
    m, plain = HitGPT(cfg).eval(), HitGPT(TINY).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("cond_tokens")})
    batch = one_event_batch()
    args = (batch["strip"], batch["adc"], batch["tdc"], batch["layer"], batch["rank"])
    low, high = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, 9.0]])
    with torch.no_grad():
        # zero-initialised: the same function as the prefix-only model
        torch.testing.assert_close(m(low, *args), plain(low, *args))
        m.cond_tokens.weight.normal_()
        # now |p| changes the first token's embedding itself, before any attention
        emb = [m.embed(*(a[:, :1] for a in args), m.conditioning(p)[1]) for p in (low, high)]
        emb_plain = [plain.embed(*(a[:, :1] for a in args)) for _ in (low, high)]
    assert (emb[0] - emb[1]).abs().max() > 0.1
    torch.testing.assert_close(emb_plain[0], emb_plain[1])


def test_value_heads_see_the_strip_only_where_enabled():
    torch.manual_seed(0)
    m = HitGPT(GPTConfig(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0, value_heads_see_strip=True)).eval()
    h = torch.randn(5, 24)
    a, b = torch.full((5,), 3), torch.full((5,), 300)
    torch.testing.assert_close(m.value_hidden(h, a), h)  # zero-initialised: the paper's heads at first
    with torch.no_grad():
        m.value_mlp[-1].weight.normal_()
        m.value_strip.weight.normal_()
    assert (m.value_hidden(h, a) - m.value_hidden(h, b)).abs().max() > 0.1
    plain = HitGPT(TINY)
    torch.testing.assert_close(plain.value_hidden(h, a), h)
    # the loss uses it: with the option the ADC cross-entropy depends on the strip embedding
    assert_moves_only(m, m.value_strip.weight, moved="ce_adc", kept="ce_strip")


def assert_moves_only(m: HitGPT, param: torch.Tensor, moved: str, kept: str) -> None:
    """Redrawing `param` changes the loss term `moved` of one_event_batch and leaves `kept` as it was."""
    _, before = compute_loss(m, one_event_batch(), LossWeights.cross_entropy_only())
    with torch.no_grad():
        param.normal_(std=3.0)
    _, after = compute_loss(m, one_event_batch(), LossWeights.cross_entropy_only())
    assert before[moved] != pytest.approx(after[moved]) and before[kept] == pytest.approx(after[kept])


def test_tdc_head_sees_strip_and_adc_only_where_enabled():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, tdc_sees_hit=True)
    m = HitGPT(cfg).eval()
    h = torch.randn(4, 24)
    strip, low, high = torch.full((4,), 3), torch.full((4,), 60), torch.full((4,), 3000)
    torch.testing.assert_close(m.tdc_hidden(h, strip, low), h)  # zero-initialised: the paper's TDC head at first
    with torch.no_grad():
        m.tdc_mlp[-1].weight.normal_()
        m.tdc_adc.weight.normal_()
        m.tdc_strip.weight.normal_()
    assert (m.tdc_hidden(h, strip, low) - m.tdc_hidden(h, strip, high)).abs().max() > 0.1  # the ADC (the walk)
    assert (m.tdc_hidden(h, strip, low) - m.tdc_hidden(h, torch.full((4,), 300), low)).abs().max() > 0.1  # the strip (the light's path)
    torch.testing.assert_close(HitGPT(TINY).tdc_hidden(h, strip, low), h)
    # the loss uses the hit's ADC: another ADC embedding moves the TDC term, not the ADC term
    assert_moves_only(m, m.tdc_adc.bias, moved="ce_tdc", kept="ce_adc")


def test_tdc_threshold_rule_trains_the_time_of_timed_hits_only():
    """one_event_batch has three hits with a time and two without: under the rule the TDC term is
    the mean over the three; the hand-computed log-probabilities of a head that ignores h."""
    logits = torch.randn(tok.TDC.vocab_size)
    m = HitGPT(dataclasses.replace(TINY, tdc_threshold_rule=True))
    plain = HitGPT(TINY)
    for model in (m, plain):
        with torch.no_grad():
            model.head_tdc.weight.zero_()
            model.head_tdc.bias.copy_(logits)
    lp = torch.log_softmax(logits, dim=0)
    tdc = one_event_batch()["tdc"][0]
    hit_tokens = tdc[(tdc < tok.TDC_ZERO) | (tdc == tok.TDC_ZERO)]
    timed = hit_tokens[hit_tokens < tok.TDC_ZERO]
    assert len(timed) == 3 and len(hit_tokens) == 5
    _, ruled = compute_loss(m, one_event_batch(), LossWeights.cross_entropy_only())
    _, paper = compute_loss(plain, one_event_batch(), LossWeights.cross_entropy_only())
    assert ruled["ce_tdc"] == pytest.approx(float(-lp[timed].mean()), rel=1e-5)
    assert paper["ce_tdc"] == pytest.approx(float(-lp[hit_tokens].mean()), rel=1e-5)


def test_times_placed_within_their_bins():
    offsets = np.array([0, 3])
    hits = {
        "layer": np.array([0, 1, 4], np.int8),
        "strip": np.array([5, 7, 2], np.int16),
        "adc": np.array([500, 900, 60], np.int32),
        "tdc": np.array([1234, 2100, 0], np.int32),
    }
    b = tok.encode(offsets, hits)
    centre = tok.decode(b.strip, b.adc, b.tdc)[1]["tdc"]
    edges = tok.TDC_BINNING.edges
    k = tok.TDC_BINNING.encode(hits["tdc"][:2])
    for place, expected in ((0.5, centre), (0.0, np.r_[np.rint(edges[k]), 0]), (0.999999, np.r_[np.rint(edges[k + 1]), 0])):
        got = tok.decode(b.strip, b.adc, b.tdc, np.full(b.strip.shape, place))[1]["tdc"]
        np.testing.assert_array_equal(got, expected)
    assert centre[2] == 0  # no time stays no time


def test_mixture_head_log_prob_is_its_distribution_at_the_target():
    """MixtureHead.log_prob (the target's bin only, for training) gives log_probs at the target, for
    value tokens inside, at both ends (the tails) and for the special tokens."""
    from hitgen.nn.heads import MixtureHead

    torch.manual_seed(0)
    head = MixtureHead(16, 1000, 2, 8)
    with torch.no_grad():
        head.out.weight.mul_(5.0)  # sharp, displaced components: the tails matter
    h = torch.randn(200, 16)
    target = torch.randint(0, 1002, (200,))
    target[:4] = torch.tensor([0, 999, 1000, 1001])
    torch.testing.assert_close(head.log_prob(h, target), head.log_probs(h).gather(1, target[:, None])[:, 0], rtol=0, atol=1e-5)


def test_the_lead_model_is_autoregressive_and_the_sampler_draws_its_total():
    """energy_lead = "mlp": the total's factor reads only the momentum, layer k's the total and the
    layers before it; the sampler draws the total from the lead's own distribution (chi-square at
    one momentum), and the layers it hands to the hits add up to that total."""
    from scipy.stats import chisquare

    from hitgen.families import SamplingOptions
    from hitgen.families.clas12_gpt.sampler import Budget, start_tokens
    from hitgen.nn import streams
    from hitgen.nn.blocks import new_cache

    torch.manual_seed(4)
    cfg = GPTConfig(
        d_model=24,
        n_blocks=1,
        n_heads=2,
        d_ff=48,
        dropout=0.0,
        energy_first=True,
        rescale_to_layer_energy=True,
        energy_lead="mlp",
        lead_width=32,
        lead_depth=2,
    )
    model = HitGPT(cfg).eval()
    assert model.head_energy is None and model.lead is not None
    with torch.no_grad():  # a broad, displaced distribution, rarely empty
        model.lead.head.out.weight.mul_(2.0)
        model.lead.head.out.bias[0] = -3.0
    momentum = torch.tensor([[0.3, 0.1, 4.0]]).repeat(5, 1)
    total = torch.randint(0, tok.N_ENERGY, (5,))
    energy = torch.randint(0, tok.ENERGY_VOCAB, (5, tok.N_LAYERS))
    other = energy.clone()
    other[:, 4:] = torch.randint(0, tok.ENERGY_VOCAB, (5, 5))
    with torch.no_grad():
        a, b = model.lead.teacher_forced(momentum, total, energy), model.lead.teacher_forced(momentum, total, other)
        c = model.lead.teacher_forced(momentum, (total + 7) % tok.N_ENERGY, energy)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)  # the total and layers 0-3
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    assert not torch.allclose(a[:, 1:], c[:, 1:])  # the layers know the total
    n = 4000
    m = momentum[:1].repeat(n, 1)
    budget = Budget(model, m)
    keys = torch.as_tensor(streams.event_keys(7, np.arange(n)))
    with torch.no_grad():
        _, _, _, layer_adc = start_tokens(model, m, keys, SamplingOptions(seed=7), new_cache(model), budget)
        none = torch.full((1, tok.N_LAYERS), tok.ENERGY_ZERO)
        p = model.lead.log_probs(m[:1], torch.zeros(1, dtype=torch.long), none, 0).exp()[0].double()
    total_frac = layer_adc.sum(dim=1).numpy() / (float(m[0].norm()) * tok.ADC_PER_GEV)
    drawn = torch.as_tensor(np.where(total_frac > 0, tok.TOTAL_BINNING.encode(total_frac), tok.ENERGY_ZERO))
    cdf = torch.cumsum(p, 0)  # 20 groups of about equal probability
    group = torch.bucketize(cdf, torch.linspace(0, 1, 21)[1:-1])
    expected = torch.zeros(20, dtype=torch.float64).index_add(0, group, p).numpy()
    expected = expected / expected.sum() * n
    observed = np.bincount(group[drawn].numpy(), minlength=20)
    assert (expected > 20).sum() >= 10
    assert chisquare(observed[expected > 0], expected[expected > 0]).pvalue > 1e-3
    # the trunk reads the scaled layers' tokens: each within its 1.04% bin of the fraction the hits get
    frac = layer_adc.numpy() / (float(m[0].norm()) * tok.ADC_PER_GEV)
    target = budget.target.numpy()
    np.testing.assert_array_equal(target == 0, frac == 0)
    inside = (frac > tok.ENERGY_BINNING.lo) & (frac < 1.0)
    assert inside.mean() > 0.5
    assert np.all(np.abs(target[inside] / frac[inside] - 1) < 0.011)


def test_lead_total_scales_the_trunks_layers_to_the_leads_total():
    """energy_lead = "total": the trunk's energy head draws the same layers as without the lead model
    (same weights, same streams), the hits get those layers in the same proportions, scaled to add up
    to the total the lead model drew; the loss trains the lead's total alone."""
    from hitgen.families import SamplingOptions
    from hitgen.families.clas12_gpt.loss import lead_cross_entropy
    from hitgen.families.clas12_gpt.sampler import Budget, draw_lead_total, start_tokens
    from hitgen.nn import streams
    from hitgen.nn.blocks import new_cache

    torch.manual_seed(6)
    base = dict(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0, energy_first=True, rescale_to_layer_energy=True)
    model = HitGPT(GPTConfig(**base, energy_lead="total", lead_width=32, lead_depth=2)).eval()
    trunk = HitGPT(GPTConfig(**base)).eval()
    assert model.head_energy is not None and model.lead is not None and len(model.lead.mlp.weights[0]) == 1
    trunk.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("lead.")})
    m = torch.tensor([[0.3, 0.1, 4.0], [-0.5, 0.2, 1.5], [0.1, -0.2, 8.0]]).repeat(20, 1)
    keys = torch.as_tensor(streams.event_keys(3, np.arange(len(m))))
    opts = SamplingOptions(seed=3)
    with torch.no_grad():
        runs = {}
        for name, net in (("total", model), ("trunk", trunk)):
            budget = Budget(net, m)
            layer_adc = start_tokens(net, m, keys, opts, new_cache(net), budget)[3]
            runs[name] = (budget.target.clone(), layer_adc)
        _, lead_frac = draw_lead_total(model, m, keys, opts)
    torch.testing.assert_close(runs["total"][0], runs["trunk"][0], rtol=0, atol=0)  # the trunk's layer draws
    scale = (lead_frac[:, 0] * m.double().norm(dim=1) * tok.ADC_PER_GEV)[:, None]
    drawn, plain = runs["total"][1], runs["trunk"][1]
    nonempty = plain.sum(dim=1) > 0
    assert nonempty.all()
    torch.testing.assert_close(drawn.sum(dim=1, keepdim=True), scale, rtol=1e-9, atol=0)
    scaled = drawn.sum(dim=1) > 0  # an untrained lead draws an empty total now and then: no energy at all
    assert scaled.float().mean() > 0.5
    d, q = drawn[scaled], plain[scaled]
    torch.testing.assert_close(d / d.sum(dim=1, keepdim=True), q / q.sum(dim=1, keepdim=True), rtol=1e-9, atol=1e-12)
    batch = {"momentum": m, "energy_total": torch.randint(0, tok.N_ENERGY, (len(m), 1))}
    loss = lead_cross_entropy(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None for n, p in model.named_parameters() if not n.startswith("lead."))


def test_value_heads_see_the_offset_from_the_line_of_flight():
    """value_heads_see_axis starts as the model without it (zero-initialised map); once trained, the
    value heads' input depends on where the hit lies relative to the photon's line of flight, and the
    loss finds each hit's own event's axis (two events of different direction, one batch)."""
    torch.manual_seed(5)
    cfg = GPTConfig(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0, value_heads_see_strip=True, value_heads_see_axis=True)
    model = HitGPT(cfg).eval()
    plain = HitGPT(dataclasses.replace(cfg, value_heads_see_axis=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("value_axis")})
    h = torch.randn(4, 24)
    strip = torch.tensor([3, 10, 70, tok.STRIP.sep])
    axis = torch.rand(4, tok.N_LAYERS) * 30
    torch.testing.assert_close(model.value_hidden(h, strip, axis), plain.value_hidden(h, strip), rtol=0, atol=0)
    with torch.no_grad():
        torch.nn.init.normal_(model.value_axis.weight, std=0.5)
        torch.nn.init.normal_(model.value_mlp[-1].weight, std=0.5)
    moved = axis.clone()
    moved[:, 0] += 3.0  # the first PCAL layer's axis three strips further: only hits of layer 0 change
    a, b = model.value_hidden(h, strip, axis), model.value_hidden(h, strip, moved)
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    torch.testing.assert_close(a[2:], b[2:], rtol=0, atol=0)
    batch = one_event_batch()
    two = {k: torch.cat([v, v]) for k, v in batch.items()}
    two["momentum"] = torch.tensor([[1.0, 0.0, 4.0], [0.5, 0.6, 4.0]])
    loss, _ = compute_loss(model, two, LossWeights())
    loss.backward()
    assert torch.isfinite(loss) and model.value_axis.weight.grad.abs().sum() > 0
