"""The photons' shower width layer by layer: the median over showers of each layer's energy-weighted
width in x (mm, the centres of the file's own cells), the spread of its centre around the entry point, and the correlation of
adjacent layers' centres, for Geant4, its replica and a model's showers of the same conditions.

    python docs/families/allshowers/layer_widths.py REFERENCE REPLICA CANDIDATE
"""

from __future__ import annotations

import sys

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import layout_of

LAYERS = [0, 2, 4, 6, 8, 10, 14, 18, 22, 26]


def centres_and_widths(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 30) energy-weighted centre (minus the entry point) and width in x of every layer."""
    events = EventSet.read(path)
    h, n, geometry = events.hits, events.n_events, layout_of(events.detector_spec)
    event = np.repeat(np.arange(n), np.diff(events.offsets))
    x = geometry.cell_centre_mm(h["cell_x"]) - events.conditions["entry_point"][event, 0]
    w = h["energy"].astype(np.float64)
    sums = np.zeros((3, n, 30))
    for k, v in enumerate((w, w * x, w * x * x)):
        np.add.at(sums[k], (event, h["layer"]), v)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = sums[1] / sums[0]
        width = np.sqrt(np.maximum(sums[2] / sums[0] - centre**2, 0.0))
    return centre, width


def main(paths: list[str]) -> None:
    print("layers", LAYERS)
    for name, path in zip(("Geant4", "replica", "candidate"), paths, strict=True):
        centre, width = centres_and_widths(path)
        print(f"{name:9s} width median     ", np.round([np.nanmedian(width[:, k]) for k in LAYERS], 2))
        print(f"{name:9s} centre std       ", np.round([np.nanstd(centre[:, k]) for k in LAYERS], 2))
        adjacent = [np.corrcoef(np.nan_to_num(centre[:, k]), np.nan_to_num(centre[:, k + 1]))[0, 1] for k in LAYERS]
        print(f"{name:9s} centre corr k,k+1", np.round(adjacent, 2))


if __name__ == "__main__":
    main(sys.argv[1:4])
