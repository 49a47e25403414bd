"""Where an AllShowers model's muons lose cells: Geant4's cells per layer, the points per layer the
first stage draws for the same conditions (generation seed 1, the model's count solver or heun-32),
and (given a generated file of the same conditions) the cells the showers keep; with the share of
layers holding 0, 1, 2 and 3 or more.

    python docs/families/allshowers/muon_cells.py MODEL EVAL.h5 [GENERATED.h5]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.allshowers import sampler
from hitgen.families.allshowers.data import condition_vector, layer_numbers
from hitgen.models.io import load_model
from hitgen.nn import streams


def cells_per_layer(events: EventSet) -> np.ndarray:
    """(N, 30) the number of cells of every layer of every event."""
    return layer_numbers(events.offsets, events.hits["layer"], events.hits["energy"])[0]


def first_stage_points(model, conditions: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 30) the points per layer the model's first stage draws (as the sampler rounds them)."""
    cfg, n = model.cfg, len(conditions["energy"])
    cond = torch.from_numpy(condition_vector(conditions, cfg.stats))
    keys = torch.as_tensor(streams.event_keys(1, np.arange(n)))
    with torch.no_grad():
        counts = sampler.first_stage(model, cfg, cond, keys, *sampler.parse_decoder(cfg.count_solver or "heun-32"))[1]
    return counts.numpy().astype(np.float64)


def main() -> None:
    torch.set_num_threads(1)
    model = load_model(sys.argv[1]).model.eval()
    ref = EventSet.read(sys.argv[2])
    rows = [("Geant4 cells", cells_per_layer(ref)), ("first-stage points", first_stage_points(model, ref.conditions))]
    if len(sys.argv) > 3:
        rows.append(("generated cells", cells_per_layer(EventSet.read(sys.argv[3]))))
    for name, a in rows:
        shares = [float(np.mean(a == j)) for j in (0, 1, 2)] + [float(np.mean(a >= 3))]
        print(f"{name:20s} per layer {a.mean():.4f}; every third layer {np.round(a.mean(0)[::3], 3)}; "
              f"layers with 0 / 1 / 2 / 3+: {' / '.join(f'{x:.4f}' for x in shares)}")


if __name__ == "__main__":
    main()
