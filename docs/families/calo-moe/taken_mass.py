"""How much probability does a foundation model put on voxels the shower already holds? Geant4 never
repeats a voxel, so a model that knows the shower so far puts none there; whatever it puts there is
what generation's exclusion (sampler.py) has to move elsewhere, and where it moves it is what the
widths see. Teacher-forced on the first N Geant4 showers of a sample (default: the W photons of seed
6001), at every voxel of every shower:

- voxel: the whole draw's mass on taken voxels, sum over them of p(layer) p(x | layer) p(y | layer, x);
- column: the y head's mass on the taken y of the voxel's own (layer, x) column, given its true layer
  and x (what exclusion "y" renormalises away);

averaged over voxels, and by the voxel's rank in the shower (the order is by decreasing energy).

    python docs/families/calo-moe/taken_mass.py MODEL [N] [SAMPLE]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.calo_moe.data import VoxelData, expert_names, taken_mass, taken_pairs
from hitgen.families.calo_moe.tokens import EXPERT_KEYS
from hitgen.models.io import load_model

RANKS = ((0, 10), (10, 30), (30, 100), (100, 300), (300, 601))


@torch.no_grad()
def shower_masses(model, data: VoxelData, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) voxel and column masses of shower i, one per voxel (data.taken_mass: the training's own)."""
    batch = data.batch(np.array([i]))
    expert = EXPERT_KEYS[int(batch["expert"][0])]
    heads = model.heads[expert.rsplit("-", 1)[0]]
    h = model(batch, [expert]).float()
    layer, x, y = (batch[k][0].numpy() for k in ("layer", "x", "y"))
    n = len(layer)
    j, lc, xc, mask = taken_pairs(layer, x, y)
    pairs = (torch.zeros(len(j), dtype=torch.long), *(torch.from_numpy(a) for a in (j, lc, xc, mask)))
    voxel = taken_mass(heads, h, torch.log_softmax(heads.layer(h), -1), pairs)[0, :n].numpy()
    own = (j < n) & (lc == layer[np.minimum(j, n - 1)]) & (xc == x[np.minimum(j, n - 1)])  # each voxel's own column
    hl = heads.after_layer(h[0, j[own]], torch.from_numpy(lc[own]))
    p_y = torch.softmax(heads.y(heads.after_x(hl, torch.from_numpy(xc[own]))), -1)
    column = np.zeros(n)
    column[j[own]] = (p_y * torch.from_numpy(mask[own])).sum(1).numpy()
    return voxel, column


def main() -> None:
    torch.set_num_threads(2)
    model = load_model(sys.argv[1]).model.eval()
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    sample = sys.argv[3] if len(sys.argv) > 3 else "/work/runs/allshowers/data/eval_gamma_seed6001.h5"
    events = EventSet.read(sample).select(np.arange(n))
    assert set(expert_names(events)) <= set(model.cfg.experts), "the model has no expert for these showers"
    data = VoxelData.from_parts([events])
    voxel, col = zip(*(shower_masses(model, data, i) for i in range(n)), strict=True)
    rank = np.concatenate([np.arange(len(v)) for v in voxel])
    voxel, col = np.concatenate(voxel), np.concatenate(col)
    print(f"{sys.argv[1]}: {n} showers, {len(voxel)} voxels; mass on taken voxels {voxel.mean():.4f}, on the own column's taken y {col.mean():.4f}")
    for lo, hi in RANKS:
        s = (rank >= lo) & (rank < hi)
        if s.any():
            print(f"  voxels {lo}-{hi - 1} of the shower ({s.sum()}): voxel {voxel[s].mean():.4f}, column {col[s].mean():.4f}")


if __name__ == "__main__":
    main()
