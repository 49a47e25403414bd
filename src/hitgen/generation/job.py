"""`hitgen generate`: a model + conditions (from a file, or sampled) -> an event file.

Under torchrun (`torchrun --nproc_per_node=K -m hitgen generate ...`) each of the K processes
generates a contiguous share of the conditions on its own device (cuda:LOCAL_RANK, or the CPU),
writes it beside the output under a hidden partial name, and the first process joins the shares into
the one output file (written atomically, shares removed). Events keep their index in the whole
file, so their random streams and the merged file equal a single-process run's."""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hitgen.core.atomic import check_new_output
from hitgen.core.distributed import Distributed
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventWriter, condition_quantities, iter_blocks, read_header
from hitgen.core.machine import machine_description, timing_note
from hitgen.detectors import check_conditions_file, get_detector, value_problems
from hitgen.distributed import units
from hitgen.families import Family, SamplingOptions
from hitgen.models.export import attach_backend
from hitgen.models.io import LoadedModel, load_model
from hitgen.nn.precision import autocast, check_device, check_dtype


@dataclass
class GenerationSummary:
    path: Path
    n_events: int
    n_hits: int
    seconds: float
    outside_training_range: int
    wrote_output: bool = True  # False in the processes of a torchrun job other than the first
    units_run: int = 0  # run in units (--executor dask, --resume, --units): units generated now
    units_reused: int = 0  # ... and units an interrupted run had finished

    @property
    def events_per_s(self) -> float:
        return self.n_events / max(self.seconds, 1e-9)


def generate_share(
    loaded: LoadedModel, conditions: dict[str, np.ndarray], opts: SamplingOptions, device: str, first_event: int = 0, progress=None, spec=None
):
    """CSR offsets and hits for conditions whose first event has global index first_event, by the
    model family's own generator (routed to the settings of `spec` where the family has several)."""
    use = getattr(loaded.family, "use_settings", None)
    if use is not None:
        use(loaded.model, dict(spec or loaded.config["detector_spec"]))
    return loaded.family.generate(loaded.model, conditions, opts, device, progress, first_event)


def output_spec(loaded: LoadedModel, source_spec: dict | None, settings: dict) -> dict:
    """The detector spec of the generated file. A model trained for several settings of its detector
    (a family with ``settings_of``, e.g. one expert per absorber) generates for the settings given
    (--absorber Pb), else for those of the conditions file, else for its default; settings it was not
    trained for are one clear error. Other models generate for their one spec."""
    default = loaded.config["detector_spec"]
    settings_of = getattr(loaded.family, "settings_of", None)
    if settings_of is None:
        if settings:
            raise HitgenError(f"--{next(iter(settings))} does not apply to a {loaded.family.name} model: it generates for its training spec only")
        return default
    known = settings_of(loaded.config["model"])
    names = sorted({k for s in known for k in s})
    wanted = dict(settings) or {k: source_spec[k] for k in names if source_spec and k in source_spec}
    for option in known:
        if all(wanted.get(k, option[k]) == option[k] for k in names):
            specs = loaded.config.get("detector_specs") or [default]
            for spec in specs:
                if all(spec.get(k) == option[k] for k in names):
                    return spec
            return {**default, **option}
    said = ", ".join(f"{k} {v}" for k, v in wanted.items())
    offered = " or ".join(", ".join(f"{k} {v}" for k, v in o.items()) for o in known)
    raise HitgenError(f"this model generates for {offered}, not for {said}")


def options_used(family: Family, opts: SamplingOptions) -> dict:
    """The options the family's generator uses; one set to a non-default value that it does not use
    is an error (a user asking for top-k of a track model would otherwise get none)."""
    every, default = asdict(opts), asdict(SamplingOptions())
    unused = [k for k in every if k not in family.sampling_options and every[k] != default[k]]
    if unused:
        raise HitgenError(f"--{unused[0].replace('_', '-')} does not apply to a {family.name} model")
    if "decoder" in family.sampling_options and opts.decoder not in family.decoders:
        raise HitgenError(f"--decoder {opts.decoder}: a {family.name} model decodes with {' or '.join(family.decoders)}")
    return {k: every[k] for k in family.sampling_options}


