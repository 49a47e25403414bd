"""The table of docs/families/calo-moe.md from evaluation folders of evaluate.sh (and the electrons'):
per model and absorber, the response and resolution per energy bin (largest |ratio - 1|; the
resolution as std / mean and as RMS90, where the evaluation has it), the paired
classifier AUCs, the longitudinal and radial profiles (largest |ratio - 1| where Geant4 holds at
least 1% of the energy; no correction of any kind), the hits per shower W1, each beside its noise floor (the replica).

    python docs/families/calo-moe/summary.py LABEL=EVAL_DIR/eval_gamma_W ... [--json out.json]

Each evaluation folder's metrics.json names its reference, candidate and replica files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, layout_of

RADIAL_EDGES_MM = np.arange(0.0, 105.0, 5.0)


def profiles(events: EventSet) -> tuple[np.ndarray, np.ndarray]:
    g = layout_of(events.detector_spec)
    h = events.hits
    ev = events.event_index()
    entry = events.conditions["entry_point"].astype(np.float64)
    r = np.hypot(g.cell_centre_mm(h["cell_x"]) - entry[ev, 0], g.cell_centre_mm(h["cell_y"]) - entry[ev, 1])
    e = h["energy"].astype(np.float64)
    return np.bincount(h["layer"], weights=e, minlength=N_LAYERS) / events.n_events, np.histogram(r, RADIAL_EDGES_MM, weights=e)[0] / events.n_events


def max_dev(ref: np.ndarray, cand: np.ndarray, share: float = 0.01) -> float:
    keep = ref >= share * ref.sum()
    return float(np.max(np.abs(cand[keep] / ref[keep] - 1.0)))


def row(folder: Path) -> dict:
    m = json.loads((folder / "metrics.json").read_text())
    fl = m["noise_floor"]
    ref, cand, rep = (EventSet.read(m[k]["path"]) for k in ("reference", "candidate", "replica"))
    (lr, rr), (lc, rc), (lp, rp) = profiles(ref), profiles(cand), profiles(rep)
    return {
        "response_max_dev": m["response_max_dev"],
        "response_max_dev_floor": fl["response_max_dev"],
        "resolution_max_dev": m["resolution_max_dev"],
        "resolution_max_dev_floor": fl["resolution_max_dev"],
        "rms90_max_dev": m.get("rms90_max_dev", float("nan")),  # evaluations from 2026-12-07 on
        "rms90_max_dev_floor": fl.get("rms90_max_dev", float("nan")),
        "auc": m["classifier_auc"],
        "auc_floor": fl["classifier_auc"],
        "auc_low_level": m["classifier_auc_low_level"],
        "auc_low_level_floor": fl["classifier_auc_low_level"],
        "longitudinal_max_dev": max_dev(lr, lc),
        "longitudinal_max_dev_floor": max_dev(lr, lp),
        "radial_max_dev": max_dev(rr, rc),
        "radial_max_dev_floor": max_dev(rr, rp),
        "hits_w1": m["hits_per_event_w1"],
        "hits_w1_floor": fl["hits_per_event_w1"],
        "visible_energy_ratio": float(cand.hits["energy"].sum() / cand.n_events / (ref.hits["energy"].sum() / ref.n_events)),
    }


HEADER = (
    "| model, showers | response, largest \\|ratio-1\\| (floor) | resolution, largest \\|ratio-1\\| (floor) | RMS90 (floor) "
    "| AUC high / low level (floor) | longitudinal, radial largest \\|ratio-1\\| (floor) | hits per shower W1 (floor) | visible energy ratio |"
)


def line(label: str, r: dict) -> str:
    cells = [
        label,
        f"{r['response_max_dev']:.3f} ({r['response_max_dev_floor']:.3f})",
        f"{r['resolution_max_dev']:.2f} ({r['resolution_max_dev_floor']:.2f})",
        f"{r['rms90_max_dev']:.2f} ({r['rms90_max_dev_floor']:.2f})",
        f"{r['auc']:.3f} / {r['auc_low_level']:.3f} ({r['auc_floor']:.2f} / {r['auc_low_level_floor']:.2f})",
        f"{r['longitudinal_max_dev']:.2f}, {r['radial_max_dev']:.2f} ({r['longitudinal_max_dev_floor']:.2f}, {r['radial_max_dev_floor']:.2f})",
        f"{r['hits_w1']:.1f} ({r['hits_w1_floor']:.1f})",
        f"{r['visible_energy_ratio']:.3f}",
    ]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if "=" in a]
    out = {}
    print(HEADER)
    print("|---|---|---|---|---|---|---|---|")
    for arg in args:
        label, _, folder = arg.partition("=")
        out[label] = row(Path(folder))
        print(line(label, out[label]))
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(out, indent=2))
