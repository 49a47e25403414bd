"""`hitgen simulate`: Geant4 in worker processes, digitisation and writing in the main process.

Reproducibility does not depend on the worker count: conditions are drawn up front from the seed,
each event gets its own Geant4 seed pair, and digitisation runs in fixed blocks of events, each
with its own numpy stream. Workers take small tasks from a shared queue; the main process
reorders the results, digitises and appends to the output in event order.
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing as mp
import os
import queue
import re
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventWriter
from hitgen.core.machine import timing_note
from hitgen.detectors import get_detector
from hitgen.simulation.g4env import data_dir
from hitgen.simulation.physics import PhysicsSettings
from hitgen.simulation.session import RawEvents

TASK_EVENTS = 20  # events per worker task (small: keeps workers balanced and progress smooth)
DIGI_BLOCK = 1000  # events per digitisation block (fixed, so output is independent of workers)
_STREAM_CONDITIONS, _STREAM_G4, _STREAM_DIGI = 0, 1, 2


@dataclass
class SimulationSummary:
    path: Path
    n_events: int
    n_hits: int
    wall_s: float
    startup_s: float
    busy_s: float  # summed Geant4 time of all workers (start-up excluded)
    workers: int
    producer: str

    @property
    def events_per_s(self) -> float:
        return self.n_events / max(self.wall_s - self.startup_s, 1e-9)

    @property
    def events_per_s_per_core(self) -> float:
        return self.n_events / max(self.busy_s, 1e-9)


def _load(ref: str) -> Callable:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def _worker(detector: str, physics: PhysicsSettings, settings: dict, tasks, results, parent: int) -> None:
    """Worker process: own Geant4 run manager; simulate tasks until the sentinel None. The
    detector's settings (its options of kind setting) are keywords of its construction."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    from hitgen.simulation.session import Geant4Session, silence_stdout

    try:
        silence_stdout()
        g4 = get_detector(detector).geant4()
        construction = _load(g4.construction)
        if settings:
            construction = functools.partial(construction, **settings)
        session = Geant4Session(construction, _load(g4.recorder), physics, g4.decays, g4.primary_only)
        session.run_manager.BeamOn(0)  # build physics tables now, outside the timed work
        results.put(("ready", os.getpid(), session.g4.G4RunManager.GetRunManager().GetVersionString().strip()))
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                task = ()
            if os.getppid() != parent:  # the parent died: nobody reads our results any more
                results.cancel_join_thread()
                os._exit(1)
            if task is None:
                break
            if task:
                start, pdg, momentum, vertex, seeds = task
                t0 = time.perf_counter()
                raw = session.run(pdg, momentum, seeds, vertex)
                results.put(("done", start, raw, time.perf_counter() - t0))
    except BaseException as e:  # report, never hang the parent
        msg = str(e) if getattr(e, "__module__", "").startswith("hitgen") else traceback.format_exc(limit=3)
        results.put(("error", os.getpid(), msg))
    results.close()
    results.join_thread()  # flush the queue's feeder thread before the hard exit below
    os._exit(0)  # skip Geant4's static destructors (they can crash at interpreter exit)


