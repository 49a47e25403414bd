"""The `hitgen` command: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.exceptions import TyperException

from hitgen.core.errors import HitgenError
from hitgen.detectors import get_detector

app = typer.Typer(
    name="hitgen",
    help="Transformer surrogates of Geant4 detector simulation, measured against Geant4.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C (every writer removes its partial output), exit code 143."""


_SIGNALLED: list[int] = []  # the signal that ended the command (typer turns the interrupt into exit code 130)


def _terminate(signum, frame):
    _SIGNALLED.append(signum)
    raise Terminated


def _interruptible() -> None:
    """Ctrl-C and SIGTERM end a command cleanly, even where the shell started it with SIGINT
    ignored (a background job): partial outputs are removed, nothing half-written remains."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)


MAX_SEED = 2**63 - 1  # seeds are stored as 64-bit integers


def _check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise HitgenError(f"--seed must be between 0 and 2**63 - 1 (got {seed})")
    return seed


def _detector_options(detector: str, extra: list[str], accepted: tuple[str, ...] | None = None) -> dict:
    """The detector's own options among the extra command-line words (--name VALUE or --name=VALUE),
    parsed by the detector; `accepted` limits them to a subset (those of generation)."""
    from hitgen.detectors import get_detector

    det = get_detector(detector)
    options = {o.flag: o for o in det.options if accepted is None or o.name in accepted}
    parsed: dict = {}
    words = list(extra)
    while words:
        word = words.pop(0)
        flag, eq, value = word.partition("=")
        if flag not in options:
            known = ", ".join(options) or "none"
            if not flag.startswith("--"):
                raise HitgenError(f"unexpected argument '{word}'")
            raise HitgenError(f"{flag} does not apply to {detector} here (its options: {known})")
        if not eq:
            if not words:
                raise HitgenError(f"{flag} needs a value")
            value = words.pop(0)
        parsed[options[flag].name] = options[flag].parse(value)
    return parsed


def _options_help() -> str:
    from hitgen.detectors import REGISTRY

    lines = [f"{d.name}: " + "; ".join(f"{o.flag} ({o.help})" for o in d.options) for d in REGISTRY if d.options]
    return "Detector options: " + " | ".join(lines)


def _check_executor(executor: str, scheduler: str | None, units: str | None) -> tuple[int, int] | None:
    """The distribution options of simulate and generate, checked; the share K/N or None."""
    from hitgen.distributed.units import parse_share

    if executor not in ("local", "dask"):
        raise HitgenError(f"unknown --executor '{executor}' (known: local, dask)")
    if scheduler is not None and executor != "dask":
        raise HitgenError("--scheduler goes with --executor dask")
    return parse_share(units) if units is not None else None


EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=EXTRA, epilog=_options_help())
def simulate(
    ctx: typer.Context,
    detector: Annotated[str, typer.Argument(help="detector name (hitgen.detectors), e.g. clas12-ecal or odd-tracker")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output event file (.h5)")],
    events: Annotated[int | None, typer.Option("--events", "-n", help="number of events")] = None,
    conditions: Annotated[Path | None, typer.Option(help="simulate the conditions of this event file (a replica: use another --seed)")] = None,
    seed: Annotated[int, typer.Option(help="random seed (written into the file)")] = 1,
    workers: Annotated[int, typer.Option(help="Geant4 worker processes (default: one per core)")] = 0,
    physics: Annotated[str | None, typer.Option(help="EM physics constructor: emstandard_opt1 or emstandard_opt2 (default: the detector's)")] = None,
    msc_step_limit: Annotated[
        str | None, typer.Option(help="e+- multiple-scattering step limitation: Minimal, UseSafety, UseSafetyPlus, UseDistanceToBoundary")
    ] = None,
    msc_range_factor: Annotated[float | None, typer.Option(help="e+- multiple-scattering range factor, 0 < F <= 1")] = None,
    range_cut: Annotated[float | None, typer.Option(help="production range cut in mm")] = None,
    executor: Annotated[str, typer.Option(help="local (worker processes here) or dask (a Dask cluster: --scheduler)")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="the Dask scheduler: tcp://HOST:PORT or a scheduler file")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run of the same command from the units it finished")] = False,
    units: Annotated[str | None, typer.Option(help="K/N: run only the K-th of N shares (a job array); hitgen merge joins them")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
) -> None:
    """Simulate events with Geant4 and write a hitgen-events file. Each detector adds its own options (below).
    The physics settings default to the detector's (`hitgen info` of a file shows what ran); with
    --conditions, to those the conditions file records."""
    from hitgen.simulation.runner import simulate as run

    kinematics = _detector_options(detector, ctx.args)
    if workers < 0:
        raise HitgenError(f"--workers must be positive (got {workers})")
    share = _check_executor(executor, scheduler, units)
    _check_seed(seed)
    _interruptible()
    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("events", total=events)
        summary = run(
            detector,
            events,
            out,
            seed=seed,
            workers=workers or None,
            overwrite=overwrite,
            physics={"em": physics, "msc_step_limit": msc_step_limit, "msc_range_factor": msc_range_factor, "range_cut_mm": range_cut},
            progress=lambda done: bar.update(task, completed=done),
            conditions_file=conditions,
            executor=executor,
            scheduler=scheduler,
            resume=resume,
            unit_share=share,
            **kinematics,
        )
    if summary.units_reused or executor == "dask" or share is not None:
        console.print(f"units: {summary.units_run} run, {summary.units_reused} reused from the interrupted run; {summary.workers} workers")
    console.print(
        f"{summary.n_events} events, {summary.n_hits} hits -> {summary.path} in {summary.wall_s:.1f} s: "
        f"{summary.events_per_s:.1f} events/s with {summary.workers} workers, "
        f"{summary.events_per_s_per_core:.1f} events/s per core (Geant4 start-up {summary.startup_s:.1f} s excluded)"
    )


@app.command()
def merge(
    parts: Annotated[list[Path], typer.Argument(help="the shares of one run (simulate or generate with --units K/N), any order")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the joined event file")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
) -> None:
    """Join the shares of one run into the file one machine's run writes: each share exactly once, in event order."""
    from hitgen.core.atomic import check_new_output
    from hitgen.distributed.units import merge as run_merge

    check_new_output(out, overwrite, "--out")
    _interruptible()
    path, n_events, n_hits = run_merge(parts, out, overwrite)
    console.print(f"{len(parts)} shares, {n_events} events, {n_hits} hits -> {path}")


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)


