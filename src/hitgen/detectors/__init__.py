"""Detectors: one package each (``hitgen.detectors.<name>``), found by the registry below.

A detector package exposes ``DETECTOR``, an object with the attributes and methods of the
``Detector`` protocol (``hitgen.detectors.base``). Shared machinery asks the registry for a detector
by the name an event file or a model records, and uses only the protocol.
"""

from __future__ import annotations

from hitgen.core.registry import Registry
from hitgen.detectors.base import Detector, Geant4Setup, Option, Table

REGISTRY: Registry[Detector] = Registry("hitgen.detectors", "DETECTOR", "detector")


def get_detector(name: str) -> Detector:
    """The detector called ``name``; one clear error listing the known ones otherwise."""
    return REGISTRY.get(name)


def register_detector(detector: Detector, replace: bool = False) -> Detector:
    return REGISTRY.register(detector, replace)


__all__ = ["REGISTRY", "Detector", "Geant4Setup", "Option", "Table", "get_detector", "register_detector"]