def check_options(opts: SamplingOptions) -> None:
    values = (opts.temperature, opts.top_k, opts.value_top_k, opts.batch_size)
    if not all(math.isfinite(v) for v in values) or opts.temperature <= 0 or opts.top_k < 0 or opts.value_top_k < 0 or opts.batch_size <= 0:
        raise HitgenError("--temperature and --batch-size must be positive, --top-k and --value-top-k >= 0")
    if not 0 <= opts.seed < 2**63:
        raise HitgenError(f"--seed must be between 0 and 2**63 - 1 (got {opts.seed})")


BLOCK_EVENTS = 65536  # conditions drawn, events generated and written per block: memory follows the block, not the run


@dataclass
class ConditionSource:
    """The conditions of a generation run, produced block by block: read from an event file, or
    drawn by the detector (block 0 from the stream of (seed, 0), so a run of up to BLOCK_EVENTS
    events draws what one draw of all of them would; block k > 0 from (seed, 0, k))."""

    n_events: int
    path: Path | None = None
    detector: object | None = None
    options: dict | None = None
    seed: int = 0

    def blocks(self, lo: int = 0, hi: int | None = None):
        """(first event, conditions) of the blocks covering events [lo, hi)."""
        hi = self.n_events if hi is None else hi
        if self.path is not None:
            for first, cond, _, _ in iter_blocks(self.path, BLOCK_EVENTS, hits=False):
                a, b = max(lo, first), min(hi, first + len(next(iter(cond.values()))))
                if a < b:
                    yield a, {k: v[a - first : b - first] for k, v in cond.items()}
            return
        for k in range(lo // BLOCK_EVENTS, -(-hi // BLOCK_EVENTS)):
            first = k * BLOCK_EVENTS
            size = min(BLOCK_EVENTS, self.n_events - first)
            rng = np.random.default_rng([self.seed, 0] if k == 0 else [self.seed, 0, k])
            cond = self.detector.sample_conditions(size, rng, **self.options)
            a, b = max(lo, first), min(hi, first + size)
            yield a, {key: v[a - first : b - first] for key, v in cond.items()}


def condition_source(detector_name: str, conditions: Path | None, options: dict, n_events: int | None, seed: int) -> ConditionSource:
    """Where the conditions come from: an event file of the model's detector (--conditions), or the
    detector's generation options (e.g. --momentum-range) for --events N. Conflicting options are an
    error, never ignored."""
    detector = get_detector(detector_name)
    if conditions is not None:
        if options:
            raise HitgenError(f"--conditions takes the conditions of a file: --{next(iter(options)).replace('_', '-')} does not apply with it")
        if n_events is not None:
            raise HitgenError("--conditions takes every event of the file: --events does not apply with it")
        return ConditionSource(check_conditions_file(conditions, detector_name), path=Path(conditions))
    if not detector.generation_options:
        raise HitgenError(f"a {detector_name} model generates for the conditions of an event file: give --conditions FILE")
    unknown = [k for k in options if k not in detector.generation_options]
    if unknown:
        accepted = ", ".join("--" + o.replace("_", "-") for o in detector.generation_options)
        raise HitgenError(f"--{unknown[0].replace('_', '-')} does not apply to generating {detector_name} (its options: {accepted})")
    if n_events is None or not options:
        accepted = " / ".join("--" + o.replace("_", "-") for o in detector.generation_options)
        raise HitgenError(f"give either --conditions FILE or {accepted} with --events N")
    if n_events <= 0:
        raise HitgenError(f"--events must be positive (got {n_events})")
    return ConditionSource(n_events, detector=detector, options=options, seed=seed)


def check_conditions(loaded: LoadedModel, source: ConditionSource, where: str) -> tuple[int, dict[str, list[float]] | None]:
    """Every condition finite and inside the detector's ranges (and what the family can take), in
    one pass over the blocks before anything is generated; returns the events outside the model's
    training ranges (generated, flagged) and those ranges."""
    detector = get_detector(loaded.detector)
    family_check = getattr(loaded.family, "check_conditions", lambda c: [])
    outside, trained = 0, None
    for first, cond in source.blocks():
        problems = value_problems(detector, cond, {}) + family_check(cond)
        if problems:
            raise HitgenError(f"{where}: conditions of events {first}-{first + len(next(iter(cond.values()))) - 1}: " + "; ".join(problems))
        n_out, trained = _outside_training_range(loaded, cond)
        outside += n_out
    return outside, trained


def _outside_training_range(loaded: LoadedModel, cond: dict[str, np.ndarray]) -> tuple[int, dict[str, list[float]] | None]:
    """How many events lie outside a kinematic range the model was trained on (|p|, energy, polar
    angle: where both the model's record and the conditions have it), and those ranges."""
    record = loaded.config.get("data", {})
    ranges = {key: record[key] for key in condition_quantities(cond) if record.get(key)}
    if not ranges:
        return 0, None
    quantities = condition_quantities(cond)
    outside = np.zeros(len(next(iter(quantities.values()))), bool)
    for key, (lo, hi) in ranges.items():
        tolerance = ANGLE_TOLERANCE_DEG if key.endswith("_deg") else 0.0
        outside |= (quantities[key] < lo - tolerance) | (quantities[key] > hi + tolerance)
    return int(outside.sum()), ranges


def _range_name(key: str) -> str:
    """momentum_range_gev -> momentum (GeV), polar_angle_range_deg -> polar angle (deg)."""
    name, _, unit = key.rpartition("_range_")
    return f"{name.replace('_', ' ')} ({'GeV' if unit == 'gev' else unit})"


ANGLE_TOLERANCE_DEG = 0.01  # float32 unit vectors: a normal incidence reads up to about 0.003 degrees


def _part_path(out: Path, rank: int, world: int) -> Path:
    """One process's share under torchrun: a hidden, unfinished-looking name beside the output."""
    return out.with_name(f".{out.name}.part{rank}of{world}.partial")


def generate_file(
    model_ref: str,
    out: str | Path,
    conditions: Path | None = None,
    options: dict | None = None,
    n_events: int | None = None,
    opts: SamplingOptions | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    dtype: str = "fp32",
    backend: str = "torch",
    onnx_dir: Path | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    resume: bool = False,
    unit_share: tuple[int, int] | None = None,
    settings: dict | None = None,
    unit_events: int | None = None,
) -> GenerationSummary:
    """Generate events for the conditions of a file, or sampled from the detector's generation
    `options` (for n_events), and write them to `out`, block by block (BLOCK_EVENTS): memory does
    not grow with the run. Everything that can be checked is checked before the first event.
    With executor "dask", resume or unit_share, the run is cut into units written as blocks beside
    the output (hitgen.distributed.units), run here or on a Dask cluster, and joined; unit_events
    events each (smaller units: finer resumes and shares, more overhead per event)."""
    if unit_events is not None and not (executor == "dask" or resume or unit_share is not None):
        raise HitgenError("--unit-events goes with --executor dask, --resume or --units (a run in units)")
    unit_events = units.UNIT_EVENTS if unit_events is None else unit_events
    if unit_events < 1:
        raise HitgenError(f"--unit-events {unit_events}: a unit holds at least one event")
    device = check_device(device)
    dtype = check_dtype(device, dtype)
    opts = opts or SamplingOptions()
    check_options(opts)
    out = check_new_output(out, overwrite, "--out")
    loaded = load_model(model_ref, device)
    used = options_used(loaded.family, opts)
    loaded = attach_backend(loaded, backend, onnx_dir, dtype, device, opts.decoder)
    source = condition_source(loaded.detector, conditions, options or {}, n_events, opts.seed)
    outside, trained = check_conditions(loaded, source, str(conditions) if conditions else "the sampled conditions")
    spec = output_spec(loaded, read_header(conditions)[1] if conditions is not None else None, settings or {})
    notes: dict = {"sampling": used | {"dtype": dtype, "backend": backend}}
    if outside:
        notes |= {"outside_training_range": outside, "training_ranges": trained}
        if "momentum_range_gev" in trained:
            notes |= {"momentum_outside_training_range": outside, "training_momentum_range_gev": list(trained["momentum_range_gev"])}
        if warn:
            said = ", ".join(f"{_range_name(k)} {lo:.3g}-{hi:.3g}" for k, (lo, hi) in trained.items())
            warn(f"{outside} of {source.n_events} events lie outside the training range ({said}); flagged in the file's notes")
    if executor not in ("local", "dask"):
        raise HitgenError(f"unknown --executor '{executor}' (known: local, dask)")
    if executor == "dask" or resume or unit_share is not None:
        return _generate_units(
            loaded,
            model_ref,
            source,
            out,
            opts,
            device,
            dtype,
            backend,
            onnx_dir,
            notes,
            used,
            executor,
            scheduler,
            resume,
            unit_share,
            unit_events,
            progress,
            overwrite,
            outside,
            spec,
        )
    ddp = Distributed.from_env(torch.device(device))
    device = str(ddp.local_device(torch.device(device)))
    n = source.n_events
    lo, hi = n * ddp.rank // ddp.world, n * (ddp.rank + 1) // ddp.world  # this process's share
    t0 = time.perf_counter()
    target = _part_path(out, ddp.rank, ddp.world) if ddp.world > 1 else out
    with EventWriter(target, spec, loaded.producer, opts.seed, overwrite=ddp.world > 1 or overwrite, notes=notes) as writer:
        for first, cond in source.blocks(lo, hi):
            done = first - lo
            tick = (lambda k, done=done: progress(done + k)) if progress else None
            with autocast(device, dtype):
                offsets, hits = generate_share(loaded, cond, opts, device, first, tick, spec)
            writer.append(cond, offsets, hits)
        share = (writer.n_events, writer.n_hits)
        if ddp.world == 1:
            writer.notes["timing"] = _timing(n, time.perf_counter() - t0, device, ddp)
    if ddp.world > 1:
        share = _join_shares(out, spec, loaded.producer, opts.seed, notes, ddp, n, t0, device, overwrite) or share
    seconds = time.perf_counter() - t0
    return GenerationSummary(out, *share, seconds, outside, ddp.main)


def _timing(n: int, seconds: float, device: str, ddp: Distributed) -> dict:
    gpu = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None
    timing = timing_note(n, seconds, device=str(device), threads=torch.get_num_threads(), processes=ddp.world)
    return timing | {"machine": machine_description(gpu)}


def _join_shares(out: Path, spec: dict, producer: str, seed: int, notes: dict, ddp: Distributed, n: int, t0: float, device: str, overwrite: bool):
    """Under torchrun: once every process has written its share, the first streams them, in order,
    into the one output file and removes them; returns (events, hits) of the whole file there."""
    ddp.barrier()
    share = None
    if ddp.main:
        parts = [_part_path(out, r, ddp.world) for r in range(ddp.world)]
        with EventWriter(out, spec, producer, seed, overwrite=overwrite, notes=notes) as writer:
            for part in parts:
                for _, cond, offsets, hits in iter_blocks(part, BLOCK_EVENTS):
                    writer.append(cond, offsets, hits)
            writer.notes["timing"] = _timing(n, time.perf_counter() - t0, device, ddp)
            share = (writer.n_events, writer.n_hits)
        for part in parts:
            part.unlink()
    ddp.barrier()
    return share


def _generate_units(
    loaded,
    model_ref,
    source,
    out,
    opts,
    device,
    dtype,
    backend,
    onnx_dir,
    notes,
    used,
    executor,
    scheduler,
    resume,
    unit_share,
    unit_events,
    progress,
    overwrite,
    outside,
    spec,
):
    """The run in units (hitgen.distributed.units): each unit generates its events (their random
    streams are those of their index in the whole run) and writes its block; then the blocks are joined."""
    digest = hashlib.sha256()  # of every condition, block by block: memory bounded by the block
    for _, cond in source.blocks():
        digest.update(units.digest_arrays(cond).encode())
    n = source.n_events
    key = {
        "command": "generate",
        "weights_sha256": loaded.weights_sha256,
        "n_events": n,
        "seed": opts.seed,
        "sampling": notes["sampling"],
        "conditions": digest.hexdigest(),
        "spec": spec,
        "unit_events": unit_events,
    }
    run = units.run_id(key)
    todo = units.plan(n, unit_events)
    if unit_share is not None:
        todo = units.share_of(todo, *unit_share)
    units.check_no_stale_blocks(out, run, resume)
    done = units.finished_blocks(out, run, todo, n) if resume else {}
    missing = [u for u in todo if u not in done]
    common = {
        "model": str(loaded.path.resolve()),
        "opts": opts,
        "device": device,
        "dtype": dtype,
        "backend": backend,
        "onnx_dir": None if onnx_dir is None else str(Path(onnx_dir).resolve()),
        "spec": spec,
        "producer": loaded.producer,
        "n_events": n,
        "out": str(Path(out).resolve()),
        "run": run,
    }
    # a unit reads or draws its own conditions (the source is a file path or the detector's sampling
    # options and seed): no condition arrays pass through the scheduler
    if source.path is not None:  # the workers' current folder is not ours
        source = replace(source, path=source.path.resolve())
    payloads = [{**common, "unit": u, "source": source} for u in missing]
    t0 = time.perf_counter()
    finished = sum(u.events for u in done)
    if executor == "dask":
        from hitgen.distributed.dask import run_units

        run_units(scheduler, generate_unit, payloads, progress, finished)
    else:
        _LOADED[(common["model"], device, dtype, backend, common["onnx_dir"], opts.decoder)] = loaded  # this process has it already
        for p in payloads:
            r = generate_unit(p)
            finished += r["events"]
            if progress:
                progress(finished)
    n_share = sum(u.events for u in todo)
    notes = dict(notes)
    notes["timing"] = timing_note(n_share, time.perf_counter() - t0, device=str(device), executor=executor, units_run=len(missing))
    if unit_share is not None:
        notes.update(units.share_note(run, *unit_share, todo, n))
    blocks = [units.block_path(Path(out), run, u) for u in todo]
    path, n_written, n_hits = units.join(Path(out), blocks, overwrite, notes)
    units.remove(blocks)
    return GenerationSummary(path, n_written, n_hits, time.perf_counter() - t0, outside, True, len(missing), len(done))


_LOADED: dict = {}
_LOADED_LOCK = threading.Lock()


def generate_unit(payload: dict) -> dict:
    """One unit (here or on a Dask worker): the model loaded once per process, the unit's events
    generated with the streams of their index in the run, written as its block beside the output."""
    with _LOADED_LOCK:
        t0 = time.perf_counter()
        opts = payload["opts"]
        key = (payload["model"], payload["device"], payload["dtype"], payload["backend"], payload["onnx_dir"], opts.decoder)
        if key not in _LOADED:
            loaded = load_model(payload["model"], payload["device"])
            onnx_dir = None if payload["onnx_dir"] is None else Path(payload["onnx_dir"])
            _LOADED.clear()
            _LOADED[key] = attach_backend(loaded, payload["backend"], onnx_dir, payload["dtype"], payload["device"], opts.decoder)
        loaded = _LOADED[key]
        startup = time.perf_counter() - t0
        unit = payload["unit"]
        t1 = time.perf_counter()
        path = units.block_path(Path(payload["out"]), payload["run"], unit)
        note = units.unit_note(payload["run"], unit, payload["n_events"])
        with EventWriter(path, payload["spec"], payload["producer"], opts.seed, True, note) as w:
            for first, cond in payload["source"].blocks(unit.start, unit.stop):
                with autocast(payload["device"], payload["dtype"]):
                    offsets, hits = generate_share(loaded, cond, opts, payload["device"], first, spec=payload["spec"])
                w.append(cond, offsets, hits)
        busy = time.perf_counter() - t1
        return {"events": unit.events, "busy_s": busy, "startup_s": startup, "worker": f"{socket.gethostname()}:{os.getpid()}"}
