"""The voxel count and the total: the model's showers for a sample's first N conditions (seed 1,
batch 256) with and without its total-energy modules (the same streams, so the same sequences), against
Geant4's: the scale factors the totals apply, the hits per shower (median, spread) per energy range,
and the correlation of the count with the visible energy.

    python docs/families/calo-moe/count_total.py MODEL SAMPLE MATERIAL [N]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.calo_moe.sampler import generate_showers
from hitgen.models.io import load_model


def sums(offsets: np.ndarray, energy: np.ndarray) -> np.ndarray:
    n = len(offsets) - 1
    return np.bincount(np.repeat(np.arange(n), np.diff(offsets)), weights=energy, minlength=n)


def main(model_ref: str, sample: str, material: str, n: int) -> None:
    model = load_model(model_ref).model.eval()
    ref = EventSet.read(sample).select(np.arange(n))
    with torch.no_grad():
        off_t, hits_t = generate_showers(model, ref.conditions, material, seed=1, batch_size=256)
        totals = model.totals
        model.totals = torch.nn.ModuleDict()
        try:
            off_n, hits_n = generate_showers(model, ref.conditions, material, seed=1, batch_size=256)
        finally:
            model.totals = totals
    e = ref.conditions["energy"].astype(np.float64)
    count = {"totals": np.diff(off_t), "no totals": np.diff(off_n), "Geant4": ref.hits_per_event()}
    visible = {"totals": sums(off_t, hits_t["energy"]), "no totals": sums(off_n, hits_n["energy"]), "Geant4": sums(ref.offsets, ref.hits["energy"])}
    factor = visible["totals"] / np.maximum(visible["no totals"], 1e-9)
    print(f"scale factor median {np.median(factor):.3f}, 5-95%: {np.quantile(factor, 0.05):.3f}-{np.quantile(factor, 0.95):.3f}")
    print("hits per shower, mean: " + ", ".join(f"{k} {v.mean():.1f}" for k, v in count.items()))
    for lo, hi in ((1.0, 2.2), (2.2, 5.0), (5.0, 10.01)):
        s = (e >= lo) & (e < hi)
        parts = []
        for k, c in count.items():
            corr = np.corrcoef(c[s], visible[k][s] / e[s])[0, 1]
            parts.append(f"{k}: median {np.median(c[s]):.0f} std {c[s].std():.1f} corr(count, visible/E) {corr:.2f}")
        print(f"{lo}-{hi} GeV | " + " | ".join(parts))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1000)
