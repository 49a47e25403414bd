"""Does a shower's total follow its shape? And how do totals spread, bin by bin?

1. On a Geant4 sample: the share of the variance of the window's total (MeV per GeV) explained by a
   least-squares fit in log E (and its square), then adding the energy-weighted mean layer, then the
   layer spread and mean radius as well (tokens.shape_features, of the voxels' bins).
2. For each file given after it (Geant4 or generated): per energy bin, std/mean of the visible energy
   per GeV, the core's half-width ((q84 - q16) / 2 / median), the 1/5/50/95/99% quantiles, and the
   99% quantile of the mean layer.

    python docs/families/calo-moe/shape_total.py SAMPLE [FILE ...]
"""

from __future__ import annotations

import sys

import numpy as np

from hitgen.core.events import EventSet
from hitgen.families.calo_moe.tokens import shape_features, tokenize

BINS = ((1.0, 2.5), (4.0, 6.0), (8.5, 10.01))


def explained(sample: str) -> None:
    events = EventSet.read(sample)
    seq = tokenize(events)
    n = events.n_events
    energy = events.conditions["energy"].astype(np.float64)
    shape = shape_features(np.repeat(np.arange(n), np.diff(seq.offsets)), seq.layer, seq.x, seq.y, seq.ebin, n).astype(np.float64)
    total = seq.window_energy / energy
    base = np.column_stack([np.ones(n), np.log(energy), np.log(energy) ** 2])
    for label, x in (
        ("log E", base),
        ("log E, mean layer", np.column_stack([base, shape[:, 0]])),
        ("log E, mean layer, spread, radius", np.column_stack([base, shape, shape[:, 0] ** 2])),
    ):
        residual = total - x @ np.linalg.lstsq(x, total, rcond=None)[0]
        share = 1 - residual.var() / total.var()
        print(f"{sample}: {label}: {share:.3f} of the total's variance explained (residual std {residual.std():.2f} MeV/GeV)")


def spreads(path: str) -> None:
    events = EventSet.read(path)
    n = events.n_events
    energy = events.conditions["energy"].astype(np.float64)
    visible = np.bincount(events.event_index(), weights=events.hits["energy"], minlength=n) / energy
    seq = tokenize(events)
    mean_layer = shape_features(np.repeat(np.arange(n), np.diff(seq.offsets)), seq.layer, seq.x, seq.y, seq.ebin, n)[:, 0]
    for lo, hi in BINS:
        s = (energy >= lo) & (energy < hi)
        q = np.quantile(visible[s], [0.01, 0.05, 0.16, 0.5, 0.84, 0.95, 0.99])
        print(
            f"{path} {lo}-{hi} GeV: std/mean {visible[s].std() / visible[s].mean():.4f}, core {(q[4] - q[2]) / 2 / q[3]:.4f}, "
            f"quantiles {np.round(q[[0, 1, 3, 5, 6]], 2).tolist()}, mean layer q99 {np.quantile(mean_layer[s], 0.99):.1f}"
        )


if __name__ == "__main__":
    explained(sys.argv[1])
    for f in sys.argv[1:]:
        spreads(f)
