"""The multiple-scattering settings on clas12-ecal: would its samples change beyond the noise floor?

    GEANT4_DATA_DIR=../shared/g4data .venv/bin/python docs/detectors/physics_settings_clas12.py OUT_DIR [EVENTS]

Per photon energy (1, 3, 9 GeV, clas12-ecal's own direction sampling), one sample with option1's own
settings (Minimal, 0.2; seed 1), then Geant4 again at the same conditions with each setting (another
seed each): option1 again (the noise floor), UseSafety 0.04 and UseDistanceToBoundary 0.04. Prints
one Markdown table (visible fraction, ADC response, ADC resolution, hits per event, CPU ms per event)
and writes results.json into OUT_DIR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.simulation.runner import simulate

SETTINGS = {
    "option1 (replica: the floor)": {"msc_step_limit": "Minimal", "msc_range_factor": 0.2},
    "UseSafety, 0.04": {"msc_step_limit": "UseSafety", "msc_range_factor": 0.04},
    "UseDistanceToBoundary, 0.04": {"msc_step_limit": "UseDistanceToBoundary", "msc_range_factor": 0.04},
}


def numbers(events: EventSet) -> dict[str, float]:
    p = np.linalg.norm(events.conditions["momentum"].astype(np.float64), axis=1)
    visible = events.truth["visible_energy_layer"].astype(np.float64).sum(axis=1) / p
    adc = np.bincount(events.event_index(), events.hits["adc"].astype(np.float64), minlength=events.n_events) / p
    hits = events.hits_per_event().astype(np.float64)
    n = events.n_events
    return {
        "visible_fraction": float(visible.mean()),
        "visible_fraction_err": float(visible.std() / np.sqrt(n)),
        "adc_per_gev": float(adc.mean()),
        "adc_per_gev_err": float(adc.std() / np.sqrt(n)),
        "adc_resolution": float(adc.std() / adc.mean()),
        "adc_resolution_err": float(adc.std() / adc.mean() / np.sqrt(2 * (n - 1))),
        "hits": float(hits.mean()),
        "hits_err": float(hits.std() / np.sqrt(n)),
    }


def main(out: Path, events: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for energy in (1.0, 3.0, 9.0):
        base = out / f"option1_{energy:g}.h5"
        s = simulate("clas12-ecal", events, base, seed=1, momentum_range=(energy * 0.999, energy * 1.001), overwrite=True)
        row = {"option1": {**numbers(EventSet.read(base)), "cpu_ms": 1000 * s.busy_s / events}}
        for k, (name, change) in enumerate(SETTINGS.items()):
            path = out / f"setting{k}_{energy:g}.h5"
            s = simulate("clas12-ecal", None, path, seed=2 + k, conditions_file=base, physics=change, overwrite=True)
            row[name] = {**numbers(EventSet.read(path)), "cpu_ms": 1000 * s.busy_s / events}
        results[f"{energy:g}"] = row
        print(json.dumps({f"{energy:g}": row}), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n| E (GeV) | setting | visible / E | ADC / GeV | ADC sigma / mean | hits / event | CPU ms / event |")
    print("|---|---|---|---|---|---|---|")
    for energy, row in results.items():
        for name, r in row.items():
            print(
                f"| {energy} | {name} | {r['visible_fraction']:.4f} +- {r['visible_fraction_err']:.4f} | {r['adc_per_gev']:.0f} +- {r['adc_per_gev_err']:.0f} "
                f"| {r['adc_resolution']:.4f} +- {r['adc_resolution_err']:.4f} | {r['hits']:.2f} +- {r['hits_err']:.2f} | {r['cpu_ms']:.1f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
