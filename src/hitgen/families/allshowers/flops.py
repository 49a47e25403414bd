"""FLOPs of one AllShowers shower (multiply-adds x 2): the first stage's MLP and the point CNF, each
at the number of function evaluations of the decoder (plain: the model's default solver; the first
stage: its count_solver where the model has one)."""

from __future__ import annotations

import numpy as np

from hitgen.families.allshowers.model import N_COND, AllShowersConfig


def flops_per_shower(model_config: dict | AllShowersConfig, points: np.ndarray, decoder: str = "plain") -> float:
    cfg = model_config if isinstance(model_config, AllShowersConfig) else AllShowersConfig.from_dict(model_config)
    solver = cfg.default_solver if decoder == "plain" else decoder
    nfe = int(solver.partition("-")[2])
    count_nfe = int((cfg.count_solver or solver).partition("-")[2])
    k, nf, d, w = cfg.n_stage, 2 * cfg.time_frequencies, cfg.d_model, cfg.count_width
    stage = (k + nf + N_COND) * w + (cfg.count_depth - 1) * w * w + w * k
    p = float(np.mean(points)) if len(points) else 0.0
    # per point and block: q, k, v and output maps, feed-forward, and attention over all P points of the
    # shower (the CPU path computes the band mask's attention densely)
    per_point = cfg.n_blocks * (4 * d * d + 2 * d * cfg.d_ff + 2 * p * d) + 3 * d + d * 3
    context = (N_COND + k + nf) * d + d * d + d * d
    return 2.0 * (count_nfe * stage + nfe * (context + p * per_point))