@app.command()
def info(
    file: Annotated[Path, typer.Argument(help="a hitgen-events file")],
    plots: Annotated[Path | None, typer.Option(help="also save occupancy and hits-per-event plots in this (new) folder")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --plots folder")] = False,
) -> None:
    """Describe an event file: size, producer, hits per event, and the detector's own tables (occupancy, response)."""
    from hitgen.core.atomic import atomic_folder, check_new_output
    from hitgen.core.events import EventSet
    from hitgen.detectors import check_events

    if plots is not None:
        check_new_output(plots, overwrite, "--plots", folder=True)
    events = EventSet.read(file)
    detector = check_events(events, str(file))
    hpe = events.hits_per_event()
    console.print(f"[bold]{file}[/bold]: {events.n_events} events of {events.detector}, {events.n_hits} hits")
    console.print(f"producer: {events.producer}   seed: {events.seed}")
    if events.physics:
        console.print("physics: " + ", ".join(f"{k} {v}" for k, v in sorted(events.physics.items())), markup=False, highlight=False)
    if events.notes:
        console.print(f"notes: {events.notes}", markup=False)
    mean, std = (float(hpe.mean()), float(hpe.std())) if events.n_events else (float("nan"), float("nan"))
    console.print(f"hits per event: mean {mean:.2f}, std {std:.2f}")
    for title, columns, rows in detector.info_tables(events):
        _print_table(title, columns, rows)
    if plots is not None:
        _interruptible()
        try:
            with atomic_folder(plots, overwrite) as tmp:
                names = [p.name for p in detector.info_plots(events, tmp)]
        except OSError as e:
            raise HitgenError(f"--plots {plots}: cannot write the plots ({e.strerror or e})") from None
        for name in names:
            console.print(f"saved {plots / name}")


@app.command()
def evaluate(
    reference: Annotated[Path, typer.Argument(help="reference event file (Geant4)")],
    candidate: Annotated[Path, typer.Argument(help="candidate event file (a model, or another Geant4 sample)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder: metrics.json, plots/, report.html")],
    max_events: Annotated[int | None, typer.Option(help="use only the first N events of each file")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out folder")] = False,
    replica: Annotated[
        Path | None, typer.Option(help="Geant4 again at the reference's conditions (simulate --conditions REF --seed OTHER): the noise floor")
    ] = None,
) -> None:
    """Compare a candidate with a reference: metrics with their noise floor, plots and an HTML report."""
    from hitgen.detectors import get_detector
    from hitgen.evaluation import evaluate as run
    from hitgen.evaluation.report import made_in

    _interruptible()
    result = run(reference, candidate, out, max_events=max_events, overwrite=overwrite, replica=replica)
    m = result.metrics
    if not m["conditions_matched"]:
        err_console.print(f"warning: {m['conditions_note']}", highlight=False)
    for title, columns, rows in get_detector(m["detector"]).summary_tables(m):
        _print_table(f"{m['detector']}: {m['n_candidate']} candidate vs {m['n_reference']} reference events, {title}", columns, rows)
    for who in ("reference", "candidate"):
        if m[who]["timing"]:
            console.print(f"{who} made in {made_in(m[who]['timing'])}: {m[who]['producer']}", markup=False, highlight=False)
    console.print(f"wrote {result.out / 'metrics.json'}, {result.out / 'report.html'} in {m['seconds']:.1f} s")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="training config (TOML), e.g. configs/clas12-gpt/compact.toml")],
    data: Annotated[list[Path], typer.Option(help="training event file(s) (hitgen simulate output); repeat for several")],
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder; an unfinished run there is resumed")],
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    stop_after: Annotated[int | None, typer.Option(help="stop (with a checkpoint) after this many steps of this call")] = None,
    init: Annotated[str | None, typer.Option(help="start a new run from this model's weights (a folder or shipped name)")] = None,
) -> None:
    """Train a model of the config's family (resumes exactly from the last checkpoint in --out). Runs under torchrun too."""
    from hitgen.nn.precision import check_device
    from hitgen.training.trainer import train as run

    check_device(device)
    _interruptible()
    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("steps", total=None, info="")

        def show(step: int, total: int, row: dict) -> None:
            val = f" val {row['val_loss']}" if row.get("val_loss") else ""
            bar.update(task, completed=step, total=total, info=f"loss {row['loss']}{val}")

        run(config, data, out, device=device, progress=show, stop_after=stop_after, init_from=init)
    console.print(f"run folder {out}: log.csv, checkpoint.safetensors; model.safetensors + config.json once finished")


