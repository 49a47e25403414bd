"""Model folders: config.json + model.safetensors (+ README.md, metrics.json). Never pickle.

config.json records the model configuration, the tokenizer, the detector spec, the training
configuration and data, and the SHA-256 of model.safetensors; loading checks that checksum, so a
missing, truncated or altered weights file is refused with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from hitgen.errors import HitgenError
from hitgen.models.gpt import GPTConfig, HitGPT
from hitgen.models.siliconai import SiliconAI, SiliconAIConfig
from hitgen.models.track_gpt import TrackGPT, TrackGPTConfig

FORMAT = "hitgen-model"
FORMAT_VERSION = 1
ARCHITECTURE = "clas12-gpt"  # the CLAS12 GPT (HitGPT)
# architecture name -> (config class, model class); a model folder names its architecture
ARCHITECTURES: dict[str, tuple[type, type]] = {
    ARCHITECTURE: (GPTConfig, HitGPT),
    "track-gpt": (TrackGPTConfig, TrackGPT),
    "siliconai": (SiliconAIConfig, SiliconAI),
}


def architecture_of(model: torch.nn.Module) -> str:
    return next(name for name, (_, cls) in ARCHITECTURES.items() if isinstance(model, cls))


SHIPPED = Path(__file__).resolve().parents[3] / "models"  # models/<name>/ in a source checkout


@dataclass
class LoadedModel:
    model: HitGPT | TrackGPT | SiliconAI
    config: dict[str, Any]
    path: Path

    @property
    def weights_sha256(self) -> str:
        return self.config["weights_sha256"]

    @property
    def producer(self) -> str:
        return f"hitgen model {self.path.name} ({self.config['architecture']}, weights sha256 {self.weights_sha256[:12]})"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model_dir(folder: Path, model: HitGPT | TrackGPT | SiliconAI, extra: dict[str, Any]) -> Path:
    """Write model.safetensors and config.json into folder (each atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    tmp = folder / ".model.safetensors.partial"
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, weights)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture_of(model),
        "model": model.cfg.to_dict(),
        "weights_sha256": sha256_of(weights),
        **extra,
    }
    tmp = folder / ".config.json.partial"
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / "config.json")
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


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    folder = resolve(name_or_path)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise HitgenError(f"{folder}: missing {p.name}; not a complete model folder")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError:
        raise HitgenError(f"{cfg_path}: not valid JSON") from None
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise HitgenError(f"{cfg_path}: not a hitgen model config (format {config.get('format')!r}, version {config.get('format_version')!r})")
    if config.get("architecture") not in ARCHITECTURES:
        raise HitgenError(f"{cfg_path}: unknown architecture {config.get('architecture')!r} (known: {', '.join(ARCHITECTURES)})")
    if sha256_of(weights) != config.get("weights_sha256"):
        raise HitgenError(f"{weights}: checksum differs from config.json; the weights were altered or are incomplete")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as e:
        raise HitgenError(f"{weights}: unreadable ({e})") from None
    config_class, model_class = ARCHITECTURES[config["architecture"]]
    try:
        model = model_class(config_class.from_dict(config["model"]))
    except TypeError as e:
        raise HitgenError(f"{cfg_path}: model configuration does not fit {config['architecture']} ({e})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise HitgenError(f"{weights}: does not match the configured model ({str(e).splitlines()[0]})") from None
    return LoadedModel(model.to(device).eval(), config, folder)