def simulate(
    detector: str,
    n_events: int,
    out: str | Path,
    seed: int = 1,
    workers: int | None = None,
    overwrite: bool = False,
    physics: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    conditions_file: str | Path | None = None,
    **kinematics,
) -> SimulationSummary:
    """Simulate n_events with Geant4 and write a hitgen-events file; see the module docstring.
    With conditions_file, the events are those of that file's conditions (n_events None or equal
    to its count; no kinematic options): a replica of a sample, Geant4 again with another seed.
    The detector's settings (options of kind setting) among the keywords configure its geometry, and
    `physics` changes some of the physics settings (hitgen.simulation.physics.FIELDS); unset, both are
    those the conditions file records, else the detector's defaults."""
    det = get_detector(detector)
    setup = det.geant4()
    digitize = setup.digitize
    setting_names = [o.name for o in det.options if o.setting]
    settings = {k: kinematics.pop(k) for k in list(kinematics) if k in setting_names}
    spec = det.info.spec()
    given, base_physics = None, setup.physics
    if conditions_file is not None:
        given, file_spec, file_physics = _conditions_of(conditions_file, det, kinematics)
        settings = {**{k: file_spec[k] for k in setting_names if k in file_spec}, **settings}
        if file_physics:
            base_physics = PhysicsSettings.from_record(file_physics)
        n_file = len(next(iter(given.values())))
        if n_events is not None and n_events != n_file:
            raise HitgenError(f"--events {n_events}: --conditions {conditions_file} holds {n_file} events (leave --events out)")
        n_events = n_file
    physics_settings = base_physics.with_changes(physics or {})
    if n_events is None:
        raise HitgenError("give --events N (or --conditions FILE to simulate the conditions of a file)")
    if n_events <= 0:
        raise HitgenError(f"--events must be positive (got {n_events})")
    if seed < 0:
        raise HitgenError(f"--seed must be >= 0 (got {seed})")
    workers = workers or os.cpu_count() or 1
    if workers <= 0:
        raise HitgenError(f"--workers must be positive (got {workers})")
    data_dir()  # fail before any work if Geant4 data are missing
    conditions = given if given is not None else det.sample_conditions(n_events, np.random.default_rng([seed, _STREAM_CONDITIONS]), **kinematics)
    spec.update(settings)
    if hasattr(det, "configure_spec"):  # optional: a detector whose spec follows its settings (a layout)
        spec = det.configure_spec(spec, settings)
    settings = {k: spec[k] for k in setting_names if k in spec}
    primaries = setup.primaries(conditions) if setup.primaries is not None else _primaries(conditions)
    g4_seeds = np.random.default_rng([seed, _STREAM_G4]).integers(1, 2**31 - 1, size=(n_events, 2))

    t_start = time.perf_counter()
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    workers = min(workers, -(-n_events // TASK_EVENTS))
    worker_args = (detector, physics_settings, settings, tasks, results, os.getpid())
    procs = [ctx.Process(target=_worker, args=worker_args, daemon=True) for _ in range(workers)]
    writer: EventWriter | None = EventWriter(out, spec, "", seed, overwrite, physics=physics_settings.as_dict())
    started: list = []
    try:
        for p in procs:
            p.start()
            started.append(p)
        _send_tasks(tasks, primaries, g4_seeds, len(procs))
        collected = _collect_and_write(results, procs, writer, conditions, digitize, seed, progress, t_start)
        writer.producer = producer = _producer(collected.version, physics_settings)
        startup = collected.t_ready - t_start
        timing = timing_note(n_events, time.perf_counter() - t_start - startup, startup, workers=len(procs), busy_s=collected.busy)
        writer.notes["timing"] = timing
        n_hits = writer.n_hits
        path = writer.close()
        writer = None
    finally:
        if writer is not None:
            writer.abort()
        tasks.cancel_join_thread()  # tasks never sent must not block our exit
        results.cancel_join_thread()
        for p in started:
            if p.is_alive():
                p.terminate()
        for p in started:
            p.join(timeout=5)
    wall = time.perf_counter() - t_start
    return SimulationSummary(Path(path), n_events, n_hits, wall, collected.t_ready - t_start, collected.busy, len(procs), producer)


def _primaries(conditions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The primaries of conditions that hold them as they are: pdg, momentum (GeV) and vertex (mm)."""
    return conditions["pdg"], conditions["momentum"], conditions.get("vertex")


def _send_tasks(tasks, primaries: tuple[np.ndarray, np.ndarray, np.ndarray | None], g4_seeds: np.ndarray, n_workers: int) -> None:
    """Every event range of TASK_EVENTS events as one task, then one stop sentinel per worker."""
    pdg, momentum, vertex = primaries
    n_events = len(g4_seeds)
    for start in range(0, n_events, TASK_EVENTS):
        stop = min(start + TASK_EVENTS, n_events)
        part = vertex[start:stop] if vertex is not None else None
        tasks.put((start, pdg[start:stop], momentum[start:stop], part, g4_seeds[start:stop]))
    for _ in range(n_workers):
        tasks.put(None)


@dataclass
class _Collected:
    version: str  # Geant4's version string, as the workers report it
    t_ready: float  # when the last worker had built its physics tables
    busy: float  # summed Geant4 time of all workers


def _collect_and_write(results, procs, writer: EventWriter, conditions, digitize, seed: int, progress, t_start: float) -> _Collected:
    """Take the workers' results as they come, and digitise and append every complete block of
    DIGI_BLOCK events in event order (each block with its own numpy stream)."""
    n_events = len(next(iter(conditions.values())))
    pending: dict[int, RawEvents] = {}
    ready, done, written, busy, version = 0, 0, 0, 0.0, "?"
    t_ready = t_start
    while written < n_events:
        try:
            msg = results.get(timeout=5.0)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                codes = sorted({p.exitcode for p in procs})
                raise HitgenError(f"Geant4 workers stopped early (exit codes {codes}); no output written") from None
            continue
        if msg[0] == "error":
            raise HitgenError(f"Geant4 worker failed: {msg[2].strip()}")
        if msg[0] == "ready":
            ready += 1
            version = msg[2]
            if ready == len(procs):
                t_ready = time.perf_counter()
            continue
        _, start, raw, seconds = msg
        pending[start] = raw
        busy += seconds
        done += len(raw.offsets) - 1
        if progress:
            progress(done)
        while written < n_events:
            stop = min(written + DIGI_BLOCK, n_events)
            starts = list(range(written, stop, TASK_EVENTS))
            if not all(s in pending for s in starts):
                break
            raw_block = RawEvents.concat([pending.pop(s) for s in starts])
            cond = {k: v[written:stop] for k, v in conditions.items()}
            rng = np.random.default_rng([seed, _STREAM_DIGI, written // DIGI_BLOCK])
            offsets, hits, truth = digitize(cond, raw_block, rng)
            writer.append(cond, offsets, hits, truth)
            written = stop
    return _Collected(version, t_ready, busy)


def _conditions_of(path: str | Path, detector, kinematics: dict) -> tuple[dict[str, np.ndarray], dict, dict]:
    """The conditions of an event file of this detector, checked, read block by block, its spec and
    its physics record (empty where the file has none)."""
    from hitgen.core.events import CHUNK_EVENTS, iter_blocks, physics_record, read_header
    from hitgen.detectors import check_conditions_file, value_problems

    if kinematics:
        raise HitgenError(f"--conditions takes the conditions of a file: --{next(iter(kinematics)).replace('_', '-')} does not apply with it")
    check_conditions_file(path, detector.name)
    parts = [cond for _, cond, _, _ in iter_blocks(path, CHUNK_EVENTS, hits=False)]
    conditions = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    problems = value_problems(detector, conditions, {})
    if problems:
        raise HitgenError(f"{path}: " + "; ".join(problems))
    attrs, spec, _ = read_header(path)
    return conditions, spec, physics_record(attrs, path)


def _producer(version_string: str, physics: PhysicsSettings) -> str:
    match = re.search(r"geant4-[0-9a-z-]+", version_string)
    version = match.group(0) if match else version_string
    return f"Geant4 {version} + {physics.describe()}, hitgen simulate"
