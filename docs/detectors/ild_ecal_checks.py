"""Physics checks of ild-ecal with real Geant4: the numbers of docs/detectors/ild-ecal.md.

    GEANT4_DATA_DIR=../shared/g4data nice -n 10 .venv/bin/python docs/detectors/ild_ecal_checks.py [--quick] > checks.json

Each configuration (absorber, field, readout board) runs in its own process (one Geant4 run
manager per process), one at a time, on one core; particles enter at the slab centre, jittered
over the central cell, at fixed energies. Prints one JSON object per configuration and energy.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time

import numpy as np


def _run(config: dict, jobs: list[tuple[str, float, int, float]], out) -> None:
    import functools

    from hitgen.detectors.ild_ecal import PARTICLES, PHYSICS, primaries, sample_conditions
    from hitgen.detectors.ild_ecal import geometry as det
    from hitgen.detectors.ild_ecal.geant4 import Recorder, make_construction
    from hitgen.simulation.session import Geant4Session, silence_stdout

    silence_stdout()
    construction = functools.partial(make_construction, **config)
    session = Geant4Session(construction, Recorder, PHYSICS)
    session.run_manager.BeamOn(0)
    results = []
    for particle, energy, n, angle in jobs:
        rng = np.random.default_rng([7, int(energy * 1000), len(particle)])
        cond = sample_conditions(n, rng, particle=particle, energy_range=(1.0, 2.0), max_angle=angle)
        cond["energy"][:] = energy  # a fixed energy; everything else as simulate samples it
        pdg, momentum, vertex = primaries(cond)
        seeds = rng.integers(1, 2**31 - 1, size=(n, 2))
        t0 = time.process_time()
        raw = session.run(pdg, momentum, seeds, vertex)
        cpu = (time.process_time() - t0) / n
        c = raw.columns
        layer, cell_x, cell_y = (c[k].astype(np.int64) for k in ("layer", "cell_x", "cell_y"))
        edep = c["edep_mev"]
        event = np.repeat(np.arange(n), np.diff(raw.offsets))
        layer_e = np.zeros((n, det.N_LAYERS))
        np.add.at(layer_e, (event, layer), edep)
        visible = layer_e.sum(axis=1) / 1000.0  # GeV
        frac = visible / energy
        # layers behind the thick absorber sample half as often: weight them by the thickness ratio
        weights = det.ABSORBER_MM / det.ABSORBER_THIN_MM
        frac_w = (layer_e * weights).sum(axis=1) / 1000.0 / energy
        depth = det.SILICON_Z_MM
        cog = (layer_e * depth).sum(axis=1) / np.maximum(layer_e.sum(axis=1), 1e-12)
        # distance of every deposit from the shower axis (a straight line from the entry point)
        d = cond["direction"].astype(np.float64)
        z = depth[layer]
        ax = cond["entry_point"][event, 0] + d[event, 0] / d[event, 2] * z
        ay = cond["entry_point"][event, 1] + d[event, 1] / d[event, 2] * z
        r = np.hypot(det.cell_centre_mm(cell_x) - ax, det.cell_centre_mm(cell_y) - ay)
        edge = (cell_x == 0) | (cell_x == det.N_CELLS - 1) | (cell_y == 0) | (cell_y == det.N_CELLS - 1)
        above = edep >= det.THRESHOLD_MEV
        hits_layer = np.zeros((n, det.N_LAYERS))
        np.add.at(hits_layer, (event[above], layer[above]), 1)
        results.append(
            {
                **config,
                "particle": particle,
                "pdg": int(PARTICLES[particle][0]),
                "energy_gev": energy,
                "max_angle_deg": angle,
                "n": n,
                "cpu_s_per_event": cpu,
                "sampling_fraction": float(frac.mean()),
                "sampling_fraction_err": float(frac.std() / np.sqrt(n)),
                "resolution": float(frac.std() / frac.mean()),
                "weighted_response": float(frac_w.mean()),
                "weighted_resolution": float(frac_w.std() / frac_w.mean()),
                "weighted_resolution_err": float(frac_w.std() / frac_w.mean() / np.sqrt(2 * (n - 1))),
                "resolution_err": float(frac.std() / frac.mean() / np.sqrt(2 * (n - 1))),
                "cog_mm": float(cog.mean()),
                "cog_mm_err": float(cog.std() / np.sqrt(n)),
                "hits_per_event": float(above.sum() / n),
                "hits_per_layer_mean": float(hits_layer.mean()),
                "layers_with_one_hit": float((hits_layer == 1).mean()),
                "layers_with_no_hit": float((hits_layer == 0).mean()),
                "fraction_beyond_mm": {str(rr): float(edep[r > rr].sum() / edep.sum()) for rr in (50, 100, 150, 200)},
                "fraction_in_edge_cells": float(edep[edge].sum() / edep.sum()),
            }
        )
    out.put(results)


def run(config: dict, jobs: list) -> list[dict]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(config, jobs, q))
    p.start()
    while True:
        try:
            res = q.get(timeout=5)
            break
        except Exception:
            if not p.is_alive():
                raise RuntimeError(f"configuration {config} failed") from None
    p.join()
    return res


def main() -> None:
    quick = "--quick" in sys.argv
    scale = 0.25 if quick else 1.0

    def n(k: int) -> int:
        return max(10, int(k * scale))

    plan: list[tuple[dict, list]] = []
    for absorber in ("W", "Ta", "Pb"):
        jobs = [("gamma", 1.0, n(400), 0.0), ("gamma", 3.0, n(300), 0.0), ("gamma", 10.0, n(150), 0.0)]
        jobs += [("gamma", 30.0, n(60), 0.0), ("gamma", 100.0, n(20), 0.0)]
        if absorber == "W":
            jobs += [("mu-", 10.0, n(100), 0.0)]
        if absorber == "Pb":
            jobs += [("gamma", 10.0, n(100), 45.0)]
        plan.append(({"absorber": absorber, "field": "on"}, jobs))
    plan.append(({"absorber": "W", "field": "on", "board_mm": 0.0}, [("gamma", 1.0, n(400), 0.0), ("gamma", 10.0, n(150), 0.0)]))
    plan.append(({"absorber": "W", "field": "off"}, [("gamma", 10.0, n(150), 0.0), ("mu-", 10.0, n(100), 0.0)]))
    for config, jobs in plan:
        for r in run(config, jobs):
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
