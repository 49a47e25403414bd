"""Has an AllShowers model learnt the cell grid? Where its points fall within their cells, before any
cell is formed: the offset of x and y from the cell's centre in cells, in ten bins over (-0.5, 0.5).
Training points sit at their cell's centre plus a normal 0.15 cell (`dequantisation = "centred"`),
so a model that learnt them peaks in the middle bins; flat (0.10 each) is no grid at all. The
photons of the evaluation sample (seed 6001), its first N showers, generation seed 1, batch 256.

    python docs/families/allshowers/cell_offsets.py MODEL DECODER [N]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import ILD
from hitgen.families.allshowers import sampler
from hitgen.models.io import load_model


def main() -> None:
    torch.set_num_threads(2)
    model, decoder = load_model(sys.argv[1]).model, sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    ref = EventSet.read("/work/runs/allshowers/data/eval_gamma_seed6001.h5")
    seen = []  # every batch's points in mm
    to_cells = sampler._to_cells

    def recording(points, event, layer, b, *rest):
        stats = rest[2]
        seen.append(points.double().numpy() * np.array(stats["point_std"]) + np.array(stats["point_mean"]))
        return to_cells(points, event, layer, b, *rest)

    sampler._to_cells = recording
    sampler.generate_showers(model, {k: v[:n] for k, v in ref.conditions.items()}, 1, 256, decoder)
    points = np.concatenate(seen)
    for axis, name in enumerate("xy"):
        offset = (points[:, axis] - ILD.cell_centre_mm(ILD.cell_of(points[:, axis]))) / ILD.cell_size_mm
        counts, _ = np.histogram(offset, bins=10, range=(-0.5, 0.5))
        print(f"{name}: " + " ".join(f"{c:.3f}" for c in counts / counts.sum()), f"({len(offset)} points)")


if __name__ == "__main__":
    main()
