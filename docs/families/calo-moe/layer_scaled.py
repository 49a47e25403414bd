"""A diagnosis, not a model: would the foundation model's showers pass with Geant4-like layer
fluctuations? Its W photons (an evaluation file of `evaluate.sh`) with each layer's voxels scaled to
the layer energy that AllShowers' first stage draws for the same conditions (the reflowed model,
euler-1, seed 1), voxels scaled below the 0.1 MeV threshold dropped; prints the share of the drawn
energy that falls in layers without a voxel and writes OUT for `hitgen evaluate`.

    python docs/families/calo-moe/layer_scaled.py GEN_GAMMA_W.h5 OUT.h5
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, THRESHOLD_MEV
from hitgen.families.allshowers import sampler
from hitgen.models.io import load_model


def drawn_layer_energies(conditions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 30) MeV: AllShowers' first-stage layer energies for the conditions."""
    drawn = []
    to_cells = sampler._to_cells

    def recording(points, event, layer, b, layer_energy, *rest):
        drawn.append(layer_energy.double().cpu().numpy())
        return to_cells(points, event, layer, b, layer_energy, *rest)

    sampler._to_cells = recording
    sampler.generate_showers(load_model("ild-ecal-allshowers-reflow").model, conditions, 1, 256, "euler-1")
    return np.concatenate(drawn)


def main() -> None:
    torch.set_num_threads(2)
    cand = EventSet.read(sys.argv[1])
    target = drawn_layer_energies(cand.conditions)
    h, event = cand.hits, cand.event_index()
    energy = h["energy"].astype(np.float64)
    sums = np.zeros((cand.n_events, N_LAYERS))
    np.add.at(sums, (event, h["layer"]), energy)
    scaled = energy * np.divide(target, sums, out=np.zeros_like(sums), where=sums > 0)[event, h["layer"]]
    print(f"drawn energy in layers without a voxel: {target[sums == 0].sum() / target.sum():.4f}")
    keep = scaled >= THRESHOLD_MEV
    cand.hits = {k: v[keep] for k, v in h.items()} | {"energy": scaled[keep].astype(h["energy"].dtype)}
    cand.offsets = np.concatenate([[0], np.cumsum(np.bincount(event[keep], minlength=cand.n_events))]).astype(cand.offsets.dtype)
    cand.write(sys.argv[2], overwrite=True)


if __name__ == "__main__":
    main()
