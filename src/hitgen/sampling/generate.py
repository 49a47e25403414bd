"""Batched autoregressive generation with a key-value cache and enforced event structure.

Per batch: prefill the nine prefix embeddings and SOS, then one fused hit (strip, ADC, TDC) per
step. The structure is enforced by masking, not hoped for:
- a strip must belong to the current readout layer and exceed the layer's previous strip;
- at most 20 hits per layer (then only the terminator is allowed);
- LAYER_SEP ends layers 0-7, EOS ends layer 8: layers come in order and every event ends.
ADC and TDC are drawn only from value tokens at hit positions. The ADC mixture's section weights
are the masked strip distribution, which lies inside the current layer's section: the ADC comes
from that section's head (the paper's soft routing, evaluated on the allowed strips).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from hitgen.models.gpt import HitGPT, KVCache
from hitgen.tokenizers import clas12_ecal as tok


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0
    top_k: int = 20  # strip stream: the paper's value; 0 = no top-k
    # ADC and TDC streams. Top-k over 5000 fine ADC bins (0.00066 decades each; 20 bins = 3% in ADC)
    # against a per-hit ADC spread of tens of percent keeps only the mode and biases the energy
    # scale: measured on our model (README), so the value streams are sampled in full by default
    value_top_k: int = 0
    batch_size: int = 256
    seed: int = 0
    # False: no key-value cache, the whole sequence is recomputed at every step (the way the SiliconAI
    # and OmniJet-alpha-C codes generate); the baseline of `hitgen bench`, same distribution
    kv_cache: bool = True


def _section_of_layer() -> torch.Tensor:
    return torch.tensor([layer // 3 for layer in range(tok.N_LAYERS)])


def sample_from(logp: torch.Tensor, allowed: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator) -> torch.Tensor:
    """Draw one token per row from log-probabilities restricted to `allowed`, with temperature and top-k."""
    logits = logp.masked_fill(~allowed, float("-inf")) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return inverse_cdf_sample(F.softmax(logits, dim=-1), gen)


def inverse_cdf_sample(probs: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One index per row of probs (B, V), drawn with probability probs[i] / sum(probs): one uniform
    number per row against the cumulative sum (in float64). Measured: torch.multinomial draws V
    exponential numbers per row on the CPU, which took 61% of all generation time (3.4 of 5.6 s for
    512 events of the shipped model); this draws one. A token of probability zero is never drawn:
    the first cumulative sum above u * total lies past a token with positive probability."""
    cdf = probs.double().cumsum(-1)
    total = cdf[:, -1:]
    u = torch.rand(len(probs), 1, generator=gen, device=probs.device, dtype=torch.float64)
    v = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, v, right=True).squeeze(-1)


