"""FLOPs per generated track of the track GPT (analytic; `hitgen bench` reports them against the matmul peak)."""

from __future__ import annotations

import numpy as np

from hitgen.families.track_gpt.model import TrackGPTConfig


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
