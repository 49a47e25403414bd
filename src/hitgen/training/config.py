"""Training configuration: one TOML file with [model], [loss] and [train] tables, validated.

The config is a pydantic discriminated union over the registered model families, keyed by
``[model] architecture``: each family brings its own [model] and [loss] fields (``Family.config_type``,
built on ``FamilyConfig``); [train] is the trainer's and the same for all.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from hitgen.core.config import FamilyConfig, NoLoss, Strict, TrainSection, TrunkSection
from hitgen.core.errors import HitgenError

__all__ = ["FamilyConfig", "NoLoss", "Strict", "TrainSection", "TrunkSection", "load_config", "same_run", "validate_config"]


def _architecture(value: Any) -> str | None:
    if isinstance(value, dict):
        model = value.get("model")
        return model.get("architecture") if isinstance(model, dict) else None
    return getattr(getattr(value, "model", None), "architecture", None)


def config_adapter() -> TypeAdapter:
    """The discriminated union of every registered family's config (built anew: families may be added)."""
    from hitgen.families import REGISTRY

    members = tuple(Annotated[f.config_type, Tag(f.name)] for f in REGISTRY)
    return TypeAdapter(Annotated[Union[members], Discriminator(_architecture)])  # noqa: UP007


def validate_config(data: Any, where: str = "config") -> FamilyConfig:
    """A family's config from a parsed TOML (or JSON) mapping; HitgenError saying what is wrong."""
    from hitgen.families import REGISTRY

    if not isinstance(data, dict):
        raise HitgenError(f"{where}: not a table of [model], [loss] and [train]")
    known = ", ".join(REGISTRY.names())
    arch = _architecture(data)
    if arch is None:
        raise HitgenError(f"{where}: model.architecture: missing; give one of {known}")
    if arch not in REGISTRY:
        raise HitgenError(f"{where}: model.architecture: unknown family {arch!r}; known: {known}")
    try:
        return config_adapter().validate_python(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == arch:  # the union's tag comes first in the location
            loc = loc[1:]
        raise HitgenError(f"{where}: {'.'.join(loc)}: {first['msg']}") from None


def load_config(path: str | Path) -> FamilyConfig:
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HitgenError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise HitgenError(f"{path}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise HitgenError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as e:
        raise HitgenError(f"{path}: not valid TOML ({e})") from None
    return validate_config(data, str(path))


def same_run(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a run folder's saved config is this config: every field of the current config has
    the saved value. Fields the saved one has beyond them (a config written when every family's
    config was one flat union) are not compared."""
    for section, fields in current.items():
        old = saved.get(section)
        if not isinstance(old, dict) or any(k not in old or old[k] != v for k, v in fields.items()):
            return False
    return True