@torch.no_grad()
def generate_tokens(model: HitGPT, momentum: torch.Tensor, opts: SamplingOptions, gen: torch.Generator) -> dict[str, np.ndarray]:
    """Token arrays (B, MAX_LENGTH) for one batch of conditions."""
    device = momentum.device
    b = len(momentum)
    layer_first = torch.as_tensor(tok.STRIP_OFFSETS, device=device)
    strip_ids = torch.arange(tok.STRIP.vocab_size, device=device)
    section_of_layer = _section_of_layer().to(device)
    out = {
        k: torch.full((b, tok.MAX_LENGTH), s.pad, dtype=torch.long, device=device)
        for k, s in (("strip", tok.STRIP), ("adc", tok.ADC), ("tdc", tok.TDC))
    }
    for k, s in (("strip", tok.STRIP), ("adc", tok.ADC), ("tdc", tok.TDC)):
        out[k][:, 0] = s.sos

    layer = torch.zeros(b, dtype=torch.long, device=device)  # current readout layer
    count = torch.zeros(b, dtype=torch.long, device=device)  # hits so far in it
    last = layer_first[layer] - 1  # previous strip token in the layer
    active = torch.arange(b, device=device)  # rows of the batch still decoding; finished ones are dropped

    cache = KVCache(len(model.blocks)) if opts.kv_cache else None
    special = torch.full((b, 1), tok.SPECIAL_LAYER, dtype=torch.long, device=device)
    prefix, cond = model.conditioning(momentum)
    first = model.embed(out["strip"][:, :1], out["adc"][:, :1], out["tdc"][:, :1], special, torch.full_like(special, tok.SPECIAL_RANK), cond)
    seq = torch.cat([prefix, first], dim=1)  # without a cache: every input so far
    h = model.trunk(seq, cache)[:, -1]
    adc_values = torch.arange(tok.ADC.vocab_size, device=device) < tok.N_ADC
    tdc_values = torch.arange(tok.TDC.vocab_size, device=device) <= tok.TDC_ZERO
    for pos in range(1, tok.MAX_LENGTH):
        n = len(active)
        strip_logp = model.strip_log_probs(h)
        in_layer = (strip_ids[None] > last[:, None]) & (strip_ids[None] < layer_first[layer + 1][:, None]) & (count < tok.MAX_HITS)[:, None]
        allowed = in_layer.clone()
        allowed[:, tok.STRIP.sep] = layer < tok.N_LAYERS - 1
        allowed[:, tok.STRIP.eos] = layer == tok.N_LAYERS - 1
        strip = sample_from(strip_logp, allowed, opts.temperature, opts.top_k, gen)
        is_hit = strip < tok.N_STRIPS
        is_sep = strip == tok.STRIP.sep
        # ADC from the current section's head only (the routing weights of the others are zero
        # under the mask), TDC from its head; value tokens only
        adc_logp = F.log_softmax(model.adc_logits_of_sections(h, section_of_layer[layer.clamp(max=tok.N_LAYERS - 1)]), -1)
        adc = sample_from(adc_logp, adc_values.expand(n, -1), opts.temperature, opts.value_top_k, gen)
        tdc = sample_from(F.log_softmax(model.tdc_logits(h), -1), tdc_values.expand(n, -1), opts.temperature, opts.value_top_k, gen)
        adc = torch.where(is_hit, adc, torch.where(is_sep, tok.ADC.sep, tok.ADC.eos))
        tdc = torch.where(is_hit, tdc, torch.where(is_sep, tok.TDC.sep, tok.TDC.eos))
        out["strip"][active, pos] = strip
        out["adc"][active, pos] = adc
        out["tdc"][active, pos] = tdc
        in_layer_id = torch.where(is_hit, layer, torch.full_like(layer, tok.SPECIAL_LAYER))
        rank = torch.where(is_hit, count, torch.full_like(count, tok.SPECIAL_RANK))
        # state updates
        count = torch.where(is_hit, count + 1, torch.zeros_like(count))
        last = torch.where(is_hit, strip, layer_first[(layer + is_sep.long()).clamp(max=tok.N_LAYERS)] - 1)
        layer = layer + is_sep.long()
        going = strip != tok.STRIP.eos
        if not bool(going.all()):  # drop finished events from the batch and the cache
            if not bool(going.any()):
                break
            active, count, last, layer = active[going], count[going], last[going], layer[going]
            strip, adc, tdc, in_layer_id, rank = strip[going], adc[going], tdc[going], in_layer_id[going], rank[going]
            cond = None if cond is None else cond[going]
            if cache is not None:
                cache.keep(going)
            else:
                seq = seq[going]
        x = model.embed(strip[:, None], adc[:, None], tdc[:, None], in_layer_id[:, None], rank[:, None], cond)
        if cache is not None:
            h = model.trunk(x, cache)[:, -1]
        else:
            seq = torch.cat([seq, x], dim=1)
            h = model.trunk(seq)[:, -1]
    return {k: v.cpu().numpy() for k, v in out.items()}


def generate(
    model: HitGPT, momentum: np.ndarray, opts: SamplingOptions, device: str = "cpu", progress: Callable[[int], None] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Generate one event per row of momentum (N, 3): returns (offsets, hits) in event order.

    Batch k draws from a generator seeded with (seed, k): the output is reproducible for a given
    seed and batch size."""
    model = model.to(device).eval()
    offsets_parts, hit_parts = [], []
    n = len(momentum)
    for k, lo in enumerate(range(0, n, opts.batch_size)):
        gen = torch.Generator(device=device)
        gen.manual_seed(int(np.random.SeedSequence([opts.seed, k]).generate_state(1)[0]))
        m = torch.as_tensor(momentum[lo : lo + opts.batch_size], dtype=torch.float32, device=device)
        tokens = generate_tokens(model, m, opts, gen)
        offsets, hits = tok.decode(tokens["strip"], tokens["adc"], tokens["tdc"])
        offsets_parts.append(offsets)
        hit_parts.append(hits)
        if progress:
            progress(min(lo + opts.batch_size, n))
    base = np.cumsum([0] + [int(o[-1]) for o in offsets_parts[:-1]])
    offsets = np.concatenate([[0]] + [o[1:] + b for o, b in zip(offsets_parts, base, strict=True)]).astype(np.int64)
    hits = {k: np.concatenate([h[k] for h in hit_parts]) for k in hit_parts[0]}
    return offsets, hits
