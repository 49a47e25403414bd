"""Generation in K processes on one machine (one per group of cores), the CPU counterpart of one
process per GPU: Geant4 runs one worker per core, and much of generation (helix propagation,
sampling glue) is single-threaded Python and numpy, which more torch threads do not speed up.

Each process loads the model once (outside the timing), takes a contiguous share of the conditions
with its own torch threads, generates it with the events' global indices (so the union is exactly
what one process draws: per-event random streams) and writes its part file; the timing runs from
handing out the shares to the merged, finished event file.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.core.machine import peak_memory_bytes
from hitgen.families import SamplingOptions
from hitgen.generation.job import generate_share
from hitgen.nn.precision import autocast


def _worker(model_ref: str, device: str, dtype: str, threads: int, tasks, results) -> None:
    torch.set_num_threads(threads)
    from hitgen.models.io import load_model

    loaded = load_model(model_ref, device)
    spec = loaded.config["detector_spec"]
    results.put(("ready", os.getpid()))
    while (task := tasks.get()) is not None:
        conditions, first, opts, path = task
        with autocast(device, dtype):
            offsets, hits = generate_share(loaded, conditions, opts, device, first)
        EventSet(spec["name"], spec, conditions, offsets, hits, loaded.producer, seed=opts.seed).write(path, overwrite=True)
        results.put(("done", path, peak_memory_bytes()))


class GenerationPool:
    """K processes with cores // K torch threads each, the model loaded in every one."""

    def __init__(self, model_ref: str, processes: int, device: str = "cpu", dtype: str = "fp32") -> None:
        ctx = mp.get_context("spawn")
        self.processes = processes
        threads = max(1, (os.cpu_count() or 1) // processes)
        self.tasks = [ctx.Queue() for _ in range(processes)]
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=_worker, args=(model_ref, device, dtype, threads, q, self.results), daemon=True) for q in self.tasks]
        for p in self.procs:
            p.start()
        for _ in self.procs:
            self.results.get(timeout=300)
        self.peak_rss_bytes: int | None = None

    def run(self, conditions: dict[str, np.ndarray], opts: SamplingOptions, folder: Path) -> tuple[float, EventSet]:
        """Seconds from handing out the shares to the merged file folder/bench.h5, and its events."""
        n = len(next(iter(conditions.values())))
        bounds = [n * r // self.processes for r in range(self.processes + 1)]
        parts = [folder / f"part{r}.h5" for r in range(self.processes)]
        t0 = time.perf_counter()
        for r, q in enumerate(self.tasks):
            q.put(({k: v[bounds[r] : bounds[r + 1]] for k, v in conditions.items()}, bounds[r], opts, parts[r]))
        peaks = [self.results.get(timeout=3600)[2] for _ in self.procs]
        events = EventSet.concatenate([EventSet.read(p) for p in parts])
        events.write(folder / "bench.h5", overwrite=True)
        seconds = time.perf_counter() - t0
        self.peak_rss_bytes = None if None in peaks else int(sum(peaks))
        return seconds, events

    def close(self) -> None:
        for q in self.tasks:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
