"""What the machine can do and what generation asks of it: the measured matmul peak and the
analytic FLOPs of generating one event with a key-value cache.

FLOPs count a multiply-add as 2 and include every matrix product of the forward pass (embedding
projection, attention projections, attention scores and values over the cached context,
feed-forward, and the output heads that generation evaluates: strip, TDC and one ADC head per hit,
the section's). Element-wise work (LayerNorm, softmax, sampling) is left out: it moves memory, it
does no matrix arithmetic.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from hitgen.models.gpt import GPTConfig
from hitgen.models.siliconai import SiliconAIConfig
from hitgen.models.track_gpt import TrackGPTConfig
from hitgen.tokenizers import clas12_ecal as tok
from hitgen.tokenizers import siliconai
from hitgen.tokenizers.siliconai import Vocabulary

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: str, dtype: str, size: int | None = None, repeats: int = 5) -> float:
    """Measured FLOP/s of a square matrix product in this dtype: the median of `repeats` timed
    products after one warm-up (size 8192 on a GPU, 1024 on a CPU)."""
    dev = torch.device(device)
    n = size or (8192 if dev.type == "cuda" else 1024)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    torch.matmul(a, b)
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)


def flops_per_track(cfg: TrackGPTConfig, lengths: np.ndarray) -> float:
    """Mean forward FLOPs of generating tracks of these position counts (hits + 1) with the track GPT
    and a key-value cache: every position passes the trunk once and its heads (which, and the five
    deviation heads where a hit follows); the input map of the features and the condition MLP."""
    d, f = cfg.d_model, cfg.d_ff
    per_position = 2 * cfg.n_blocks * (4 * d * d + 2 * d * f) + 2 * cfg.n_features * d
    heads = 2 * d * cfg.which_vocab + 2 * d * (len(("du", "dv", "dp", "dphi", "dtheta")) * cfg.value_vocab)
    conditions = 2 * (cfg.n_conditions * d + 2 * d * d)
    lengths = np.asarray(lengths, dtype=np.float64)
    context = lengths * (lengths + 1) / 2
    total = lengths * (per_position + heads) + context * 2 * cfg.n_blocks * 2 * d + conditions
    return float(total.mean())


def flops_per_siliconai_track(cfg: SiliconAIConfig, hits: np.ndarray) -> float:
    """Mean forward FLOPs of generating tracks with these hit counts with the SiliconAI model: every
    token after the start row is one step that recomputes the window (the last three complete rows
    and the row being written) through the trunk, and one column's block of the output layer."""
    d, f, w = cfg.d_model, cfg.d_ff, cfg.window_hits
    blocks = Vocabulary.from_dict(cfg.vocabulary).blocks()
    per_position = 2 * cfg.n_blocks * (4 * d * d + 2 * d * f)
    cost = {}  # FLOPs of a track of n tokens: the steps that wrote tokens ROW .. n-1
    total = 0.0
    for p in range(siliconai.ROW, siliconai.ROW * (siliconai.MAX_HITS + 1) + 2):
        row, column = divmod(p, siliconai.ROW)
        t = p - siliconai.ROW * max(0, row - w + 1)
        lo, hi = blocks[column]
        total += t * per_position + t * (t + 1) * 2 * cfg.n_blocks * d + 2 * d * (hi - lo)  # causal attention: t(t+1)/2 pairs x 4d
        cost[p + 1] = total
    tokens = siliconai.ROW * (np.asarray(hits, np.int64) + 1) + 2
    return float(np.mean([cost[int(n)] for n in tokens]))


def flops_per_event(cfg: GPTConfig, lengths: np.ndarray) -> float:
    """Mean forward FLOPs of generating events whose token sequences (SOS..EOS) have these lengths.

    An event of length T: a prefill of n_prefix + 1 positions (prefix and SOS), then T - 2 steps of
    one position each (the last token, EOS, needs no further step); heads at T - 1 positions."""
    d, f, p = cfg.d_model, cfg.d_ff, cfg.n_prefix
    per_position = 2 * cfg.n_blocks * (4 * d * d + 2 * d * f)  # qkv + proj + feed-forward
    attention = 2 * cfg.n_blocks * 2 * d  # scores + values, per position per context position
    if cfg.value_head == "factorised":  # per value head: coarse classes, then the fine MLP of one group
        g = cfg.value_group
        value = sum(-(-n // g) + (v - n) + d + g for n, v in ((tok.N_ADC, cfg.adc_vocab), (tok.TDC_ZERO + 1, cfg.tdc_vocab)))
    else:
        value = cfg.tdc_vocab + cfg.adc_vocab
    heads = 2 * d * (cfg.strip_vocab + value)  # one ADC head per row
    embed = 2 * d * d
    lengths = np.asarray(lengths, dtype=np.float64)
    positions = p + 1 + (lengths - 2)  # every position that passes through the trunk
    # causal context: position i (0-based) attends to i + 1 positions
    context = positions * (positions + 1) / 2
    total = positions * per_position + (lengths - 1) * (embed + heads) + context * attention
    return float(total.mean())
