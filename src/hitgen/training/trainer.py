"""`hitgen train`: AdamW + warm-up/cosine schedule, gradient clipping, validation, atomic
checkpoints with exact resume, CSV log, optional bf16 autocast, and DDP under torchrun.

Determinism: step s uses the events global_batch(seed, s) and the dropout seed of every
micro-batch is a function of (seed, s, micro-batch index). A resumed run therefore repeats the
interrupted one exactly, and K processes (DDP, each taking 1/K of every global batch) give the same
update as one process accumulating the same K micro-batches.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hitgen.core.atomic import atomic_path, write_text_atomic
from hitgen.core.config import FamilyConfig, TrainSection
from hitgen.core.distributed import Distributed
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet, condition_quantities
from hitgen.core.machine import machine_description
from hitgen.detectors import read_events
from hitgen.families import get_family
from hitgen.models.io import load_model, save_model_dir
from hitgen.nn.precision import autocast
from hitgen.training.checkpoint import load_checkpoint, save_checkpoint
from hitgen.training.config import load_config, same_run
from hitgen.training.data import global_batch, split

CHECKPOINT = "checkpoint.safetensors"
LOG = "log.csv"
LOG_HEAD, LOG_TAIL = ("step", "lr"), ("grad_norm", "val_loss", "seconds")  # around the family's loss parts


class LossModule(torch.nn.Module):
    """A model and its loss function as one module, so that DDP sees all the work inside forward()."""

    def __init__(self, model: torch.nn.Module, loss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss(self.model, batch)


def learning_rate(step: int, cfg: FamilyConfig) -> float:
    """Linear warm-up to lr, then cosine decay to min_lr_ratio * lr at max_steps."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps))
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def dropout_seed(seed: int, step: int, micro: int) -> int:
    return (seed * 1_000_003 + step * 1009 + micro) % (2**63)


def trainable_parameters(model: torch.nn.Module, cfg: FamilyConfig) -> list[torch.nn.Parameter]:
    """The parameters that train: all, or (train.train_only) those whose names start with one of its
    prefixes (a prefix may hold * wildcards: blocks.*.lora_A.e-.); the others are frozen
    (requires_grad False) at their initial or warm-start values."""
    prefixes = cfg.train.train_only
    if not prefixes:
        return list(model.parameters())
    named = dict(model.named_parameters())
    unknown = [p for p in prefixes if not any(in_prefixes(n, [p]) for n in named)]
    if unknown:
        raise HitgenError(f"train.train_only: no parameter of this model starts with {unknown[0]!r}")
    for name, p in named.items():
        p.requires_grad_(in_prefixes(name, prefixes))
    return [p for p in named.values() if p.requires_grad]


def in_prefixes(name: str, prefixes: list[str]) -> bool:
    """Whether a parameter name starts with one of the prefixes (* in a prefix: any characters)."""
    return any(fnmatchcase(name, p + "*") if "*" in p else name.startswith(p) for p in prefixes)


