"""The photons' shower width layer by layer, for Geant4, its replica and models' showers of the same
conditions: the median over showers of each layer's width in x (mm, the centres of the file's own
cells) weighted by energy and by cell, the spread of its centre around the entry point, the
correlation of adjacent layers' centres, the median share of the layer's energy in the column of
cells the particle enters, and that share over layers 2-6 by where in its cell the particle enters.

    python docs/families/allshowers/layer_widths.py REFERENCE REPLICA CANDIDATE [CANDIDATE ...]
"""

from __future__ import annotations

import sys

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import layout_of

LAYERS = [0, 2, 4, 6, 8, 10, 14, 18, 22, 26]
ENTRY_BINS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])  # |x_entry| from the entry cell's centre, mm


def layer_sums(path: str) -> dict[str, np.ndarray]:
    """Per shower and layer (N, 30): energy-weighted centre (minus the entry point) and width in x,
    cell-counted width, the entry column's energy share; and the entry points' |x| (N,)."""
    events = EventSet.read(path)
    h, n, geometry = events.hits, events.n_events, layout_of(events.detector_spec)
    event = np.repeat(np.arange(n), np.diff(events.offsets))
    entry_x = events.conditions["entry_point"][:, 0].astype(np.float64)
    x = geometry.cell_centre_mm(h["cell_x"]) - entry_x[event]
    energy = h["energy"].astype(np.float64)
    out: dict[str, np.ndarray] = {"entry_x": np.abs(entry_x)}
    for name, w in (("energy", energy), ("cells", np.ones_like(energy))):
        sums = np.zeros((3, n, 30))
        for k, v in enumerate((w, w * x, w * x * x)):
            np.add.at(sums[k], (event, h["layer"]), v)
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = sums[1] / sums[0]
            out[f"width_{name}"] = np.sqrt(np.maximum(sums[2] / sums[0] - centre**2, 0.0))
        if name == "energy":
            out["centre"], out["energy"] = centre, sums[0]
    column = np.zeros((n, 30))
    np.add.at(column, (event, h["layer"]), energy * (np.abs(x) < geometry.cell_size_mm / 2))  # the entry cell's column
    out["column"] = column
    return out


def main(paths: list[str]) -> None:
    print("layers", LAYERS)
    names = ["Geant4", "replica"] + [f"candidate {i + 1}" for i in range(len(paths) - 2)]
    for name, path in zip(names, paths, strict=True):
        s = layer_sums(path)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = s["column"] / s["energy"]
        print(f"{name:12s} width median          ", np.round([np.nanmedian(s["width_energy"][:, k]) for k in LAYERS], 2))
        print(f"{name:12s} width median, by cell  ", np.round([np.nanmedian(s["width_cells"][:, k]) for k in LAYERS], 2))
        print(f"{name:12s} entry column's share   ", np.round([np.nanmedian(share[:, k]) for k in LAYERS], 2))
        print(f"{name:12s} centre std             ", np.round([np.nanstd(s["centre"][:, k]) for k in LAYERS], 2))
        adjacent = [np.corrcoef(np.nan_to_num(s["centre"][:, k]), np.nan_to_num(s["centre"][:, k + 1]))[0, 1] for k in LAYERS]
        print(f"{name:12s} centre corr k,k+1      ", np.round(adjacent, 2))
        early = s["column"][:, 2:7].sum(1) / np.maximum(s["energy"][:, 2:7].sum(1), 1e-9)
        b = np.digitize(s["entry_x"], ENTRY_BINS) - 1
        by_entry = [early[b == k].mean() for k in range(len(ENTRY_BINS) - 1)]
        print(f"{name:12s} share, layers 2-6, by |x_entry| {ENTRY_BINS.tolist()} mm:", np.round(by_entry, 3))


if __name__ == "__main__":
    main(sys.argv[1:])
