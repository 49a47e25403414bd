"""FLOPs per generated event of the CLAS12 GPT (analytic)."""

from __future__ import annotations

import numpy as np

from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.model import GPTConfig


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
