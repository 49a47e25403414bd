"""Where an AllShowers model's cells go: per ring of cells around the entry cell (ring 0 the entry
cell, ring 1 its 8 neighbours, ..., 8 and beyond together), the points the CNF puts there before any
cell is formed (two points in one cell counted twice), the cells they make, and the cells' energy,
each as a ratio to Geant4's cells (the evaluation sample of a particle, its first N showers,
generation seed 1, batch 256).

    python docs/families/allshowers/core_cells.py MODEL DECODER [gamma|e-|e+] [N]

Points / Geant4 near 1 with cells / Geant4 well below it: the CNF puts the right number of points
there but several in one cell (summed into one cell).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import ILD
from hitgen.families.allshowers import sampler
from hitgen.models.io import load_model

EVAL = {"gamma": "eval_gamma_seed6001.h5", "e-": "eval_e-_seed6002.h5", "e+": "eval_e+_seed6003.h5"}
RINGS = 9


def ring(cx: np.ndarray, cy: np.ndarray, entry: np.ndarray) -> np.ndarray:
    """Chebyshev distance in cells from the cell of the entry point, the last ring holding all beyond."""
    d = np.maximum(np.abs(cx - ILD.cell_of(entry[:, 0])), np.abs(cy - ILD.cell_of(entry[:, 1])))
    return np.minimum(d, RINGS - 1)


def main() -> None:
    torch.set_num_threads(2)
    model, decoder = load_model(sys.argv[1]).model, sys.argv[2]
    particle = sys.argv[3] if len(sys.argv) > 3 else "gamma"
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    ref = EventSet.read(f"/work/runs/allshowers/data/{EVAL[particle]}")
    cond = {k: v[:n] for k, v in ref.conditions.items()}
    seen = []  # the points of every batch in mm, their events (within the batch) and layers
    to_cells = sampler._to_cells

    def recording(points, event, layer, b, *rest):
        stats = rest[2]
        seen.append((points.double().numpy() * np.array(stats["point_std"]) + np.array(stats["point_mean"]), event.numpy(), layer.numpy(), b))
        return to_cells(points, event, layer, b, *rest)

    sampler._to_cells = recording
    offsets, hits = sampler.generate_showers(model, cond, 1, 256, decoder)
    points, first = np.zeros(RINGS), 0
    for pts, event, _, b in seen:
        points += np.bincount(ring(ILD.cell_of(pts[:, 0]), ILD.cell_of(pts[:, 1]), cond["entry_point"][event + first]), minlength=RINGS)
        first += b
    gen_event = np.repeat(np.arange(n), np.diff(offsets))
    gen_ring = ring(hits["cell_x"], hits["cell_y"], cond["entry_point"][gen_event])
    ev = ref.event_index()
    keep = ev < n
    g4_ring = ring(ref.hits["cell_x"][keep], ref.hits["cell_y"][keep], cond["entry_point"][ev[keep]])
    g4 = np.bincount(g4_ring, minlength=RINGS)
    g4_e = np.bincount(g4_ring, weights=ref.hits["energy"][keep], minlength=RINGS)
    cells = np.bincount(gen_ring, minlength=RINGS)
    energy = np.bincount(gen_ring, weights=hits["energy"], minlength=RINGS)
    print(f"{particle}, {n} showers, {sys.argv[1]} {decoder}")
    print("ring | Geant4 cells per shower | points / Geant4 | cells / Geant4 | energy / Geant4")
    for r in range(RINGS):
        print(f"{r}{'+' if r == RINGS - 1 else ''} | {g4[r] / n:.2f} | {points[r] / g4[r]:.3f} | {cells[r] / g4[r]:.3f} | {energy[r] / g4_e[r]:.3f}")
    print(f"all | {g4.sum() / n:.1f} | {points.sum() / g4.sum():.3f} | {cells.sum() / g4.sum():.3f} | {energy.sum() / g4_e.sum():.3f}")


if __name__ == "__main__":
    main()
