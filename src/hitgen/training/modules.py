"""Growing a model by modules: `hitgen extend BASE --add NAME --data F.h5 --out OUT --config TRAIN.toml`.

For a family with the `module_of(model_config, add, replace, options)` hook (calo-moe: an expert of a new (particle,
material), a new particle's LoRA adapter and heads, or a total-energy module), which says which parameters the module `add`
holds (name prefixes, `*` wildcards allowed) and how the model config grows; it may also name
settings of the [loss] the module trains by (`training_loss`: calo-moe's total-energy modules, total_only);
`options` is the extension config's [module] table (calo-moe: `total_shape = true`).

mode "module" (the default) trains only the module's parameters, everything else frozen (the
trainer's `train_only`). The model folder OUT then holds the base's weights unchanged
(model.safetensors, the same bytes and checksum) and the base's modules and the new one as files of
their own (modules/<name>.safetensors), each with its checksum and the checksum of the backbone it was
trained on; `load_model` composes them and refuses a module trained on another backbone.

mode "full": the same model and data, every parameter trained (full fine-tuning, the comparison that
shows forgetting); OUT is then a plain model folder.

The training itself is hitgen's trainer (checkpoints, exact resume: the same command continues an
interrupted run), in OUT/run, with the [train] table of the given config and the base's model
settings. `--events N --draw K` trains on N events drawn (seeded by K) from the given files, to
measure how the result depends on the sample size and on the draw. `--replace` trains a module the
base has anew, in its place (calo-moe: a total-energy module, on which nothing else depends).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from hitgen.core.atomic import atomic_path, write_text_atomic
from hitgen.core.config import TrainSection
from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors import read_events
from hitgen.models.io import load_model, sha256_of
from hitgen.training.config import validate_config
from hitgen.training.trainer import in_prefixes, train

MODES = ("module", "full")


def _extension_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The [train] table of an extension config and its optional [module] table (settings of the
    module itself, which the family's module_of reads)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HitgenError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise HitgenError(f"{path}: not valid TOML ({e})") from None
    extra = sorted(set(raw) - {"train", "module"})
    if extra:
        raise HitgenError(f"{path}: an extension config has a [train] and a [module] table only (the model is the base's), not [{extra[0]}]")
    try:
        return TrainSection.model_validate(raw.get("train", {})).model_dump(), dict(raw.get("module", {}))
    except ValueError as e:
        raise HitgenError(f"{path}: train: {str(e).splitlines()[-1].strip()}") from None


def _drawn(paths: list[Path], n: int, draw: int, folder: Path) -> list[Path]:
    """N showers drawn without replacement (seeded by `draw`) from the files, written once into folder."""
    target = folder / f"showers_{n}_draw{draw}.h5"
    if target.exists():
        return [target]
    events = EventSet.concatenate([read_events(p) for p in paths])
    if n > events.n_events:
        raise HitgenError(f"--events {n}: the data hold only {events.n_events} showers")
    idx = np.sort(np.random.default_rng([draw, 21]).choice(events.n_events, n, replace=False))
    chosen = events.select(idx)
    chosen.notes = {"drawn_from": [str(p) for p in paths], "events": n, "draw": draw, "seeds": events.notes.get("seeds", [events.seed])}
    folder.mkdir(parents=True, exist_ok=True)
    chosen.write(target)
    return [target]


def extend(
    base_ref: str,
    add: str,
    data: list[Path],
    out: Path,
    config: Path,
    mode: str = "module",
    events: int | None = None,
    draw: int = 0,
    stop_after: int | None = None,
    progress=None,
    replace: bool = False,
) -> Path:
    """Train the module `add` on `data` over the base model; returns the model folder `out` (or the
    run folder while the training is unfinished). `replace`: the base's module of that name is trained
    anew and takes its place (the family says which modules may be: those nothing else depends on)."""
    if mode not in MODES:
        raise HitgenError(f"unknown --mode '{mode}' (known: {', '.join(MODES)})")
    base = load_model(base_ref)
    module_of = getattr(base.family, "module_of", None)
    if module_of is None:
        raise HitgenError(f"{base.path}: a {base.config['architecture']} model does not grow by modules")
    train_table, options = _extension_config(config)
    plan = module_of(base.config["model"], add, replace, options)  # the family refuses what it cannot add, in one line
    prefixes, grown = plan["prefixes"], plan["model"]
    if events is not None and events < 1:
        raise HitgenError(f"--events must be positive (got {events})")
    out = Path(out)
    if (out / "config.json").exists():
        raise HitgenError(f"{out}: already holds a model; choose another --out")
    run = out / "run"
    paths = _drawn(data, events, draw, run) if events is not None else [Path(p) for p in data]
    trained = base.config["training"]
    model = trained["model"] | plan["training_model"]
    train_table["train_only"] = prefixes if mode == "module" else []
    if replace:  # trained anew: nothing of the module it replaces is copied (its weights, its data's statistics)
        train_table["init_skip"] = prefixes
    loss = trained.get("loss", {}) | plan.get("training_loss", {})  # e.g. a module trained by a loss of its own
    cfg = validate_config({"model": model, "loss": loss, "train": train_table}, "the extension config")
    train(cfg, paths, run, progress=progress, stop_after=stop_after, init_from=str(base.path))
    record = json.loads((run / "config.json").read_text())
    if not record.get("finished"):
        return run
    if mode == "full":
        return _plain_folder(run, out)
    return _compose(base, add, prefixes, grown, run, record, out)


def _plain_folder(run: Path, out: Path) -> Path:
    for name in ("model.safetensors", "config.json"):
        with atomic_path(out / name) as tmp:
            shutil.copyfile(run / name, tmp)
    return out


def _compose(base, add: str, prefixes: list[str], grown: dict[str, Any], run: Path, record: dict, out: Path) -> Path:
    """OUT: the base's weights, the base's modules (but the one replaced), the new module file, and config.json last."""
    state = load_file(str(run / "model.safetensors"))
    base_state = base.model.state_dict()
    for name, tensor in base_state.items():  # the frozen part must be the base's, bit for bit
        if not in_prefixes(name, prefixes) and not bool((state[name] == tensor).all()):
            raise HitgenError(f"{run}: parameter {name} changed in training; the base was not frozen")
    modules_dir = out / "modules"
    modules_dir.mkdir(parents=True, exist_ok=True)
    backbone_sha = base.config["weights_sha256"]
    entries = []
    for m in base.config.get("modules") or []:
        if m["name"] == add:  # the module replaced (module_of refuses a name the base has, but with --replace)
            continue
        with atomic_path(modules_dir / Path(m["file"]).name) as tmp:
            shutil.copyfile(base.path / m["file"], tmp)
        entries.append(m)
    file = modules_dir / f"{add}.safetensors"
    tensors = {k: v.contiguous() for k, v in state.items() if in_prefixes(k, prefixes)}
    with atomic_path(file) as tmp:
        save_file(tensors, str(tmp))
    entries.append(
        {
            "name": add,
            "file": f"modules/{file.name}",
            "sha256": sha256_of(file),
            "backbone_sha256": backbone_sha,
            "parameters": int(sum(t.numel() for t in tensors.values())),
            "prefixes": prefixes,
            "data": record["data"],
            "steps": record["steps"],
            "training_seconds": record["training_seconds"],
            "train": record["training"]["train"],
            "machine": record["machine"],
        }
    )
    with atomic_path(out / "model.safetensors") as tmp:
        shutil.copyfile(base.path / "model.safetensors", tmp)
    config = dict(base.config)
    config["model"] = grown
    config["modules"] = entries
    specs = base.config.get("detector_specs") or [base.config["detector_spec"]]
    new_spec = record["detector_spec"]
    if all(s != new_spec for s in specs):
        specs = [*specs, new_spec]
    config["detector_specs"] = specs
    write_text_atomic(out / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return out
