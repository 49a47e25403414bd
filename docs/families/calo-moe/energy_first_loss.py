"""Which order of a voxel's four draws is easier to learn: the shipped heads (layer or the end, x | layer,
y | layer, x, energy bin | voxel) or energy first (energy bin or the end, layer | bin, x | bin, layer,
y | bin, layer, x). Both factorise the same joint of the next token, so their summed cross entropies
per position are the same quantity (nats) and compare directly.

The same trunk (configs/calo-moe/cpu.toml's size, the same initial weights), the same showers in the
same batches, the same schedule; the plain likelihood; the validation loss over held-out showers every
EVAL steps. Not part of the model family: an experiment that decides whether the family should change
(docs/families/calo-moe.md, "Energy first?").

    python docs/families/calo-moe/energy_first_loss.py STEPS W_FILE TA_FILE [OUT.json]
"""

from __future__ import annotations

import json
import math
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.families.calo_moe.data import IGNORE, VoxelData, moe_loss
from hitgen.families.calo_moe.model import CaloMoE, CaloMoEConfig, _mlp
from hitgen.families.calo_moe.tokens import ENERGY_BINS, EOS_LAYER, EXPERT_KEYS, N_LAYERS
from hitgen.nn.blocks import init_weights

CONFIG = Path(__file__).parents[3] / "configs" / "calo-moe" / "cpu.toml"
BATCH, VAL, EVAL, WARMUP, LR, MIN_LR, WD = 32, 480, 100, 40, 1e-3, 0.05, 0.01


class EnergyFirstHeads(nn.Module):
    """energy bin (or the end) | h; layer | h, bin; x | h, bin, layer; y | h, bin, layer, x."""

    def __init__(self, d: int, w: int) -> None:
        super().__init__()
        self.energy = _mlp(d, w, ENERGY_BINS + 1)
        self.layer = _mlp(d, w, N_LAYERS)
        self.x = _mlp(d, w, WINDOW)
        self.y = _mlp(d, w, WINDOW)
        self.emb_energy = nn.Embedding(ENERGY_BINS, d)
        self.emb_layer = nn.Embedding(N_LAYERS, d)
        self.emb_x = nn.Embedding(WINDOW, d)


def energy_first_loss(model: CaloMoE, heads: EnergyFirstHeads, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    experts = [EXPERT_KEYS[c] for c in batch["expert"].tolist()]
    h = model(batch, experts)
    t_layer = batch["t_layer"]
    vox = batch["t_x"] != IGNORE
    t_energy = torch.where(vox, batch["t_ebin"], torch.where(t_layer == EOS_LAYER, ENERGY_BINS, IGNORE))
    ce = F.cross_entropy(heads.energy(h).flatten(0, 1), t_energy.flatten(), ignore_index=IGNORE, reduction="sum")
    hv = h[vox]
    he = hv + heads.emb_energy(batch["t_ebin"][vox])
    hl = he + heads.emb_layer(t_layer[vox])
    hx = hl + heads.emb_x(batch["t_x"][vox])
    ce = ce + F.cross_entropy(heads.layer(he), t_layer[vox], reduction="sum")
    ce = ce + F.cross_entropy(heads.x(hl), batch["t_x"][vox], reduction="sum")
    ce = ce + F.cross_entropy(heads.y(hx), batch["t_y"][vox], reduction="sum")
    return ce / (t_layer != IGNORE).sum().clamp(min=1)


def build(order: str, stats: dict) -> tuple[CaloMoE, nn.Module | None]:
    fields = tomllib.loads(CONFIG.read_text())["model"]
    fields.pop("architecture")
    torch.manual_seed(0)
    model = CaloMoE(CaloMoEConfig(**fields, stats=stats))
    if order == "voxel-first":
        return model, None
    heads = EnergyFirstHeads(model.cfg.d_model, model.cfg.head_width)
    heads.apply(init_weights)
    for head in model.heads.values():  # the shipped heads are not used: keep them out of the optimiser
        head.requires_grad_(False)
    return model, heads


def run(order: str, steps: int, data: VoxelData, train_idx: np.ndarray, val_idx: np.ndarray) -> dict:
    model, heads = build(order, data.log_energy_stats())
    params = [p for p in model.parameters() if p.requires_grad] + ([] if heads is None else list(heads.parameters()))
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WD)

    def lr_at(step: int) -> float:
        if step < WARMUP:
            return LR * (step + 1) / WARMUP
        t = (step - WARMUP) / max(steps - WARMUP, 1)
        return LR * (MIN_LR + (1 - MIN_LR) * 0.5 * (1 + math.cos(math.pi * t)))

    def loss_of(batch):
        return moe_loss(model, batch)[0] if heads is None else energy_first_loss(model, heads, batch)

    def validation() -> float:
        model.eval()
        total, positions = 0.0, 0
        with torch.no_grad():
            for lo in range(0, len(val_idx), 96):
                b = data.batch(val_idx[lo : lo + 96])
                n = int((b["t_layer"] != IGNORE).sum())
                total += float(loss_of(b)) * n
                positions += n
        model.train()
        return total / positions

    rng = np.random.default_rng(1)
    curve, t0 = [], time.perf_counter()
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = loss_of(data.batch(rng.choice(train_idx, BATCH, replace=False)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % EVAL == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "train": float(loss.detach()), "val": validation(), "s": round(time.perf_counter() - t0, 1)})
            print(order, curve[-1], flush=True)
    return {"order": order, "curve": curve}


def main(steps: int, w_file: str, ta_file: str, out: str | None) -> None:
    torch.set_num_threads(2)
    data = VoxelData.from_parts([EventSet.read(w_file), EventSet.read(ta_file)])
    order = np.random.default_rng(0).permutation(len(data))
    val_idx, train_idx = order[:VAL], order[VAL:]
    results = [run(o, steps, data, train_idx, val_idx) for o in ("voxel-first", "energy-first")]
    if out:
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
