"""Would muons be better scaled to the first stage's layer energies, as e/gamma are? The model's muons
(mu- of seed 6004, mu+ of 6005) generated twice, unscaled (the CNF's own energies) and scaled (the
model's `scale_muons` off and on, in two copies of its config.json under OUT beside links to its
weights), each evaluated against Geant4 with its replica (7004, 7005); prints the muon metrics and
where the cells' energies sit (percentiles of log10(E/MeV)).

    python docs/families/allshowers/muon_scaling.py MODEL DECODER OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.evaluation import evaluate
from hitgen.families import SamplingOptions
from hitgen.generation.job import generate_file
from hitgen.models.io import resolve

DATA = Path("/work/runs/allshowers/data")
KEYS = ("cell_log10_energy_w1", "response_max_dev", "hits_per_event_w1", "classifier_auc")


def with_scale_muons(model: Path, scale: bool, folder: Path) -> Path:
    """A model folder of the same weights (a link) whose config has scale_muons = scale."""
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((model / "config.json").read_text())
    config["model"]["scale_muons"] = scale
    (folder / "config.json").write_text(json.dumps(config))
    weights = folder / "model.safetensors"
    weights.unlink(missing_ok=True)
    weights.symlink_to((model / "model.safetensors").resolve())
    return folder


def main() -> None:
    model, decoder, out = resolve(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    folders = {mode: with_scale_muons(model, scale, out / f"model_{mode}") for mode, scale in (("unscaled", False), ("scaled", True))}
    for particle, seed in (("mu-", 6004), ("mu+", 6005)):
        ref, rep = DATA / f"eval_{particle}_seed{seed}.h5", DATA / f"replica_{particle}_seed{seed + 1000}.h5"
        g4 = EventSet.read(ref)
        g4_per_layer = np.bincount(g4.hits["layer"], minlength=30) / g4.n_events
        for mode, folder in folders.items():
            opts = SamplingOptions(seed=1, batch_size=256, decoder=decoder)
            gen = generate_file(str(folder), out / f"{mode}_{particle}.h5", conditions=ref, opts=opts, overwrite=True)
            m = evaluate(ref, gen.path, out / f"eval_{mode}_{particle}", plots=False, replica=rep, overwrite=True).metrics
            events = EventSet.read(gen.path)
            cells = np.log10(events.hits["energy"])
            per_layer = np.bincount(events.hits["layer"], minlength=30) / events.n_events - g4_per_layer
            print(particle, mode, {k: round(m[k], 4) for k in KEYS}, "floor", {k: round(m["noise_floor"][k], 4) for k in KEYS})
            print("   cells per layer minus Geant4's, largest:", round(float(np.abs(per_layer).max()), 3), "mean:", round(float(per_layer.mean()), 3))
            print("   log10 E percentiles 1, 50, 99:", np.round(np.percentile(cells, [1, 50, 99]), 3))
        print(particle, "Geant4 log10 E percentiles 1, 50, 99:", np.round(np.percentile(np.log10(g4.hits["energy"]), [1, 50, 99]), 3))


if __name__ == "__main__":
    main()
