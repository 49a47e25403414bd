"""`hitgen simulate`: Geant4 in worker processes, digitisation and writing in the main process.

Reproducibility does not depend on the worker count: conditions are drawn up front from the seed,
each event gets its own Geant4 seed pair, and digitisation runs in fixed blocks of events, each
with its own numpy stream. Workers take small tasks from a shared queue; the main process
reorders the results, digitises and appends to the output in event order.
"""

from __future__ import annotations

import functools
import importlib
import json
import multiprocessing as mp
import os
import queue
import re
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.atomic import check_new_output
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventWriter
from hitgen.core.machine import timing_note
from hitgen.core.physics import PhysicsSettings
from hitgen.detectors import get_detector
from hitgen.distributed import units
from hitgen.simulation.g4env import data_dir
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
    units_run: int = 0
    units_reused: int = 0

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
    executor: str = "local",
    scheduler: str | None = None,
    resume: bool = False,
    unit_share: tuple[int, int] | None = None,
    **kinematics,
) -> SimulationSummary:
    """Simulate n_events with Geant4 and write a hitgen-events file; see the module docstring.
    With conditions_file, the events are those of that file's conditions (n_events None or equal
    to its count; no kinematic options): a replica of a sample, Geant4 again with another seed.
    The detector's settings (options of kind setting) among the keywords configure its geometry, and
    `physics` changes some of the physics settings (hitgen.core.physics.FIELDS); unset, both are
    those the conditions file records, else the detector's defaults.

    The run is cut into units of hitgen.distributed.units.UNIT_EVENTS events, each written as a block
    beside the output and joined at the end: executor "local" (worker processes here) or "dask" (a
    Dask cluster at `scheduler`); resume uses the blocks an interrupted run of the same command left;
    unit_share (K, N) runs only the K-th of N shares (`hitgen merge` joins them)."""
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

    out = Path(out)
    check_new_output(out, overwrite, "--out")
    key = {
        "command": "simulate",
        "detector": detector,
        "n_events": n_events,
        "seed": seed,
        "settings": settings,
        "physics": physics_settings.as_dict(),
        "conditions": units.digest_arrays(conditions),
        "unit_events": units.UNIT_EVENTS,
    }
    run = units.run_id(key)
    todo = units.plan(n_events)
    share = None
    if unit_share is not None:
        share = unit_share
        todo = units.share_of(todo, *share)
    units.check_no_stale_blocks(out, run, resume)
    done = units.finished_blocks(out, run, todo, n_events) if resume else {}
    missing = [u for u in todo if u not in done]
    job = _Job(detector, spec, settings, physics_settings, seed, n_events, conditions, primaries, g4_seeds, digitize, out, run)
    t_start = time.perf_counter()
    if progress:
        progress(sum(u.events for u in done))
    if executor == "dask":
        from hitgen.distributed.dask import run_units

        ran = run_units(scheduler, simulate_unit, [job.payload(u) for u in missing], progress, sum(u.events for u in done))
        collected = _Collected(ran.first("version", "?"), t_start + ran.startup_s, ran.busy_s, ran.workers)
    elif executor == "local":
        collected = _run_local(job, missing, workers, progress, t_start, sum(u.events for u in done))
    else:
        raise HitgenError(f"unknown --executor '{executor}' (known: local, dask)")
    n_share = sum(u.events for u in todo)
    startup = collected.t_ready - t_start
    notes = {"timing": timing_note(n_share, time.perf_counter() - t_start - startup, startup, workers=collected.workers, busy_s=collected.busy)}
    if share is not None:
        notes.update(units.share_note(run, *share, todo, n_events))
    blocks = [units.block_path(out, run, u) for u in todo]
    path, n_written, n_hits = units.join(out, blocks, overwrite, notes)
    units.remove(blocks)
    wall = time.perf_counter() - t_start
    producer = _producer(collected.version, physics_settings)
    return SimulationSummary(
        path, n_written, n_hits, wall, startup, collected.busy, collected.workers, producer, units_run=len(missing), units_reused=len(done)
    )


