"""FLOPs of one generated shower of the foundation model (multiply-adds x 2): per position the trunk
(attention maps, attention over the positions so far, one routed expert's feed-forward) and the
four heads of one particle."""

from __future__ import annotations

import numpy as np

from hitgen.detectors.ild_ecal.geometry import N_LAYERS
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.families.calo_moe.model import CaloMoEConfig
from hitgen.families.calo_moe.tokens import ENERGY_BINS


def flops_per_shower(model_config: dict | CaloMoEConfig, lengths: np.ndarray) -> float:
    cfg = model_config if isinstance(model_config, CaloMoEConfig) else CaloMoEConfig.from_dict(model_config)
    d, w = cfg.d_model, cfg.head_width
    t = np.asarray(lengths, dtype=np.float64)
    if not len(t):
        return 0.0
    per_position = cfg.n_blocks * (4 * d * d + 2 * d * cfg.d_ff) + d * w * 4 + w * (N_LAYERS + 1 + 2 * WINDOW + ENERGY_BINS)
    attention = cfg.n_blocks * 2 * d * t * (t + 1) / 2  # position p attends to p + 1 keys
    return float(np.mean(2.0 * (t * per_position + attention)))
