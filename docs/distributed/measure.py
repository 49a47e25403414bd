"""Geant4 events/s of ild-ecal with 1 local worker, 2 local workers and a Dask cluster of 2 workers
(distributed.LocalCluster, one thread each) on this machine, one after another in one run, and the
same file from each. Usage: GEANT4_DATA_DIR=... python docs/distributed/measure.py OUT_DIR [EVENTS]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from hitgen.core.events import EventSet
from hitgen.core.machine import machine_description
from hitgen.simulation.runner import simulate

KW = dict(particle="gamma", energy_range=(1.0, 5.0), seed=11)


def main(out: Path, n: int) -> None:
    from distributed import LocalCluster

    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, kw in (("local, 1 worker", {"workers": 1}), ("local, 2 workers", {"workers": 2})):
        t0 = time.perf_counter()
        s = simulate("ild-ecal", n, out / f"local{kw['workers']}.h5", overwrite=True, **kw, **KW)
        rows[name] = {
            "wall_s": time.perf_counter() - t0,
            "startup_s": s.startup_s,
            "busy_s": s.busy_s,
            "events_per_s": n / (time.perf_counter() - t0),
            "path": str(s.path),
        }
        print(name, rows[name], flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        t0 = time.perf_counter()
        s = simulate("ild-ecal", n, out / "dask.h5", overwrite=True, executor="dask", scheduler=cluster.scheduler_address, **KW)
        wall = time.perf_counter() - t0
        rows["Dask, 2 workers"] = {"wall_s": wall, "startup_s": s.startup_s, "busy_s": s.busy_s, "events_per_s": n / wall, "path": str(s.path)}
        print("dask", rows["Dask, 2 workers"], flush=True)
    ref = EventSet.read(rows["local, 2 workers"]["path"])
    for name, r in rows.items():
        e = EventSet.read(r["path"])
        r["same_file"] = bool(all(np.array_equal(ref.hits[k], e.hits[k]) for k in ref.hits) and np.array_equal(ref.offsets, e.offsets))
    result = {"events": n, "units": -(-n // 1000), "kinematics": {k: str(v) for k, v in KW.items()}, "machine": machine_description(), "rows": rows}
    (out / "measure.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 4000)