@app.command()
def extend(
    base: Annotated[str, typer.Argument(help="the model to grow (a folder or shipped name)")],
    add: Annotated[str, typer.Option(help="the module to add: an expert <particle>-<material>, e.g. gamma-Pb")],
    data: Annotated[list[Path], typer.Option(help="its training event file(s); repeat for several")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the new model folder (the run in OUT/run; rerun to resume)")],
    config: Annotated[Path, typer.Option(help="a [train] table for the module's training")],
    mode: Annotated[str, typer.Option(help="module (train only the new module; the base frozen) or full (fine-tune everything)")] = "module",
    events: Annotated[int | None, typer.Option(help="train on this many showers drawn from the data")] = None,
    draw: Annotated[int, typer.Option(help="the seed of that draw")] = 0,
    stop_after: Annotated[int | None, typer.Option(help="stop (with a checkpoint) after this many steps of this call")] = None,
    replace: Annotated[bool, typer.Option(help="train the model's module of that name anew (modules nothing else depends on)")] = False,
) -> None:
    """Grow a model by one module trained on new data, the rest frozen (families that grow by modules)."""
    from hitgen.training.modules import extend as grow

    _interruptible()
    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("steps", total=None)
        shown = lambda step, total, row: bar.update(task, completed=step, total=total)  # noqa: E731
        folder = grow(base, add, data, out, config, mode, events, draw, stop_after, shown, replace)
    console.print(f"{folder}: {'model folder' if (folder / 'config.json').exists() and folder == out else 'run in progress (rerun to resume)'}")


def _generation_help() -> str:
    from hitgen.detectors import REGISTRY

    each = [f"{d.name}: " + ", ".join("--" + o.replace("_", "-") for o in d.generation_options) for d in REGISTRY if d.generation_options]
    return "Without --conditions, the detector's generation options sample them with --events N (" + "; ".join(each) + ")."


@app.command(context_settings=EXTRA, epilog=_generation_help())
def generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="a run/model folder or the name of a shipped model")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output event file")],
    conditions: Annotated[Path | None, typer.Option(help="take the conditions of this event file")] = None,
    events: Annotated[int | None, typer.Option("--events", "-n", help="... for this many events")] = None,
    batch_size: Annotated[int, typer.Option(help="events decoded together")] = 256,
    temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
    top_k: Annotated[int, typer.Option(help="top-k sampling of the strip stream (0 = none)")] = 20,
    value_top_k: Annotated[int, typer.Option(help="top-k sampling of the ADC and TDC streams (0 = none)")] = 0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    decoder: Annotated[str, typer.Option(help="plain, static (preallocated cache, continuous batching) or naive; same events")] = "plain",
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
    dtype: Annotated[str, typer.Option(help="fp32, or bf16 autocast (faster on CPUs with AVX512-BF16 and on GPUs)")] = "fp32",
    backend: Annotated[str, typer.Option(help="torch, or onnxruntime (the trunk as an ONNX graph; same events)")] = "torch",
    onnx: Annotated[Path | None, typer.Option(help="the export folder of --backend onnxruntime (default: exported afresh)")] = None,
    executor: Annotated[str, typer.Option(help="local (this process) or dask (a Dask cluster: --scheduler)")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="the Dask scheduler: tcp://HOST:PORT or a scheduler file")] = None,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run of the same command from the units it finished")] = False,
    units: Annotated[str | None, typer.Option(help="K/N: run only the K-th of N shares (a job array); hitgen merge joins them")] = None,
    unit_events: Annotated[int | None, typer.Option(help="events per unit with --executor dask, --resume or --units (default 1000)")] = None,
) -> None:
    """Generate events with a trained model for given or sampled conditions."""
    from hitgen.families import SamplingOptions
    from hitgen.generation.job import generate_file
    from hitgen.models.io import load_model

    share = _check_executor(executor, scheduler, units)

    options: dict = {}
    settings: dict = {}
    if ctx.args:
        loaded = load_model(model)
        detector = get_detector(loaded.detector)
        # a model of several detector settings (an expert per absorber) takes them as options too
        setting_names = tuple(o.name for o in detector.options if o.setting) if hasattr(loaded.family, "settings_of") else ()
        if not detector.generation_options and not setting_names:
            raise HitgenError(f"a {detector.name} model generates for the conditions of an event file: give --conditions FILE")
        options = _detector_options(detector.name, ctx.args, tuple(detector.generation_options) + setting_names)
        settings = {k: options.pop(k) for k in list(options) if k in setting_names}
    _check_seed(seed)
    opts = SamplingOptions(temperature=temperature, top_k=top_k, value_top_k=value_top_k, batch_size=batch_size, seed=seed, decoder=decoder)
    _interruptible()
    with Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task("events", total=None)
        summary = generate_file(
            model,
            out,
            conditions,
            options,
            events,
            opts,
            device,
            overwrite,
            progress=lambda done: bar.update(task, completed=done),
            warn=lambda msg: err_console.print(f"warning: {msg}", highlight=False),
            dtype=dtype,
            backend=backend,
            onnx_dir=onnx,
            executor=executor,
            scheduler=scheduler,
            resume=resume,
            unit_share=share,
            settings=settings,
            unit_events=unit_events,
        )
    if summary.units_run or summary.units_reused:
        console.print(f"units: {summary.units_run} run, {summary.units_reused} reused from the interrupted run")
    if summary.wrote_output:
        console.print(
            f"{summary.n_events} events, {summary.n_hits} hits -> {summary.path} in {summary.seconds:.1f} s ({summary.events_per_s:.1f} events/s)"
        )


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="a run/model folder or the name of a shipped model")],
    events: Annotated[int, typer.Option("--events", "-n", help="events per timed run (at most 32 batches)")] = 1024,
    batch_sizes: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,64,256,1024,4096",
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32 or bf16")] = "fp32",
    repeats: Annotated[int, typer.Option(help="timed runs per batch size (the median is reported)")] = 3,
    geant4_events: Annotated[int, typer.Option(help="Geant4 events (one worker per core); 0 = skip Geant4")] = 400,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the results here (JSON)")] = None,
    decoder: Annotated[str, typer.Option(help="plain, static (preallocated cache, continuous batching) or a family's own (heun-32, ...)")] = "plain",
    processes: Annotated[int, typer.Option(help="CPU generation processes, each with cores/K threads (naive decoding: one)")] = 1,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --json file")] = False,
    backend: Annotated[str, typer.Option(help="torch, or onnxruntime (the trunk as an ONNX graph)")] = "torch",
    onnx: Annotated[Path | None, typer.Option(help="the export folder of --backend onnxruntime (default: exported afresh)")] = None,
) -> None:
    """Geant4 vs the model on this machine: events/s, speed-up, naive decoding, FLOPs and roofline."""
    import json

    from hitgen.benchmark.run import bench as run
    from hitgen.core.atomic import check_new_output, write_text_atomic

    if json_out is not None:
        check_new_output(json_out, overwrite, "--json")
    _interruptible()

    try:
        sizes = tuple(int(b) for b in batch_sizes.split(","))
    except ValueError:
        raise HitgenError(f"malformed --batch-sizes '{batch_sizes}': expected e.g. 1,64,256") from None
    say = lambda m: err_console.print(m, highlight=False)  # noqa: E731
    r = run(
        model,
        events,
        sizes,
        device,
        dtype,
        repeats,
        geant4_events,
        progress=say,
        decoder=decoder,
        processes=processes,
        backend=backend,
        onnx_dir=onnx,
    )
    where = f"{r['machine']['cpu']} ({r['machine']['cores']} cores)" + (f", {r['machine']['gpu']}" if "gpu" in r["machine"] else "")
    t = Table(title=f"{r['detector']} on {where}, {device} {dtype}, {backend} backend, {decoder} decoder, {processes} process(es)")
    for col in ("batch", "events/s", "hit tokens/s", "ms/event", "peak memory MB"):
        t.add_column(col, justify="right")
    for b in r["per_batch"]:
        mem = "-" if b["peak_memory_bytes"] is None else f"{b['peak_memory_bytes'] / 1e6:.0f}"
        t.add_row(str(b["batch_size"]), f"{b['events_per_s']:.1f}", f"{b['hit_tokens_per_s']:.0f}", f"{b['ms_per_event']:.2f}", mem)
    console.print(t)
    if r["geant4_events_per_s"]:
        g = r["geant4"]
        speedup = r["speedup_vs_geant4"]
        console.print(f"Geant4: {r['geant4_events_per_s']:.1f} events/s ({g['workers']} workers, {g['events']} events); model/Geant4 {speedup:.2f}x")
    naive = f"naive decoding (no KV cache), batch {r['naive_batch_size']}: {r['naive_events_per_s']:.1f} events/s; " if r["naive"] else ""
    if not r["naive"]:
        console.print("no naive decoding to compare (this model family has no naive decoder)")
    elif r["kv_cache"]:
        console.print(naive + f"KV cache {r['speedup_vs_naive']:.1f}x faster")
    else:
        console.print(naive + "the model has no cache to compare (its window slides: every step recomputes it)")
    peak = r["matmul_peak_flops"][dtype]
    console.print(
        f"{r['flops_per_event'] / 1e6:.1f} MFLOP per event; {r['achieved_flops'] / 1e9:.1f} GFLOP/s achieved at batch {r['best_batch_size']}, "
        f"{100 * r['roofline_fraction']:.1f}% of the measured {dtype} matmul peak ({peak / 1e9:.0f} GFLOP/s)"
    )
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(r, indent=2))
        console.print(f"wrote {json_out}")


