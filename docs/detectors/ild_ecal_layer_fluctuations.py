"""Does a candidate's longitudinal development fluctuate like Geant4's? Per layer, the shower-to-shower
spread (std) of the fraction of the shower's energy in that layer, and the correlation of the
fractions of adjacent layers (l, l + 1), each as a ratio candidate / reference beside the replica's
ratio (the floor); every second layer of the first 24 (where Geant4 holds nearly all the energy).

    python docs/detectors/ild_ecal_layer_fluctuations.py REFERENCE REPLICA CANDIDATE...
"""

from __future__ import annotations

import sys

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.observables import shower_observables

LAYERS = 24


def fluctuations(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(std of the energy fraction per layer, correlation of the fractions of layers l and l + 1)."""
    o = shower_observables(EventSet.read(path))
    energy = o.layer_energy[o.layer_energy.sum(axis=1) > 0]
    fraction = energy / energy.sum(axis=1, keepdims=True)
    corr = np.corrcoef(fraction[:, :LAYERS].T)
    return fraction[:, :LAYERS].std(axis=0), np.array([corr[i, i + 1] for i in range(LAYERS - 1)])


def main() -> None:
    ref_std, ref_corr = fluctuations(sys.argv[1])
    rep_std, rep_corr = fluctuations(sys.argv[2])
    print("layers:", " ".join(f"{i:5d}" for i in range(0, LAYERS - 1, 2)))
    print("Geant4's corr(l, l+1):", " ".join(f"{v:5.2f}" for v in ref_corr[::2]))
    for label, (std, corr) in [("replica", (rep_std, rep_corr))] + [(p, fluctuations(p)) for p in sys.argv[3:]]:
        print(label)
        print("  spread of the fraction / Geant4's:", " ".join(f"{v:5.2f}" for v in (std / ref_std)[: LAYERS - 1 : 2]))
        print("  corr(l, l+1) / Geant4's:          ", " ".join(f"{v:5.2f}" for v in (corr / ref_corr)[::2]))


if __name__ == "__main__":
    main()
