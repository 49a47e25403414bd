"""Which stage makes the resolution too wide? On Geant4 evaluation showers (default: the photons of
seed 6001), per 1 GeV bin, the visible energy over the incident energy (mean, and spread / mean) of
Geant4; of a model's point CNF (Heun-8, the points not scaled) moving noise given each shower's TRUE
first-stage numbers (its counts and energies per layer); and of the model's full generation (GEN, the
file docs/families/allshowers/evaluate.sh made from the same conditions). Also the cells per shower.

    python docs/families/allshowers/first_stage_share.py MODEL GEN.h5 [EVAL.h5]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.allshowers.data import ShowerData
from hitgen.families.allshowers.sampler import _to_cells, move_points, point_noise
from hitgen.models.io import load_model
from hitgen.nn import streams


def visible(offsets: np.ndarray, energy: np.ndarray) -> np.ndarray:
    out = np.zeros(len(offsets) - 1)
    np.add.at(out, np.repeat(np.arange(len(out)), np.diff(offsets)), energy.astype(np.float64))
    return out


def main() -> None:
    torch.set_num_threads(2)
    model = load_model(sys.argv[1]).model.eval()
    gen = EventSet.read(sys.argv[2])
    ref = EventSet.read(sys.argv[3] if len(sys.argv) > 3 else "/work/runs/allshowers/data/eval_gamma_seed6001.h5")
    data = ShowerData.from_events(ref, model.cfg.stats)
    keys = torch.as_tensor(streams.event_keys(123, np.arange(len(data))))
    true_stage, cells = np.zeros(len(data)), np.zeros(len(data))
    order = np.argsort(data.length, kind="stable")
    with torch.no_grad():
        for lo in range(0, len(order), 32):
            idx = order[lo : lo + 32]
            b = data.batch(idx)
            x0 = point_noise(keys[idx], b["valid"])
            x1 = move_points(model, x0, b["layer"], b["valid"], b["cond"], b["stage"][:, : model.cfg.n_stage], model.cfg.band, "heun", 8)
            valid = b["valid"]
            event = torch.arange(len(idx))[:, None].expand_as(valid)[valid]
            counts, hits = _to_cells(x1[valid], event, b["layer"][valid], len(idx), None, None, model.cfg.stats, False)
            true_stage[idx] = visible(np.concatenate([[0], np.cumsum(counts)]), hits["energy"])
            cells[idx] = counts
    e_ref, e_gen = ref.conditions["energy"], gen.conditions["energy"]
    v_ref, v_gen = visible(ref.offsets, ref.hits["energy"]), visible(gen.offsets, gen.hits["energy"])
    print("GeV  | Geant4 mean, spread | CNF given the true first stage | full generation | cells: Geant4 / true stage / generated")
    for lo in range(1, 10):
        s, g = (e_ref >= lo) & (e_ref < lo + 1), (e_gen >= lo) & (e_gen < lo + 1)

        def stats(v, e, sel):
            r = v[sel] / e[sel]
            return f"{r.mean():6.2f} {r.std() / r.mean():.4f}"

        print(
            f"{lo}-{lo + 1} | {stats(v_ref, e_ref, s)} | {stats(true_stage, e_ref, s)} | {stats(v_gen, e_gen, g)} | "
            f"{ref.hits_per_event()[s].mean():.0f} / {cells[s].mean():.0f} / {gen.hits_per_event()[g].mean():.0f}"
        )


if __name__ == "__main__":
    main()
