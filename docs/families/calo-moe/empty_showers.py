"""Empty generated showers: for each generated file, the showers without a hit, the probability the
total-energy module gives its empty-window token, and the voxels those showers' sequences hold before
any total module scales them (regenerated from their own streams, the total modules taken out).

    python docs/families/calo-moe/empty_showers.py MODEL MATERIAL:GEN.h5 [MATERIAL:GEN.h5 ...]

GEN: a file `hitgen generate MODEL` wrote (evaluate.sh's gen_PARTICLE_MATERIAL.h5); its seed and
conditions are read from it."""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.calo_moe import sampler
from hitgen.families.calo_moe.tokens import TOTAL_BINS, condition_vector, particle_names
from hitgen.models.io import load_model
from hitgen.nn.streams import event_keys


def main(model_ref: str, pairs: list[str]) -> None:
    model = load_model(model_ref).model.eval()
    for pair in pairs:
        material, path = pair.split(":", 1)
        gen = EventSet.read(path)
        empty = np.flatnonzero(gen.hits_per_event() == 0)
        cond = torch.from_numpy(condition_vector(gen.conditions))
        experts = sampler.experts_for(model, gen.conditions["pdg"], material)
        keys = sorted(set(experts) & set(model.totals))
        with torch.no_grad():
            p_empty = {k: float(model.totals[k].log_probs(model.standardised(cond))[:, TOTAL_BINS].exp().mean()) for k in keys}
        line = f"{path}: {len(empty)} of {gen.n_events} showers empty; the total module's empty-window probability {p_empty}"
        if len(empty):
            sub = {k: v[empty] for k, v in gen.conditions.items()}
            totals = model.totals
            model.totals = torch.nn.ModuleDict()  # the sequences alone, from the same streams
            try:
                with torch.no_grad():
                    keys_empty = torch.from_numpy(event_keys(gen.seed, empty))
                    part = sampler._batch(model, torch.from_numpy(condition_vector(sub)), [experts[i] for i in empty], keys_empty, 1.0)
            finally:
                model.totals = totals
            names = ", ".join(sorted(set(particle_names(sub["pdg"]).tolist())))
            line += f"; their voxels before the totals: {np.bincount(part['event'], minlength=len(empty)).tolist()} ({names})"
        print(line)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