def _is_event_file(path: Path) -> bool:
    """Whether path names an HDF5 file whose format attribute says hitgen-events (the argument of
    export is then an event file, not a model)."""
    import h5py

    from hitgen.core.events import FORMAT

    try:
        if not path.is_file() or not h5py.is_hdf5(path):
            return False
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="a run/model folder or shipped model (onnx), or an event file (its detector's formats)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the export folder (onnx) or file (an event file's format) to write")],
    format: Annotated[str, typer.Option("--format", help="onnx for a model; for an event file, one of its detector's formats")] = "onnx",  # noqa: A002
    overwrite: Annotated[bool, typer.Option(help="replace an existing export")] = False,
) -> None:
    """A model's trunk as an ONNX graph (prefill and decode, the key-value cache as explicit inputs
    and outputs) with a JSON manifest, which generate and bench run with --backend onnxruntime; or an
    event file in a foreign format its detector writes (e.g. showerdata, calochallenge)."""
    if _is_event_file(Path(model)):
        from hitgen.core.atomic import atomic_path, check_new_output
        from hitgen.detectors import read_events, writer_of

        check_new_output(out, overwrite, "--out")
        events = read_events(model)
        detector = get_detector(events.detector)
        fmt = writer_of(detector, format)
        _interruptible()
        with atomic_path(out) as tmp:
            message = fmt.write(events, tmp)
        console.print(f"{events.n_events} events, {events.n_hits} hits -> {out} ({fmt.name}): {message}", markup=False, highlight=False)
        return
    from hitgen.models.export import export_onnx

    if format != "onnx":
        raise HitgenError(f"--format must be onnx for a model (got {format!r}); other formats take an event file of a detector that writes them")
    _interruptible()
    manifest = export_onnx(model, out, overwrite)
    graphs = ", ".join(f"{out / g['file']} (sha256 {g['sha256'][:12]})" for g in manifest["graphs"].values())
    console.print(f"{manifest['model']} ({manifest['architecture']}): {graphs}, {out / 'manifest.json'}")


