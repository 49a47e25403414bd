"""Model families: one package each (``hitgen.families.<name>``), found by the registry below.

A family package exposes ``FAMILY``, an object with the attributes and methods of the ``Family``
protocol (``hitgen.families.base``). Shared machinery asks the registry for the family a config or
a model folder names (its ``architecture``) and uses only the protocol.
"""

from __future__ import annotations

from hitgen.core.registry import Registry
from hitgen.families.base import Family, SamplingOptions, TrainingData

REGISTRY: Registry[Family] = Registry("hitgen.families", "FAMILY", "model family")


def get_family(name: str) -> Family:
    """The family called ``name``; one clear error listing the known ones otherwise."""
    return REGISTRY.get(name)


def register_family(family: Family, replace: bool = False) -> Family:
    return REGISTRY.register(family, replace)


__all__ = ["REGISTRY", "Family", "SamplingOptions", "TrainingData", "get_family", "register_family"]
