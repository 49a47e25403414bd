"""Issue 20's fidelity table from the evaluation folders of docs/families/allshowers/evaluate.sh:
per particle, the response and resolution per energy bin (largest |ratio - 1|), the paired classifier
AUCs, the longitudinal and radial profiles (largest |ratio - 1| where Geant4 holds >= 1% of the
energy), each beside its noise floor (the replica); for muons, hits per layer and energy per hit.

    python docs/families/allshowers/summary.py EVAL_DIR DATA_DIR [--json out.json] [--markdown]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import N_LAYERS, layout_of

SEEDS = {"gamma": 1, "e-": 2, "e+": 3, "mu-": 4, "mu+": 5}
RADIAL_EDGES_MM = np.arange(0.0, 105.0, 5.0)


def profiles(events: EventSet) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean energy per layer, mean energy per 5 mm ring around the axis, mean hits per layer, log10 cell energies."""
    g = layout_of(events.detector_spec)
    h = events.hits
    ev = events.event_index()
    entry = events.conditions["entry_point"].astype(np.float64)
    x = g.cell_centre_mm(h["cell_x"]) - entry[ev, 0]
    y = g.cell_centre_mm(h["cell_y"]) - entry[ev, 1]
    e = h["energy"].astype(np.float64)
    n = events.n_events
    layer = np.bincount(h["layer"], weights=e, minlength=N_LAYERS) / n
    radial = np.histogram(np.hypot(x, y), RADIAL_EDGES_MM, weights=e)[0] / n
    hits = np.bincount(h["layer"], minlength=N_LAYERS) / n
    return layer, radial, hits, np.log10(e)


def max_dev(ref: np.ndarray, cand: np.ndarray, share: float = 0.01) -> float:
    keep = ref >= share * ref.sum()
    return float(np.max(np.abs(cand[keep] / ref[keep] - 1.0)))


def summarise(eval_dir: Path, data_dir: Path) -> dict:
    from scipy.stats import wasserstein_distance

    out = {}
    for p, i in SEEDS.items():
        m = json.loads((eval_dir / f"eval_{p}" / "metrics.json").read_text())
        fl = m["noise_floor"]
        ref = EventSet.read(data_dir / f"eval_{p}_seed{6000 + i}.h5")
        rep = EventSet.read(data_dir / f"replica_{p}_seed{7000 + i}.h5")
        cand = EventSet.read(eval_dir / f"gen_{p}.h5")
        (lr, rr, hr, er), (lc, rc, hc, ec), (lp, rp, hp, ep) = profiles(ref), profiles(cand), profiles(rep)
        row = {
            "response_max_dev": m["response_max_dev"],
            "response_max_dev_floor": fl["response_max_dev"],
            "resolution_max_dev": m["resolution_max_dev"],
            "resolution_max_dev_floor": fl["resolution_max_dev"],
            "response_ratio_mean": m["response_ratio_mean"],
            "resolution_ratio_mean": m["resolution_ratio_mean"],
            "auc": m["classifier_auc"],
            "auc_floor": fl["classifier_auc"],
            "auc_low_level": m["classifier_auc_low_level"],
            "auc_low_level_floor": fl["classifier_auc_low_level"],
            "longitudinal_max_dev": max_dev(lr, lc),
            "longitudinal_max_dev_floor": max_dev(lr, lp),
            "radial_max_dev": max_dev(rr, rc),
            "radial_max_dev_floor": max_dev(rr, rp),
            "hits_per_event_w1": m["hits_per_event_w1"],
            "hits_per_event_w1_floor": fl["hits_per_event_w1"],
            "visible_energy_ratio": float(cand.hits["energy"].sum() / cand.n_events / (ref.hits["energy"].sum() / ref.n_events)),
        }
        if p.startswith("mu"):
            row |= {
                "hits_per_layer_max_abs_diff": float(np.max(np.abs(hc - hr))),
                "hits_per_layer_max_abs_diff_floor": float(np.max(np.abs(hp - hr))),
                "cell_log10_energy_w1": float(wasserstein_distance(er, ec)),
                "cell_log10_energy_w1_floor": float(wasserstein_distance(er, ep)),
            }
        out[p] = row
    return out


def markdown(result: dict) -> str:
    """The table of the docs and cards, and the muons' line."""
    lines = [
        "| particle | response, largest \\|ratio-1\\| (floor) | resolution, largest \\|ratio-1\\| (floor) | AUC high / low level (floor) "
        "| longitudinal, radial largest \\|ratio-1\\| (floor) | visible energy ratio |",
        "|---|---|---|---|---|---|",
    ]
    for p, r in result.items():
        lines.append(
            f"| {p} | {r['response_max_dev']:.3f} ({r['response_max_dev_floor']:.3f}) | {r['resolution_max_dev']:.2f} ({r['resolution_max_dev_floor']:.2f}) "
            f"| {r['auc']:.3f} / {r['auc_low_level']:.3f} ({r['auc_floor']:.2f} / {r['auc_low_level_floor']:.2f}) "
            f"| {r['longitudinal_max_dev']:.2f}, {r['radial_max_dev']:.2f} ({r['longitudinal_max_dev_floor']:.2f}, {r['radial_max_dev_floor']:.2f}) "
            f"| {r['visible_energy_ratio']:.3f} |"
        )
    mu = [p for p in result if p.startswith("mu")]
    if mu:

        def joined(key: str, digits: int) -> str:
            return " / ".join(f"{result[p][key]:.{digits}f}" for p in mu)

        lines += [
            "",
            f"muons: hits per layer, largest difference {joined('hits_per_layer_max_abs_diff', 3)} ({'/'.join(mu)}; floor "
            f"{joined('hits_per_layer_max_abs_diff_floor', 3)}); cell log10 energy W1 {joined('cell_log10_energy_w1', 4)} "
            f"(floor {joined('cell_log10_energy_w1_floor', 4)}).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    result = summarise(Path(sys.argv[1]), Path(sys.argv[2]))
    for p, row in result.items():
        print(p, "  ".join(f"{k} {v:.4g}" for k, v in row.items()))
    if "--markdown" in sys.argv:
        print(markdown(result))
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(result, indent=1))