def _formats_help() -> str:
    from hitgen.detectors import REGISTRY, formats_of

    each = [f"{f.name} ({d.name}: {f.help})" for d in REGISTRY for f in formats_of(d).values() if f.read is not None]
    return "Formats: " + ("; ".join(each) or "none")


@app.command("import", epilog=_formats_help())
def import_file(
    file: Annotated[Path, typer.Argument(help="a file in a foreign format (see --format)")],
    format: Annotated[str, typer.Option("--format", help="the file's format, one a detector reads (hitgen import --help lists them)")],  # noqa: A002
    out: Annotated[Path, typer.Option("--out", "-o", help="output event file (.h5)")],
    detector: Annotated[str | None, typer.Option(help="the detector to import into, where several read this format")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
) -> None:
    """Import a file of a foreign format as a hitgen event file of the detector that reads that format."""
    from hitgen.core.atomic import check_new_output
    from hitgen.detectors import check_events, reader_of

    check_new_output(out, overwrite, "--out")
    det, fmt = reader_of(format, detector)
    if not file.is_file():
        raise HitgenError(f"{file}: no such file")
    _interruptible()
    events = fmt.read(file)
    if events.detector != det.name:
        raise HitgenError(f"{file}: the {fmt.name} reader made {events.detector} events, not {det.name}")
    check_events(events, str(file))
    path = events.write(out, overwrite=overwrite)
    console.print(f"{events.n_events} events, {events.n_hits} hits of {det.name} -> {path}", markup=False, highlight=False)
    for line in events.notes.get("import", []):
        console.print(f"note: {line}", markup=False, highlight=False)


@app.command()
def ship(
    run: Annotated[Path, typer.Argument(help="a finished run folder")],
    name: Annotated[str, typer.Option(help="model name: written to models/NAME/")],
    evaluation: Annotated[Path | None, typer.Option(help="the hitgen evaluate folder of this model against fresh Geant4")] = None,
    models_dir: Annotated[Path, typer.Option(help="where shipped models live")] = Path("models"),
    notes: Annotated[Path | None, typer.Option(help="a Markdown file added to the model card as its Notes section")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace a shipped model of the same name")] = False,
) -> None:
    """Ship a trained model: weights, config, evaluation and a model card in models/NAME/."""
    from hitgen.core.atomic import safe_name
    from hitgen.models.card import ship as run_ship

    safe_name(name, "--name")
    if not models_dir.is_dir():
        raise HitgenError(f"--models-dir {models_dir}: not a folder")
    _interruptible()
    text = ""
    if notes is not None:
        if not notes.is_file():
            raise HitgenError(f"{notes}: no such notes file")
        text = notes.read_text(encoding="utf-8")
    dest = run_ship(run, models_dir / name, evaluation, text, overwrite=overwrite)
    console.print(f"shipped {dest}: config.json, model.safetensors, README.md" + (", metrics.json" if evaluation else ""))


def _validations() -> dict[str, str]:
    """Validations against real data the detectors bring: name -> module (run, tables, plots)."""
    from hitgen.detectors import REGISTRY

    return {name: module for detector in REGISTRY for name, module in getattr(detector, "validations", {}).items()}


def _energies(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise HitgenError(f"malformed --energies '{text}': expected numbers separated by commas, e.g. 6,10,20") from None


@app.command()
def validate(
    name: Annotated[str, typer.Argument(help="the validation: calice-2006 (hitgen's Geant4 against the CALICE Si-W test beam)")],
    events: Annotated[int | None, typer.Option("--events", "-n", help="electrons per beam energy (default: the validation's)")] = None,
    energies: Annotated[str | None, typer.Option(help="beam energies in GeV, comma-separated (default: the paper's)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 2006,
    workers: Annotated[int, typer.Option(help="Geant4 worker processes (default: one per core)")] = 0,
    physics: Annotated[str | None, typer.Option(help="EM physics constructor (default: the detector's)")] = None,
    msc_step_limit: Annotated[str | None, typer.Option(help="e+- multiple-scattering step limitation (default: the detector's)")] = None,
    msc_range_factor: Annotated[float | None, typer.Option(help="e+- multiple-scattering range factor (default: the detector's)")] = None,
    range_cut: Annotated[float | None, typer.Option(help="production range cut in mm (default: the detector's)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the table and the fit as JSON")] = None,
    plots: Annotated[Path | None, typer.Option(help="write the linearity and resolution plots into this (new) folder")] = None,
    keep: Annotated[Path | None, typer.Option(help="keep the simulated event files in this folder")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace existing --json and --plots outputs")] = False,
) -> None:
    """Simulate a real test beam with hitgen's Geant4 and compare with the published measurement."""
    import importlib
    import json

    from hitgen.core.atomic import atomic_folder, atomic_path, check_new_output
    from hitgen.simulation.runner import simulate

    known = _validations()
    if name not in known:
        raise HitgenError(f"unknown validation '{name}' (known: {', '.join(known) or 'none'})")
    module = importlib.import_module(known[name])
    if workers < 0:
        raise HitgenError(f"--workers must be positive (got {workers})")
    _check_seed(seed)
    if json_out is not None:
        check_new_output(json_out, overwrite, "--json")
    if plots is not None:
        check_new_output(plots, overwrite, "--plots", folder=True)
    changes = {"em": physics, "msc_step_limit": msc_step_limit, "msc_range_factor": msc_range_factor, "range_cut_mm": range_cut}
    cfg = module.Run(seed=seed, workers=workers or None, physics=changes, keep=keep)
    if events is not None:
        cfg.events = events
    if energies is not None:
        cfg.energies = _energies(energies)
    module.check(cfg)
    _interruptible()
    with console.status("simulating") as status:
        result = module.run(cfg, simulate, progress=lambda text: status.update(f"simulating {text}"))
    for title, columns, rows in module.tables(result):
        _print_table(title, columns, rows)
    console.print(f"{result['events_per_energy']} electrons per energy in {result['wall_s']:.0f} s; physics: {result['physics']}", markup=False)
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        console.print(f"saved {json_out}")
    if plots is not None:
        with atomic_folder(plots, overwrite) as tmp:
            names = [p.name for p in module.plots(result, tmp)]
        for n in names:
            console.print(f"saved {plots / n}")


def _add_detector_commands() -> None:
    """Commands a detector brings (e.g. odd-tracker's import-acts)."""
    from hitgen.detectors import REGISTRY

    for detector in REGISTRY:
        for name, command in getattr(detector, "commands", lambda: [])():
            app.command(name)(command)


_add_detector_commands()


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        rc = app(standalone_mode=False)  # returns an exit code where click would exit
    except HitgenError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except TyperException as e:  # usage errors: bad or missing options
        message = " ".join(e.format_message().split())
        if message:
            err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort) as e:  # click turns KeyboardInterrupt into Abort
        if isinstance(e, Terminated) or isinstance(e.__cause__, Terminated):
            err_console.print("error: terminated; no output written", highlight=False)
            sys.exit(143)
        err_console.print("error: interrupted; no output written", highlight=False)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    if rc == 130 and _SIGNALLED:  # typer turns KeyboardInterrupt into exit code 130
        err_console.print("error: terminated; no output written", highlight=False)
        sys.exit(143)
    if rc == 130:
        err_console.print("error: interrupted; no output written", highlight=False)
    if isinstance(rc, int):
        sys.exit(rc)


if __name__ == "__main__":
    main()
