"""The point CNF's flow-matching loss of AllShowers models on fresh Geant4 showers: the first 200
showers of each evaluation sample (seeds 6001-6005, never used in training), the noise and times
drawn from fixed seeds 0..3 (the same for every model, so the models compare pair by pair), mean and
spread over the four draws per particle. The trainer's validation loss draws new noise and times at
every evaluation and moves by +-0.03 between evaluations; this one does not.

    python docs/families/allshowers/heldout_loss.py MODEL [MODEL ...]   (THREADS=2 for two threads)
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.allshowers.data import ShowerData
from hitgen.families.allshowers.loss import flow_matching_loss
from hitgen.models.io import load_model

DATA = "/work/runs/allshowers/data"
FILES = ("eval_gamma_seed6001", "eval_e-_seed6002", "eval_e+_seed6003", "eval_mu-_seed6004", "eval_mu+_seed6005")
SHOWERS, BATCH, DRAWS = 200, 50, 4


def main() -> None:
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    for path in sys.argv[1:]:
        model = load_model(path).model.eval()
        per = {}
        for name in FILES:
            data = ShowerData.from_events(EventSet.read(f"{DATA}/{name}.h5").select(np.arange(SHOWERS)), model.cfg.stats)
            draws = []
            for seed in range(DRAWS):
                torch.manual_seed(seed)
                total = 0.0
                for lo in range(0, SHOWERS, BATCH):
                    with torch.no_grad():
                        _, parts = flow_matching_loss(model, data.batch(np.arange(lo, lo + BATCH)), count_weight=0.0)
                    total += parts["points"] * BATCH
                draws.append(total / SHOWERS)
            per[name.split("_")[1]] = (np.mean(draws), np.std(draws))
        mean = np.mean([m for m, _ in per.values()])
        print(path, f"mean {mean:.4f}", " ".join(f"{k} {m:.4f}+-{s:.4f}" for k, (m, s) in per.items()), flush=True)


if __name__ == "__main__":
    main()