@dataclass
class _Job:
    """Everything that decides a run's events, and how its units are written."""

    detector: str
    spec: dict
    settings: dict
    physics: PhysicsSettings
    seed: int
    n_events: int
    conditions: dict[str, np.ndarray]
    primaries: tuple[np.ndarray, np.ndarray, np.ndarray | None]
    g4_seeds: np.ndarray
    digitize: Callable
    out: Path
    run: str

    def payload(self, unit: units.Unit) -> dict[str, Any]:
        """What a remote worker needs to simulate one unit and write its block."""
        sl = slice(unit.start, unit.stop)
        pdg, momentum, vertex = self.primaries
        return {
            "detector": self.detector,
            "spec": self.spec,
            "settings": self.settings,
            "physics": self.physics,
            "seed": self.seed,
            "n_events": self.n_events,
            "unit": unit,
            "conditions": {k: v[sl] for k, v in self.conditions.items()},
            "primaries": (pdg[sl], momentum[sl], None if vertex is None else vertex[sl]),
            "g4_seeds": self.g4_seeds[sl],
            "out": str(self.out.resolve()),  # the workers' current folder is not ours
            "run": self.run,
        }

    def write_block(self, unit: units.Unit, raw: RawEvents, version: str) -> None:
        """Digitise a unit (its own numpy stream per digitisation block) and write its block."""
        write_unit_block(
            self.detector,
            self.spec,
            self.physics,
            self.seed,
            self.n_events,
            unit,
            raw,
            version,
            self.out,
            self.run,
            self.digitize,
            {k: v[unit.start : unit.stop] for k, v in self.conditions.items()},
        )


