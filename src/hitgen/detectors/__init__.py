"""Detectors hitgen knows: geometry constants, readout fields, digitisation (no Geant4 here)."""

from __future__ import annotations

from hitgen.detectors import clas12_ecal, odd_tracker
from hitgen.detectors.base import DetectorInfo, FieldSpec
from hitgen.errors import UnknownDetectorError

DETECTORS: dict[str, DetectorInfo] = {clas12_ecal.NAME: clas12_ecal.INFO, odd_tracker.NAME: odd_tracker.INFO}


def get_detector(name: str) -> DetectorInfo:
    """The detector called `name`; raises UnknownDetectorError listing the known ones."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise UnknownDetectorError(f"unknown detector '{name}'; known detectors: {', '.join(DETECTORS)}") from None


__all__ = ["DETECTORS", "DetectorInfo", "FieldSpec", "get_detector"]
