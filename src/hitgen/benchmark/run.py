"""`hitgen bench`: Geant4 and the model on the same machine, in one run.

- Geant4: events/s of `hitgen simulate` for the model's detector, one worker per core,
  digitisation and writing included, Geant4 start-up excluded.
- The model: events/s, hit tokens/s, ms per event and peak memory at each batch size, decoding to a
  finished event file included; the median of `repeats` timed runs after one warm-up run.
- Naive decoding (no key-value cache: the whole sequence is recomputed at every step) at one
  batch size, for the same model and the same events (per-event random streams).
- decoder: plain (growing cache, batch by batch) or static (the engine: preallocated cache,
  continuous batching); hitgen.families.clas12_gpt.sampler.
- FLOPs per generated event (analytic, roofline.py) and the fraction of the measured matmul peak of
  the dtype that generation reaches.
Every figure carries the machine it was measured on. No timing is asserted anywhere: the numbers
are reported, not tested.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hitgen.benchmark.pool import GenerationPool
from hitgen.benchmark.roofline import matmul_peak_flops
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.core.machine import machine_description, peak_memory_bytes, reset_peak_memory
from hitgen.detectors import get_detector
from hitgen.families import SamplingOptions
from hitgen.generation.job import generate_share
from hitgen.models.export import attach_backend
from hitgen.models.io import load_model
from hitgen.nn.precision import autocast, check_device, check_dtype

DEFAULT_BATCH_SIZES = (1, 64, 256, 1024, 4096)
MAX_BATCHES_PER_RUN = 32  # a timed run at batch size b generates min(events, 32 b) events (at least b)


def events_per_run(batch_size: int, events: int) -> int:
    return max(batch_size, min(events, MAX_BATCHES_PER_RUN * batch_size))


def _generate_to_file(loaded, conditions: dict[str, np.ndarray], opts: SamplingOptions, device: str, dtype: str, folder: Path):
    """One timed generation: sampling, decoding and writing a finished event file."""
    dev = torch.device(device)
    t0 = time.perf_counter()
    with autocast(device, dtype):
        offsets, hits = generate_share(loaded, conditions, opts, device)
    spec = loaded.config["detector_spec"]
    events = EventSet(spec["name"], spec, conditions, offsets, hits, loaded.producer, seed=opts.seed)
    events.write(folder / "bench.h5", overwrite=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0, events


def measure_model(
    loaded,
    conditions: dict[str, np.ndarray],
    batch_size: int,
    device: str,
    dtype: str,
    repeats: int,
    folder: Path,
    decoder: str = "plain",
    pool: GenerationPool | None = None,
) -> tuple[dict, np.ndarray]:
    """Events/s, hit tokens/s, ms per event and peak memory at one batch size (median of repeats),
    and the token count of each event of the first timed run (for the FLOPs). With a pool, every
    process generates its share at this batch size and the peak memory is the processes' sum."""
    n = _n(conditions)
    opts = SamplingOptions(batch_size=batch_size, seed=0, decoder=decoder)
    warm = {k: v[: min(n, batch_size * (pool.processes if pool else 1))] for k, v in conditions.items()}

    def once(c: dict[str, np.ndarray], o: SamplingOptions):
        return pool.run(c, o, folder) if pool else _generate_to_file(loaded, c, o, device, dtype, folder)

    once(warm, opts)  # warm-up, not timed
    dev = torch.device(device)
    reset_peak_memory(dev)
    seconds, lengths, hits = [], None, 0
    for r in range(repeats):
        s, events = once(conditions, replace(opts, seed=r))
        seconds.append(s)
        if lengths is None:
            lengths, hits = loaded.family.sequence_lengths(events), events.n_hits
    t = statistics.median(seconds)
    return {
        "batch_size": batch_size,
        "events": n,
        "decoder": decoder,
        "seconds_median": t,
        "seconds_all": seconds,
        "events_per_s": n / t,
        "hit_tokens_per_s": hits / t,
        "ms_per_event": 1000 * t / n,
        "peak_memory_bytes": pool.peak_rss_bytes if pool else peak_memory_bytes(dev),
        "processes": pool.processes if pool else 1,
        "mean_sequence_length": float(np.mean(lengths)),
    }, lengths


def measure_geant4(detector: str, n_events: int, workers: int, folder: Path) -> dict:
    """Geant4 events/s for the detector with `workers` processes (start-up excluded)."""
    from hitgen.simulation.runner import simulate

    kinematics = get_detector(detector).bench_options
    summary = simulate(detector, n_events, folder / "geant4.h5", seed=12345, workers=workers, overwrite=True, **kinematics)
    return {
        "events": summary.n_events,
        "workers": summary.workers,
        "events_per_s": summary.events_per_s,
        "startup_s": summary.startup_s,
        "wall_s": summary.wall_s,
        "producer": summary.producer,
    }


