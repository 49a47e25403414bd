"""Response and resolution per 1 GeV bin of an AllShowers model, with and without the scaling of the
points to the first stage's layer energies, as ratios to Geant4's (the evaluation sample of a particle,
generation seed 1, batch 256).

    python docs/families/allshowers/scaling.py MODEL DECODER [gamma|e-|e+] [COUNT_SOLVER]

COUNT_SOLVER (e.g. heun-16) integrates the first stage with that solver instead of the model's.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.allshowers.sampler import generate_showers, parse_decoder
from hitgen.models.io import load_model

EVAL = {"gamma": "eval_gamma_seed6001.h5", "e-": "eval_e-_seed6002.h5", "e+": "eval_e+_seed6003.h5"}


def response(offsets: np.ndarray, energy: np.ndarray, incident: np.ndarray) -> np.ndarray:
    out = np.zeros(len(offsets) - 1)
    np.add.at(out, np.repeat(np.arange(len(out)), np.diff(offsets)), energy.astype(np.float64))
    return out / incident


def main() -> None:
    torch.set_num_threads(2)
    model, decoder = load_model(sys.argv[1]).model, sys.argv[2]
    if len(sys.argv) > 4:
        parse_decoder(sys.argv[4])  # one clear line for a bad solver
        model.cfg.count_solver = sys.argv[4]
    ref = EventSet.read(f"/work/runs/allshowers/data/{EVAL[sys.argv[3] if len(sys.argv) > 3 else 'gamma']}")
    e = ref.conditions["energy"]
    r_ref = response(ref.offsets, ref.hits["energy"], e)
    r = {}
    for scaled in (False, True):
        offsets, hits = generate_showers(model, ref.conditions, 1, 256, decoder, rescale=scaled)
        r[scaled] = response(offsets, hits["energy"], e)
    print("GeV  | Geant4 mean, spread/mean | not scaled: mean, spread ratios | scaled: mean, spread ratios")
    for lo in range(1, 10):
        s = (e >= lo) & (e < lo + 1)

        def mean_spread(x):
            return x[s].mean(), x[s].std() / x[s].mean()

        g = mean_spread(r_ref)
        cells = " | ".join(f"{mean_spread(r[k])[0] / g[0]:.3f} {mean_spread(r[k])[1] / g[1]:.2f}" for k in (False, True))
        print(f"{lo}-{lo + 1} | {g[0]:.2f} {g[1]:.4f} | {cells}")


if __name__ == "__main__":
    main()
