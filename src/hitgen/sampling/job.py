"""`hitgen generate`: a model + conditions (from a file, or sampled) -> an event file.

Under torchrun (`torchrun --nproc_per_node=K -m hitgen generate ...`) each of the K processes
generates a contiguous share of the conditions on its own device (cuda:LOCAL_RANK, or the CPU),
writes it beside the output under a hidden partial name, and the first process joins the shares into
the one output file (written atomically, shares removed). Events keep their index in the whole
file, so their random streams and the merged file equal a single-process run's."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hitgen.detectors import clas12_ecal
from hitgen.distributed import Distributed
from hitgen.errors import HitgenError
from hitgen.events import EventSet
from hitgen.machine import machine_description, timing_note
from hitgen.models.io import load_model
from hitgen.sampling.generate import DECODERS, SamplingOptions, generate


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


def generate_share(loaded, conditions: dict[str, np.ndarray], opts: SamplingOptions, device: str, first_event: int = 0, progress=None):
    """CSR offsets and hits for conditions whose first event has global index first_event, by the
    model's own generator."""
    arch = loaded.config["architecture"]
    if arch == "track-gpt":
        from hitgen.sampling.track_generate import generate_tracks

        cache = opts.decoder != "naive"
        return generate_tracks(loaded.model, conditions, opts.seed, opts.batch_size, device, opts.temperature, progress, first_event, cache=cache)
    if arch == "siliconai":  # always recomputed over its sliding window: no cache, nothing naive to add
        from hitgen.sampling.siliconai_generate import generate_siliconai

        return generate_siliconai(loaded.model, conditions, opts.seed, opts.batch_size, device, opts.temperature, progress, first_event)
    return generate(loaded.model, conditions["momentum"], opts, device, progress, first_event=first_event)


# the sampling options each architecture's generator takes (the others are the CLAS12 model's)
TRACKER_OPTIONS = {"track-gpt": ("temperature", "batch_size", "seed", "decoder"), "siliconai": ("temperature", "batch_size", "seed")}
TRACK_GPT_DECODERS = ("plain", "naive")


def options_used(architecture: str, opts: SamplingOptions) -> dict:
    """The options the architecture's generator uses; one set to a non-default value that it does
    not use is an error (a user asking for top-k of a track model would otherwise get none)."""
    every = asdict(opts)
    if architecture not in TRACKER_OPTIONS:
        return every
    default = asdict(SamplingOptions())
    unused = [k for k in every if k not in TRACKER_OPTIONS[architecture] and every[k] != default[k]]
    if unused:
        raise HitgenError(f"--{unused[0].replace('_', '-')} does not apply to a {architecture} model")
    if architecture == "track-gpt" and opts.decoder not in TRACK_GPT_DECODERS:
        raise HitgenError(f"--decoder {opts.decoder}: a {architecture} model decodes with {' or '.join(TRACK_GPT_DECODERS)}")
    return {k: every[k] for k in TRACKER_OPTIONS[architecture]}


def check_dtype(device: str, dtype: str) -> str:
    if dtype not in ("fp32", "bf16"):
        raise HitgenError(f"--dtype must be one of fp32, bf16 (got {dtype})")
    if dtype == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise HitgenError(f"--dtype bf16: the GPU {torch.cuda.get_device_name(device)} cannot run bf16")
    return dtype


def check_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HitgenError(f"--device {device}: no CUDA GPU is available on this machine")
    if not (device == "cpu" or device.startswith("cuda")):
        raise HitgenError(f"--device must be cpu or cuda (got {device})")
    return device


def conditions_for(
    model_detector: str, conditions: Path | None, momentum_range: tuple[float, float] | None, n_events: int | None, seed: int
) -> dict[str, np.ndarray]:
    if conditions is not None:
        events = EventSet.read(conditions)
        if events.detector != model_detector:
            raise HitgenError(f"{conditions}: conditions of detector {events.detector}, but the model simulates {model_detector}")
        return dict(events.conditions)
    if model_detector != clas12_ecal.NAME:
        raise HitgenError(f"a {model_detector} model generates for the conditions of an event file: give --conditions FILE")
    if momentum_range is None or n_events is None:
        raise HitgenError("give either --conditions FILE or --momentum-range LO:HI with --events N")
    if n_events <= 0:
        raise HitgenError(f"--events must be positive (got {n_events})")
    return clas12_ecal.sample_conditions(n_events, np.random.default_rng([seed, 0]), momentum_range=momentum_range)