def bench(
    model_ref: str,
    events: int = 1024,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    device: str = "cpu",
    dtype: str = "fp32",
    repeats: int = 3,
    geant4_events: int = 400,
    naive_batch_size: int | None = None,
    naive_events: int | None = None,
    progress: Callable[[str], None] | None = None,
    decoder: str = "plain",
    processes: int = 1,
    backend: str = "torch",
    onnx_dir: Path | None = None,
) -> dict:
    """Run the whole benchmark; returns the JSON-ready result (keys: see the module docstring)."""
    device, dtype = _check(device, dtype, decoder, events, repeats, geant4_events, batch_sizes, processes)
    say = progress or (lambda _: None)
    if backend != "torch" and processes > 1:
        raise HitgenError("--processes applies to the torch backend")
    loaded = attach_backend(load_model(model_ref, device), backend, onnx_dir, dtype, device, decoder)
    if decoder != "plain" and (decoder == "naive" or decoder not in loaded.family.decoders):
        own = [d for d in loaded.family.decoders if d != "naive"]
        listed = ", ".join(own[:4]) + (", ..." if len(own) > 4 else "")
        raise HitgenError(f"--decoder {decoder}: the {loaded.family.name} family benchmarks with {listed}")
    detector = loaded.detector
    det = get_detector(detector)
    conditions = det.sample_conditions(events, np.random.default_rng([2024, 0]), **det.bench_options)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    result: dict = {
        "model": str(loaded.path),
        "producer": loaded.producer,
        "detector": detector,
        "device": device,
        "dtype": dtype,
        "decoder": decoder,
        "backend": backend,
        "processes": processes,
        "torch_threads": torch.get_num_threads() if processes == 1 else max(1, (os.cpu_count() or 1) // processes),
        "machine": machine_description(gpu),
    }
    with tempfile.TemporaryDirectory(prefix="hitgen-bench-") as tmp:
        folder = Path(tmp)
        if geant4_events:
            say(f"Geant4: {geant4_events} events, {os.cpu_count()} workers")
            result["geant4"] = measure_geant4(detector, geant4_events, os.cpu_count() or 1, folder)
        runs = _measure_batches(loaded, model_ref, conditions, batch_sizes, events, device, dtype, repeats, folder, decoder, processes, say)
        per_batch = [r for r, _ in runs]
        nb = naive_batch_size or (64 if 64 in batch_sizes else min(batch_sizes))
        # the naive baseline runs in one process: compare it with one process at the same batch
        cached = next((r for r in per_batch if r["batch_size"] == nb), None) if processes == 1 else None
        naive = None
        decoders = loaded.family.decoders
        if not decoders or "naive" in decoders:  # a family that decodes token by token: the baseline without the cache
            if cached is None:
                cached, _ = measure_model(loaded, _take(conditions, events_per_run(nb, events)), nb, device, dtype, repeats, folder, decoder)
            nn = naive_events or min(cached["events"], 2 * nb)
            say(f"naive decoding (no KV cache): batch {nb}, {nn} events")
            naive, _ = measure_model(loaded, _take(conditions, nn), nb, device, dtype, 1, folder, decoder="naive")
    say("matmul peak")
    # the peak of the benchmarked dtype only: a bf16 product on a CPU without native bf16 runs at
    # about 1 GFLOP/s, so measuring it beside an fp32 run took 13.5 s (AVX2-only AMD EPYC)
    peak = {dtype: matmul_peak_flops(device, dtype)}
    best, best_lengths = max(runs, key=lambda r: r[0]["events_per_s"])
    flops = loaded.family.flops_per_event(loaded.model.cfg, best_lengths, decoder)
    result |= {
        "geant4_events_per_s": result["geant4"]["events_per_s"] if geant4_events else None,
        "model_events_per_s": best["events_per_s"],
        "best_batch_size": best["batch_size"],
        "naive_events_per_s": naive["events_per_s"] if naive else None,
        "naive_batch_size": nb if naive else None,
        "speedup_vs_naive": cached["events_per_s"] / naive["events_per_s"] if naive else None,
        "flops_per_event": flops,
        "matmul_peak_flops": peak,
        "achieved_flops": flops * best["events_per_s"],
        "roofline_fraction": flops * best["events_per_s"] / peak[dtype],
        "per_batch": per_batch,
        "naive": naive,
        "kv_cache": loaded.family.has_kv_cache,  # a sliding-window model always recomputes: naive is its only path
    }
    result["speedup_vs_geant4"] = best["events_per_s"] / result["geant4_events_per_s"] if geant4_events else None
    return result


def _check(device, dtype, decoder, events, repeats, geant4_events, batch_sizes, processes) -> tuple[str, str]:
    device = check_device(device)
    dtype = check_dtype(device, dtype)
    if events <= 0 or repeats <= 0 or geant4_events < 0 or not batch_sizes or min(batch_sizes) <= 0 or processes <= 0:
        raise HitgenError("--events, --repeats, --processes and every batch size must be positive; --geant4-events >= 0")
    if processes > 1 and not device == "cpu":
        raise HitgenError("--processes applies to the CPU (on GPUs: one process per GPU under torchrun)")
    return device, dtype


def _measure_batches(loaded, model_ref, conditions, batch_sizes, events, device, dtype, repeats, folder, decoder, processes, say) -> list:
    """(record, token counts) per batch size, in `processes` processes where more than one."""
    runs = []
    pool = GenerationPool(model_ref, processes, device, dtype) if processes > 1 else None
    try:
        for b in batch_sizes:
            n = events_per_run(b, events)
            say(f"model: batch {b}, {n} events x {repeats}" + (f" in {processes} processes" if pool else ""))
            runs.append(measure_model(loaded, _take(conditions, n), b, device, dtype, repeats, folder, decoder, pool))
    finally:
        if pool:
            pool.close()
    return runs


def _n(conditions: dict[str, np.ndarray]) -> int:
    return len(next(iter(conditions.values())))


def _take(conditions: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    reps = -(-n // _n(conditions))
    return {k: np.concatenate([v] * reps)[:n] for k, v in conditions.items()}
