"""FLOPs per generated track of the SiliconAI model (analytic)."""

from __future__ import annotations

import numpy as np

from hitgen.families.siliconai import tokenizer as siliconai
from hitgen.families.siliconai.model import SiliconAIConfig
from hitgen.families.siliconai.tokenizer import Vocabulary


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