def make_optimizer(model: torch.nn.Module, cfg: FamilyConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices and embeddings, none on biases
    and LayerNorm parameters."""
    params = trainable_parameters(model, cfg)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(0.9, 0.95))


@torch.no_grad()
def validation_loss(model: torch.nn.Module, data, cfg: FamilyConfig, device: torch.device, loss) -> float:
    model.eval()
    n = min(len(data), cfg.train.val_events)
    total, weight = 0.0, 0
    for lo in range(0, n, cfg.train.micro_batch_size):
        idx = np.arange(lo, min(lo + cfg.train.micro_batch_size, n))
        batch = {k: v.to(device) for k, v in data.batch(idx).items()}
        with _autocast(cfg, device):
            _, parts = loss(model, batch)
        total += parts["loss"] * len(idx)
        weight += len(idx)
    model.train()
    return total / weight


def _autocast(cfg: FamilyConfig, device: torch.device):
    return autocast(device, "bf16" if cfg.train.bf16 else "fp32")


def _read_log(path: Path, before_step: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) < before_step]


def _write_log(path: Path, rows: list[dict], fields: tuple[str, ...]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def training_data_of(family, paths: list[Path]) -> tuple[EventSet, list[int], Any, list[dict]]:
    """The training data of the family from the files, the events (for the run's record), the events
    per file and the detector specs. Files whose detector settings differ (an absorber) train together
    only in a family that routes them itself (``training_data_of_files``); the record then keeps the
    first file's spec as the model's default and every spec under ``detector_specs``."""
    parts = [read_events(p) for p in paths]
    if parts[0].detector != family.detector:
        raise HitgenError(f"{family.name} trains on {family.detector} event files, not {parts[0].detector} ({paths[0]})")
    specs = list({json.dumps(p.detector_spec, sort_keys=True): p.detector_spec for p in parts}.values())
    if len(specs) > 1 and hasattr(family, "training_data_of_files") and len({p.detector for p in parts}) == 1:
        events = EventSet.concatenate([replace(p, detector_spec=parts[0].detector_spec, physics=parts[0].physics) for p in parts])
        return events, [p.n_events for p in parts], family.training_data_of_files(parts), specs
    events = EventSet.concatenate(parts)
    return events, [p.n_events for p in parts], family.training_data(events), specs


def train(
    config_path: str | Path | FamilyConfig,
    data_path: str | Path | list[str | Path],
    out: str | Path,
    device: str = "cpu",
    progress: Callable[[int, int, dict], None] | None = None,
    stop_after: int | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train (or resume) into the run folder `out`; returns it. `stop_after` ends the session after
    that many steps of this call (as a kill would, but cleanly), for tests and short sessions.
    `init_from` (a model folder or shipped name) starts a new run from that model's weights: every
    parameter of the same name and shape is copied, the configuration's new modules keep their
    initialisation; a resumed run continues from its own checkpoint."""
    cfg = config_path if isinstance(config_path, FamilyConfig) else load_config(config_path)
    config_path = config_path.model.architecture + " config built by hitgen extend" if isinstance(config_path, FamilyConfig) else config_path
    family = get_family(cfg.architecture)
    if stop_after is not None and stop_after < 1:
        raise HitgenError(f"--stop-after must be at least 1 (got {stop_after})")
    init_model = load_model(init_from) if init_from is not None else None  # a bad --init fails before the run folder exists
    if cfg.train.init_copy and init_model is None:
        raise HitgenError("train.init_copy copies parameters of the --init model; give --init")
    teacher = _teacher(family, cfg)
    dev, ddp = _processes(device)
    t = cfg.train
    per_rank = t.batch_size // ddp.world
    if t.batch_size % ddp.world or per_rank % t.micro_batch_size:
        raise HitgenError(f"batch_size {t.batch_size} must split into {ddp.world} processes x micro_batch_size {t.micro_batch_size}")
    if t.threads:
        torch.set_num_threads(t.threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HitgenError(f"{out}: exists and is not a folder; choose another --out")
    data_paths = [Path(p) for p in (data_path if isinstance(data_path, list) else [data_path])]
    events, events_per_file, data, specs = training_data_of(family, data_paths)
    train_data, val_data = split(data, t.val_fraction, t.seed)
    cfg_json = json.loads(cfg.model_dump_json())
    torch.manual_seed(t.seed)
    model = family.build(cfg, data).to(dev)
    optimizer = make_optimizer(model, cfg)
    start, init = _resume_or_init(out, cfg_json, model, optimizer, init_model, ddp, family, t)
    if teacher is not None and start > 0:
        _same_teacher(out, teacher)
    loss = family.loss(cfg) if teacher is None else family.distillation_loss(cfg, teacher.model, data)
    loss_fields = family.loss_fields(cfg)
    wrapped = DistributedDataParallel(LossModule(model, loss)) if ddp.world > 1 else LossModule(model, loss)
    log_rows = _read_log(out / LOG, start) if ddp.main else []
    end = t.max_steps if stop_after is None else min(t.max_steps, start + stop_after)
    model.train()
    # "seconds" is the training time summed over sessions: a resumed run continues the clock
    t0 = time.perf_counter() - (float(log_rows[-1]["seconds"]) if log_rows else 0.0)
    for step in range(start, end):
        sums, grad_norm, lr = _optimiser_step(wrapped, model, optimizer, train_data, cfg, step, ddp, dev, per_rank)
        if ddp.world > 1:  # average the logged numbers over processes
            vec = torch.tensor([sums.get(k, 0.0) for k in loss_fields], dtype=torch.float64)
            dist.all_reduce(vec)
            sums = {k: float(v) / ddp.world for k, v in zip(loss_fields, vec, strict=True)}
        val = None
        if (step + 1) % t.eval_every == 0 or step + 1 == t.max_steps:
            val = validation_loss(model, val_data, cfg, dev, loss) if ddp.main else None
        if ddp.main:
            row = {"step": step, "lr": f"{lr:.6g}", "grad_norm": f"{grad_norm:.4g}", "seconds": f"{time.perf_counter() - t0:.2f}"}
            row |= {k: f"{v:.5f}" for k, v in sums.items()}
            row["val_loss"] = "" if val is None else f"{val:.5f}"
            log_rows.append(row)
            if (step + 1) % t.checkpoint_every == 0 or step + 1 == end:
                save_checkpoint(out / CHECKPOINT, model, optimizer, step + 1, {"config": cfg_json})
                # the model folder follows the checkpoint, so a run in progress can already generate;
                # it is written before the log, so a log that shows a checkpoint has its model folder
                # complete (a kill inside save_model_dir leaves new weights beside the old config,
                # which loading refuses by the checksum until the next checkpoint rewrites both)
                record = run_record(events, events_per_file, data_paths, train_data, val_data, cfg_json, step + 1, log_rows, dev, config_path, family)
                record["tokenizer"] = family.tokenizer
                if init is not None:
                    record["init_from"] = init
                if teacher is not None:
                    record["teacher"] = {"model": str(teacher.path), "weights_sha256": teacher.weights_sha256}
                if len(specs) > 1:
                    record["detector_specs"] = specs
                save_model_dir(out, model, family.name, record)
                _write_log(out / LOG, log_rows, (*LOG_HEAD, *loss_fields, *LOG_TAIL))
            if progress:
                progress(step + 1, t.max_steps, row)
        if ddp.world > 1:
            dist.barrier()
    if ddp.world > 1:
        dist.barrier()
    return out


def _processes(device: str) -> tuple[torch.device, Distributed]:
    """This process's device and its place among the processes of a torchrun job."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HitgenError("--device cuda: no CUDA GPU is available on this machine")
    ddp = Distributed.from_env(dev)
    if ddp.world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev, ddp


def _claim_run_folder(out: Path, cfg_json: dict, ddp: Distributed) -> None:
    """Create the run folder, or check that the run it holds has this configuration."""
    if ddp.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise HitgenError(f"{out}: exists and is not a folder; choose another --out") from None
        except OSError as e:
            raise HitgenError(f"{out}: cannot create the run folder ({e.strerror or e})") from None
        saved_cfg = out / "train_config.json"
        if saved_cfg.exists() and not same_run(json.loads(saved_cfg.read_text()), cfg_json):
            raise HitgenError(f"{out}: holds a run with a different configuration; choose another --out")
        write_text_atomic(saved_cfg, json.dumps(cfg_json, indent=2))
    if ddp.world > 1:
        dist.barrier()


def _teacher(family, cfg: FamilyConfig):
    """The [train] teacher, loaded (a LoadedModel), or None; one line where the family cannot learn from it."""
    if cfg.train.teacher is None:
        return None
    if not hasattr(family, "distillation_loss"):
        raise HitgenError(f"[train] teacher: the {family.name} family has no distillation (leave teacher out)")
    teacher = load_model(cfg.train.teacher)
    if teacher.config["architecture"] != family.name:
        raise HitgenError(f"[train] teacher {cfg.train.teacher}: a {teacher.config['architecture']} model, not {family.name}")
    return teacher


def _same_teacher(out: Path, teacher) -> None:
    """A resumed distillation learns from the teacher it started with (the name may now hold other weights)."""
    path = out / "config.json"
    before = json.loads(path.read_text()).get("teacher", {}).get("weights_sha256") if path.exists() else None
    if before is not None and before != teacher.weights_sha256:
        now = teacher.weights_sha256[:12]
        raise HitgenError(f"{out}: trained from teacher weights {before[:12]}, but {teacher.path} now holds {now}; resume refused")


def _resume_or_init(out: Path, cfg_json: dict, model, optimizer, init_model, ddp: Distributed, family, t: TrainSection) -> tuple[int, dict | None]:
    """Claim the run folder and return the step to start from (the checkpoint's, or 0) and what
    --init did (recorded in every model folder of the run, resumed ones too). A warm start that
    fails leaves no run folder behind."""
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        _claim_run_folder(out, cfg_json, ddp)
        start, _ = load_checkpoint(ckpt, model, optimizer)
        init = json.loads((out / "init.json").read_text()) if (out / "init.json").exists() else None
        return start, init
    init = warm_start(model, init_model, t.train_only, family, t.init_copy, t.init_skip) if init_model is not None else None
    _claim_run_folder(out, cfg_json, ddp)
    if init is not None and ddp.main:
        write_text_atomic(out / "init.json", json.dumps(init, indent=2))
    return 0, init


def _optimiser_step(wrapped, model, optimizer, train_data, cfg: FamilyConfig, step: int, ddp: Distributed, dev, per_rank: int):
    """One optimiser step over the global batch of `step`: this process's micro-batches, gradient
    accumulation, clipping, the scheduled learning rate. Returns the mean loss parts, the gradient
    norm and the learning rate."""
    t = cfg.train
    n_micro = per_rank // t.micro_batch_size
    idx = global_batch(len(train_data), t.batch_size, t.seed, step)
    idx = idx[np.argsort(train_data.length[idx], kind="stable")]  # similar lengths share a micro-batch: less padding
    idx = idx[ddp.rank * per_rank : (ddp.rank + 1) * per_rank]
    sums: dict[str, float] = {}
    for a in range(n_micro):
        torch.manual_seed(dropout_seed(t.seed, step, ddp.rank * n_micro + a))
        batch = {k: v.to(dev) for k, v in train_data.batch(idx[a * t.micro_batch_size : (a + 1) * t.micro_batch_size]).items()}
        sync = wrapped.no_sync() if (ddp.world > 1 and a < n_micro - 1) else nullcontext()
        with sync, _autocast(cfg, dev):
            loss, parts = wrapped(batch)
            (loss / n_micro).backward()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v / n_micro
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip))
    if not math.isfinite(grad_norm) or not math.isfinite(sums.get("loss", 0.0)):
        # the same on every process (the gradients are all-reduced): all stop, nothing is written
        raise HitgenError(
            f"step {step + 1}: the loss ({sums.get('loss', float('nan')):.4g}) or its gradient is not finite; "
            "training stops with the weights of the last checkpoint kept (lower lr or check the data)"
        )
    lr = learning_rate(step, cfg)
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sums, grad_norm, lr


def warm_start(
    model: torch.nn.Module,
    loaded,
    train_only: list[str] | None = None,
    family=None,
    init_copy: dict[str, str] | None = None,
    init_skip: list[str] | None = None,
) -> dict:
    """Copy the weights of a trained model (a LoadedModel) into a new model (see train); returns what
    was done. A parameter that trains (train_only) and has another shape in the new configuration (a
    wider module trained anew on the frozen rest) keeps its initialisation; any other change of shape
    is refused. init_copy starts new parameters from others of the loaded model, init_skip leaves
    parameters (and buffers) under its prefixes at their initialisation (TrainSection). A
    family may refuse the warm start (its `check_warm_start(model, loaded_model)`: e.g. data
    standardised otherwise)."""
    init_from = loaded.path
    if family is not None and hasattr(family, "check_warm_start"):
        family.check_warm_start(model, loaded.model)
    own, theirs = model.state_dict(), loaded.model.state_dict()
    taken = {k: v for k, v in theirs.items() if k in own and not (init_skip and in_prefixes(k, init_skip))}
    resized = [k for k, v in taken.items() if v.shape != own[k].shape and train_only and in_prefixes(k, train_only)]
    taken = {k: v for k, v in taken.items() if k not in resized}
    copied = {}
    for dst, src in (init_copy or {}).items():
        new = {k: src + k[len(dst) :] for k in own if k.startswith(dst) and k not in taken}
        missing = [k for k, s in new.items() if s not in theirs]
        if not new or missing:
            what = f"{missing[0]} has no {new[missing[0]]} there" if missing else f"no new parameter of the configured model starts with {dst!r}"
            raise HitgenError(f"train.init_copy {dst!r} = {src!r}: {what} ({init_from})")
        taken |= {k: theirs[s] for k, s in new.items()}
        copied |= new
    wrong = [k for k, v in taken.items() if v.shape != own[k].shape]
    if wrong:
        raise HitgenError(
            f"--init {init_from}: parameter {wrong[0]} has shape {tuple(taken[wrong[0]].shape)}, the config wants {tuple(own[wrong[0]].shape)}"
        )
    if not taken:
        raise HitgenError(f"--init {init_from}: no parameter in common with the configured model")
    model.load_state_dict(taken, strict=False)
    return {
        "model": str(loaded.path),
        "weights_sha256": loaded.weights_sha256,
        "parameters_copied": len(taken),
        "parameters_new": sorted(set(own) - set(taken)),
        **({"parameters_copied_from": copied} if copied else {}),
    }


def run_record(events, events_per_file, data_paths, train_data, val_data, cfg_json, steps, log_rows, dev, config_path, family=None) -> dict:
    """What config.json records about the data and the training, beside the model itself. The model's
    detector spec is the one it generates for: the training files' own, or what a family's optional
    ``generates_for`` makes of it (a family that trains on a finer readout than it writes)."""
    generates_for = getattr(family, "generates_for", lambda spec: spec)(events.detector_spec)
    return {
        "detector_spec": generates_for,
        **({"training_detector_spec": events.detector_spec} if generates_for != events.detector_spec else {}),
        "training": cfg_json,
        "training_config_file": str(config_path),
        "data": {
            "paths": [str(p) for p in data_paths],
            "events_per_file": events_per_file,
            "producer": events.producer,
            "seeds": events.notes.get("seeds", [events.seed]),
            "n_events": events.n_events,
            "n_train": len(train_data),
            "n_val": len(val_data),
            **_condition_ranges(events),
        },
        "steps": steps,
        "finished": steps == cfg_json["train"]["max_steps"],
        "training_seconds": float(log_rows[-1]["seconds"]) if log_rows else 0.0,
        "machine": machine_description(torch.cuda.get_device_name(dev) if dev.type == "cuda" else None),
    }


def _condition_ranges(events: EventSet) -> dict[str, list[float]]:
    """The ranges of the training events' kinematics (generation flags conditions outside them):
    |p| (momentum), kinetic energy (energy), polar angle to +z (direction), where the detector has them."""
    return {key: [float(v.min()), float(v.max())] for key, v in condition_quantities(events.conditions).items()}
