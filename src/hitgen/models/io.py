"""Model folders: config.json + model.safetensors (+ README.md, metrics.json). Never pickle.

config.json records the model configuration, the tokenizer, the detector spec, the training
configuration and data, and the SHA-256 of model.safetensors; loading checks that checksum, so a
missing, truncated or altered weights file is refused with one clear line.

A model that grows by modules (the calo-moe family) keeps its base's model.safetensors unchanged
and each added module in a file of its own (config.json "modules": name, file, sha256, and the
checksum of the backbone it was trained on); loading composes them, checking every checksum, that
each module was trained on this backbone, and that no module replaces a parameter.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hitgen.core.atomic import atomic_path, write_text_atomic
from hitgen.core.errors import HitgenError
from hitgen.detectors import check_spec
from hitgen.families import REGISTRY as FAMILIES

FORMAT = "hitgen-model"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("architecture", "model", "weights_sha256", "detector_spec")

# the shipped models: package data of hitgen (src/hitgen/shipped links to the checkout's models/;
# a wheel carries the folders themselves)
SHIPPED = Path(str(resources.files("hitgen") / "shipped"))


@dataclass
class LoadedModel:
    model: torch.nn.Module
    config: dict[str, Any]
    path: Path

    @property
    def family(self):
        """The model family (hitgen.families) that builds and samples this model."""
        return FAMILIES.get(self.config["architecture"])

    @property
    def detector(self) -> str:
        return self.config["detector_spec"]["name"]

    @property
    def weights_sha256(self) -> str:
        """The identity of the weights: model.safetensors's checksum; for a model composed of a base and
        module files (config "modules"), the checksum of all their checksums in order."""
        modules = self.config.get("modules") or []
        if not modules:
            return self.config["weights_sha256"]
        return hashlib.sha256(" ".join([self.config["weights_sha256"], *(m["sha256"] for m in modules)]).encode()).hexdigest()

    @property
    def producer(self) -> str:
        return f"hitgen model {self.path.name} ({self.config['architecture']}, weights sha256 {self.weights_sha256[:12]})"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model_dir(folder: Path, model: torch.nn.Module, architecture: str, extra: dict[str, Any]) -> Path:
    """Write model.safetensors and config.json into folder (each atomically); `model.cfg.to_dict()`
    is the configuration its family rebuilds it from."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "model": model.cfg.to_dict(),
        "weights_sha256": sha256_of(weights),
        **extra,
    }
    write_text_atomic(folder / "config.json", json.dumps(config, indent=2, sort_keys=True))
    return folder


def resolve(name_or_path: str | Path) -> Path:
    """A run/model folder, or the name of a shipped model under models/."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    shipped = SHIPPED / str(name_or_path)
    if not p.exists() and shipped.is_dir() and "/" not in str(name_or_path):
        return shipped
    known = sorted(d.name for d in SHIPPED.iterdir() if (d / "config.json").exists()) if SHIPPED.is_dir() else []
    raise HitgenError(f"no model folder or shipped model named '{name_or_path}' (shipped: {', '.join(known) or 'none'})")


def _finite_numbers(d: Any, where: str) -> None:
    """Every number of a configuration is finite (JSON admits NaN and Infinity; a model does not)."""
    if isinstance(d, dict):
        for k, v in d.items():
            _finite_numbers(v, f"{where}.{k}")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            _finite_numbers(v, f"{where}[{i}]")
    elif isinstance(d, float) and not math.isfinite(d):
        raise HitgenError(f"{where} is {d}: not a finite number")


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in `path` (a model folder's config, an export's manifest); one error line if
    the file is not JSON or holds something other than an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise HitgenError(f"{path}: not valid JSON") from None
    if not isinstance(value, dict):
        raise HitgenError(f"{path}: not a {what} (a JSON {type(value).__name__}, not an object)")
    return value


def _module_state(folder: Path, module: Any, config: dict[str, Any], state: dict, device) -> dict[str, torch.Tensor]:
    """The tensors of one module file of a composed model folder, checked: its checksum, the backbone it
    was trained on (the folder's model.safetensors), and that it adds parameters without replacing any."""
    if not isinstance(module, dict) or not {"name", "file", "sha256", "backbone_sha256"} <= set(module):
        raise HitgenError(f"{folder}/config.json: a module entry needs name, file, sha256 and backbone_sha256")
    name, rel = str(module["name"]), Path(str(module["file"]))
    path = folder / rel
    if rel.is_absolute() or ".." in rel.parts or not path.is_file():
        raise HitgenError(f"{folder}: module {name}: no file {rel} inside the model folder")
    if module["backbone_sha256"] != config["weights_sha256"]:
        raise HitgenError(
            f"{path}: module {name} was trained on backbone {str(module['backbone_sha256'])[:12]}, "
            f"but this model's backbone is {config['weights_sha256'][:12]}"
        )
    if sha256_of(path) != module["sha256"]:
        raise HitgenError(f"{path}: checksum differs from config.json; module {name} was altered or is incomplete")
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise HitgenError(f"{path}: unreadable ({e})") from None
    clash = sorted(set(tensors) & set(state))
    if clash:
        raise HitgenError(f"{path}: module {name} would replace parameter {clash[0]} of the backbone or of another module")
    return tensors


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    folder = resolve(name_or_path)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise HitgenError(f"{folder}: missing {p.name}; not a complete model folder")
    config = read_json_object(cfg_path, "hitgen model config")
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise HitgenError(f"{cfg_path}: not a hitgen model config (format {config.get('format')!r}, version {config.get('format_version')!r})")
    if config.get("architecture") not in FAMILIES:
        raise HitgenError(f"{cfg_path}: unknown architecture {config.get('architecture')!r} (known: {', '.join(FAMILIES.names())})")
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise HitgenError(f"{cfg_path}: lacks {', '.join(missing)}; not a complete hitgen model config")
    if not isinstance(config["model"], dict) or not isinstance(config["detector_spec"], dict):
        raise HitgenError(f"{cfg_path}: its model and detector_spec entries must be JSON objects")
    _finite_numbers(config["model"], f"{cfg_path}: model")
    detector = check_spec(config["detector_spec"], str(cfg_path))
    family = FAMILIES.get(config["architecture"])
    if family.detector != detector.name:
        raise HitgenError(f"{cfg_path}: a {family.name} model is of {family.detector}, but its detector spec is {detector.name}")
    if sha256_of(weights) != config.get("weights_sha256"):
        raise HitgenError(f"{weights}: checksum differs from config.json; the weights were altered or are incomplete")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as e:
        raise HitgenError(f"{weights}: unreadable ({e})") from None
    try:
        model = family.model_from_config(config["model"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise HitgenError(f"{cfg_path}: model configuration does not fit {config['architecture']} ({e})") from None
    for module in config.get("modules") or []:
        state.update(_module_state(folder, module, config, state, device))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise HitgenError(f"{weights}: does not match the configured model ({str(e).splitlines()[0]})") from None
    return LoadedModel(model.to(device).eval(), config, folder)
