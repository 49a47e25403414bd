"""`hitgen generate`: a model + conditions (from a file, or sampled) -> an event file.

Under torchrun (`torchrun --nproc_per_node=K -m hitgen generate ...`) each of the K processes
generates a contiguous share of the conditions on its own device (cuda:LOCAL_RANK, or the CPU),
writes it beside the output under a hidden partial name, and the first process joins the shares into
the one output file (written atomically, shares removed). Events keep their index in the whole
file, so their random streams and the merged file equal a single-process run's."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hitgen.core.distributed import Distributed
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.core.machine import machine_description, timing_note
from hitgen.detectors import get_detector
from hitgen.families import Family, SamplingOptions
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

    @property
    def events_per_s(self) -> float:
        return self.n_events / max(self.seconds, 1e-9)


def generate_share(loaded: LoadedModel, conditions: dict[str, np.ndarray], opts: SamplingOptions, device: str, first_event: int = 0, progress=None):
    """CSR offsets and hits for conditions whose first event has global index first_event, by the
    model family's own generator."""
    return loaded.family.generate(loaded.model, conditions, opts, device, progress, first_event)


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
    if opts.seed < 0:
        raise HitgenError(f"--seed must be >= 0 (got {opts.seed})")


def conditions_for(detector_name: str, conditions: Path | None, options: dict, n_events: int | None, seed: int) -> dict[str, np.ndarray]:
    """The conditions to generate for: those of an event file of the model's detector, or sampled
    by the detector from its generation options (e.g. --momentum-range) for --events N."""
    detector = get_detector(detector_name)
    if conditions is not None:
        if options:
            raise HitgenError(f"--conditions takes the conditions of a file: {next(iter(options))} does not apply with it")
        events = EventSet.read(conditions)
        if events.detector != detector_name:
            raise HitgenError(f"{conditions}: conditions of detector {events.detector}, but the model simulates {detector_name}")
        return dict(events.conditions)
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
    return detector.sample_conditions(n_events, np.random.default_rng([seed, 0]), **options)


def _outside_training_range(loaded: LoadedModel, cond: dict[str, np.ndarray]) -> tuple[int, tuple[float, float] | None]:
    """How many events have |p| outside the range the model was trained on (where both are known)."""
    trained = loaded.config.get("data", {}).get("momentum_range_gev")
    if "momentum" not in cond or not trained:
        return 0, None
    p = np.linalg.norm(cond["momentum"].astype(np.float64), axis=1)
    lo, hi = trained
    return int(((p < lo) | (p > hi)).sum()), (lo, hi)


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
) -> GenerationSummary:
    """Generate events for the conditions of a file, or sampled from the detector's generation
    `options` (for n_events), and write them to `out`."""
    device = check_device(device)
    dtype = check_dtype(device, dtype)
    opts = opts or SamplingOptions()
    check_options(opts)
    out = Path(out)
    if out.exists() and not overwrite:
        raise HitgenError(f"{out}: already exists (use --overwrite to replace it)")
    loaded = load_model(model_ref, device)
    used = options_used(loaded.family, opts)
    cond = conditions_for(loaded.detector, conditions, options or {}, n_events, opts.seed)
    notes: dict = {"sampling": used | {"dtype": dtype}}
    outside, trained = _outside_training_range(loaded, cond)
    if outside:
        notes |= {"momentum_outside_training_range": outside, "training_momentum_range_gev": list(trained)}
        if warn:
            n = len(next(iter(cond.values())))
            warn(f"{outside} of {n} events have |p| outside the training range {trained[0]:.2f}-{trained[1]:.2f} GeV; flagged in the file's notes")
    ddp = Distributed.from_env(torch.device(device))
    device = str(ddp.local_device(torch.device(device)))
    n = len(next(iter(cond.values())))
    lo, hi = n * ddp.rank // ddp.world, n * (ddp.rank + 1) // ddp.world  # this process's share
    t0 = time.perf_counter()
    with autocast(device, dtype):
        offsets, hits = generate_share(loaded, {k: v[lo:hi] for k, v in cond.items()}, opts, device, lo, progress)
    if ddp.world > 1:
        offsets, hits = _join_shares(loaded, out, {k: v[lo:hi] for k, v in cond.items()}, offsets, hits, opts, ddp)
    seconds = time.perf_counter() - t0
    gpu = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None
    timing = timing_note(n, seconds, device=str(device), threads=torch.get_num_threads(), processes=ddp.world)
    notes["timing"] = timing | {"machine": machine_description(gpu)}
    share = (hi - lo, int(offsets[-1]))  # this process's events and hits
    if ddp.main:
        spec = loaded.config["detector_spec"]
        events = EventSet(loaded.detector, spec, cond, offsets, hits, loaded.producer, seed=opts.seed, notes=notes)
        events.write(out, overwrite=overwrite)
        share = (events.n_events, events.n_hits)
    if ddp.world > 1:
        ddp.barrier()
        if ddp.main:
            for r in range(ddp.world):
                _part_path(out, r, ddp.world).unlink()
    return GenerationSummary(out, *share, seconds, outside, ddp.main)


def _join_shares(loaded: LoadedModel, out: Path, cond_share: dict, offsets, hits, opts: SamplingOptions, ddp: Distributed):
    """Under torchrun: every process writes its share; the first joins them (the others keep theirs)."""
    paths = [_part_path(out, r, ddp.world) for r in range(ddp.world)]
    spec = loaded.config["detector_spec"]
    EventSet(loaded.detector, spec, cond_share, offsets, hits, loaded.producer, seed=opts.seed).write(paths[ddp.rank], overwrite=True)
    ddp.barrier()
    if ddp.main:
        joined = EventSet.concatenate([EventSet.read(p) for p in paths])
        return joined.offsets, joined.hits
    return offsets, hits