def _part_path(out: Path, rank: int, world: int) -> Path:
    """One process's share under torchrun: a hidden, unfinished-looking name beside the output."""
    return out.with_name(f".{out.name}.part{rank}of{world}.partial")


def generate_file(
    model_ref: str,
    out: str | Path,
    conditions: Path | None = None,
    momentum_range: tuple[float, float] | None = None,
    n_events: int | None = None,
    opts: SamplingOptions | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    dtype: str = "fp32",
) -> GenerationSummary:
    device = check_device(device)
    dtype = check_dtype(device, dtype)
    opts = opts or SamplingOptions()
    if opts.temperature <= 0 or opts.top_k < 0 or opts.value_top_k < 0 or opts.batch_size <= 0:
        raise HitgenError("--temperature and --batch-size must be positive, --top-k and --value-top-k >= 0")
    if opts.decoder not in DECODERS:
        raise HitgenError(f"--decoder must be one of {', '.join(DECODERS)} (got {opts.decoder})")
    out = Path(out)
    if out.exists() and not overwrite:
        raise HitgenError(f"{out}: already exists (use --overwrite to replace it)")
    loaded = load_model(model_ref, device)
    used = options_used(loaded.config["architecture"], opts)
    detector = loaded.config["detector_spec"]["name"]
    cond = conditions_for(detector, conditions, momentum_range, n_events, opts.seed)
    p = np.linalg.norm(cond["momentum"].astype(np.float64), axis=1)
    lo, hi = loaded.config["data"]["momentum_range_gev"]
    outside = int(((p < lo) | (p > hi)).sum())
    notes: dict = {"sampling": used | {"dtype": dtype}}
    if outside:
        notes |= {"momentum_outside_training_range": outside, "training_momentum_range_gev": [lo, hi]}
        if warn:
            warn(f"{outside} of {len(p)} events have |p| outside the training range {lo:.2f}-{hi:.2f} GeV; flagged in the file's notes")
    ddp = Distributed.from_env(torch.device(device))
    device = str(ddp.local_device(torch.device(device)))
    n = len(cond["momentum"])
    lo, hi = n * ddp.rank // ddp.world, n * (ddp.rank + 1) // ddp.world  # this process's share
    t0 = time.perf_counter()
    amp = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    with amp:
        offsets, hits = generate_share(loaded, {k: v[lo:hi] for k, v in cond.items()}, opts, device, lo, progress)
    gpu = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else None
    spec = loaded.config["detector_spec"]
    share = (len(offsets) - 1, int(offsets[-1]))  # this process's events and hits
    if ddp.world > 1:  # every process writes its share; the first joins them into the one output
        paths = [_part_path(out, r, ddp.world) for r in range(ddp.world)]
        EventSet(detector, spec, {k: v[lo:hi] for k, v in cond.items()}, offsets, hits, loaded.producer, seed=opts.seed).write(
            paths[ddp.rank], overwrite=True
        )
        ddp.barrier()
        if ddp.main:
            joined = EventSet.concatenate([EventSet.read(p) for p in paths])
            offsets, hits = joined.offsets, joined.hits
    seconds = time.perf_counter() - t0
    timing = timing_note(n, seconds, device=str(device), threads=torch.get_num_threads(), processes=ddp.world)
    notes["timing"] = timing | {"machine": machine_description(gpu)}
    if ddp.main:
        events = EventSet(detector, spec, cond, offsets, hits, loaded.producer, seed=opts.seed, notes=notes)
        events.write(out, overwrite=overwrite)
        share = (events.n_events, events.n_hits)
    if ddp.world > 1:
        ddp.barrier()
        if ddp.main:
            for p in paths:
                p.unlink()
    return GenerationSummary(out, *share, seconds, outside, ddp.main)
