"""The first stage's muon layer energies against Geant4's, at several solvers: the model's first stage
drawn for the conditions of the first N showers of a muon training file (stream seed 1), percentiles
of log10(E / MeV) over the layers with a point, beside the file's own layer energies.

    python docs/families/allshowers/first_stage_muons.py MODEL MUON_FILE [N]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.allshowers.data import condition_vector, layer_numbers
from hitgen.families.allshowers.sampler import first_stage, parse_decoder
from hitgen.models.io import load_model
from hitgen.nn import streams

PERCENTILES = [0.1, 1, 5, 50, 95, 99]


def main(model_name: str, path: str, n: int) -> None:
    model = load_model(model_name).model.eval()
    events = EventSet.read(path).select(np.arange(n))
    counts, energies = layer_numbers(events.offsets, events.hits["layer"], events.hits["energy"].astype(np.float64))
    print("percentiles", PERCENTILES)
    print("Geant4   ", np.round(np.log10(np.percentile(energies[counts > 0], PERCENTILES)), 3))
    cond = torch.from_numpy(condition_vector(events.conditions, model.cfg.stats))
    keys = torch.as_tensor(streams.event_keys(1, np.arange(n)))
    for decoder in ("heun-16", "heun-32", "heun-64", "euler-128"):
        with torch.no_grad():
            _, drawn, layer_energy = first_stage(model, model.cfg, cond, keys, *parse_decoder(decoder))
        drawn, layer_energy = drawn.numpy(), layer_energy.numpy()
        print(f"{decoder:9s}", np.round(np.log10(np.percentile(layer_energy[drawn > 0], PERCENTILES)), 3))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2000)