def write_unit_block(detector, spec, physics, seed, n_events, unit, raw, version, out, run, digitize, conditions) -> Path:
    path = units.block_path(Path(out), run, unit)
    with EventWriter(path, spec, _producer(version, physics), seed, True, units.unit_note(run, unit, n_events), physics.as_dict()) as writer:
        for lo in range(0, unit.events, DIGI_BLOCK):
            hi = min(lo + DIGI_BLOCK, unit.events)
            sub = RawEvents(raw.offsets[lo : hi + 1] - raw.offsets[lo], {k: v[raw.offsets[lo] : raw.offsets[hi]] for k, v in raw.columns.items()})
            cond = {k: v[lo:hi] for k, v in conditions.items()}
            rng = np.random.default_rng([seed, _STREAM_DIGI, (unit.start + lo) // DIGI_BLOCK])
            offsets, hits, truth = digitize(cond, sub, rng)
            writer.append(cond, offsets, hits, truth)
    return path


_SESSIONS: dict = {}
_SESSION_LOCK = threading.Lock()


def simulate_unit(payload: dict[str, Any]) -> dict[str, Any]:
    """One unit on a remote worker (hitgen.distributed.dask): Geant4 in this process (one run manager
    per process, kept for the next unit of the same run; units of one process run one at a time),
    digitised and written as its block beside the output. Returns its timing."""
    with _SESSION_LOCK:
        t0 = time.perf_counter()
        data_dir()  # a worker without the Geant4 data says so
        key = (payload["detector"], json.dumps(payload["settings"], sort_keys=True), payload["physics"])
        if key not in _SESSIONS:
            from hitgen.simulation.session import Geant4Session, silence_stdout

            if not _SESSIONS:
                silence_stdout()
            setup = get_detector(payload["detector"]).geant4()
            construction = functools.partial(_load(setup.construction), **payload["settings"])
            session = Geant4Session(construction, _load(setup.recorder), payload["physics"], setup.decays, setup.primary_only)
            session.run_manager.BeamOn(0)
            _SESSIONS.clear()  # Geant4 allows one run manager per process: a new run replaces the last
            _SESSIONS[key] = session
        session = _SESSIONS[key]
        startup = time.perf_counter() - t0
        pdg, momentum, vertex = payload["primaries"]
        t1 = time.perf_counter()
        raw = session.run(pdg, momentum, payload["g4_seeds"], vertex)
        busy = time.perf_counter() - t1
        version = session.g4.G4RunManager.GetRunManager().GetVersionString().strip()
        setup = get_detector(payload["detector"]).geant4()
        write_unit_block(
            payload["detector"],
            payload["spec"],
            payload["physics"],
            payload["seed"],
            payload["n_events"],
            payload["unit"],
            raw,
            version,
            payload["out"],
            payload["run"],
            setup.digitize,
            payload["conditions"],
        )
        return {
            "events": payload["unit"].events,
            "busy_s": busy,
            "startup_s": startup,
            "version": version,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }


def _run_local(job: _Job, missing: list[units.Unit], workers: int, progress, t_start: float, already: int) -> _Collected:
    """The units on this machine: `workers` processes, each with its own Geant4, take tasks of
    TASK_EVENTS events from a queue; this process digitises and writes each unit's block once all
    its events are in."""
    if not missing:
        return _Collected("?", t_start, 0.0, 0)
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    n_missing = sum(u.events for u in missing)
    workers = min(workers, -(-n_missing // TASK_EVENTS))
    worker_args = (job.detector, job.physics, job.settings, tasks, results, os.getpid())
    procs = [ctx.Process(target=_worker, args=worker_args, daemon=True) for _ in range(workers)]
    started: list = []
    try:
        for p in procs:
            p.start()
            started.append(p)
        _send_tasks(tasks, job.primaries, job.g4_seeds, missing, len(procs))
        return _collect_and_write(results, procs, job, missing, progress, t_start, already)
    finally:
        tasks.cancel_join_thread()  # tasks never sent must not block our exit
        results.cancel_join_thread()
        for p in started:
            if p.is_alive():
                p.terminate()
        for p in started:
            p.join(timeout=5)


def _primaries(conditions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The primaries of conditions that hold them as they are: pdg, momentum (GeV) and vertex (mm)."""
    return conditions["pdg"], conditions["momentum"], conditions.get("vertex")


def _send_tasks(tasks, primaries, g4_seeds: np.ndarray, missing: list[units.Unit], n_workers: int) -> None:
    """Every event range of TASK_EVENTS events of the missing units as one task, then one stop sentinel per worker."""
    pdg, momentum, vertex = primaries
    for unit in missing:
        for start in range(unit.start, unit.stop, TASK_EVENTS):
            stop = min(start + TASK_EVENTS, unit.stop)
            part = vertex[start:stop] if vertex is not None else None
            tasks.put((start, pdg[start:stop], momentum[start:stop], part, g4_seeds[start:stop]))
    for _ in range(n_workers):
        tasks.put(None)


@dataclass
class _Collected:
    version: str  # Geant4's version string, as the workers report it
    t_ready: float  # when the last worker had built its physics tables
    busy: float  # summed Geant4 time of all workers
    workers: int


def _collect_and_write(results, procs, job: _Job, missing: list[units.Unit], progress, t_start: float, already: int) -> _Collected:
    """Take the workers' results as they come, and write every unit whose events are all in as its block."""
    pending: dict[int, RawEvents] = {}
    ready, done, busy, version = 0, already, 0.0, "?"
    t_ready = t_start
    left = list(missing)
    while left:
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
        for unit in [u for u in left if all(s in pending for s in range(u.start, u.stop, TASK_EVENTS))]:
            job.write_block(unit, RawEvents.concat([pending.pop(s) for s in range(unit.start, unit.stop, TASK_EVENTS)]), version)
            left.remove(unit)
    return _Collected(version, t_ready, busy, len(procs))


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
