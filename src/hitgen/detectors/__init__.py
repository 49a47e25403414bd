"""Detectors: one package each (``hitgen.detectors.<name>``), found by the registry below.

A detector package exposes ``DETECTOR``, an object with the attributes and methods of the
``Detector`` protocol (``hitgen.detectors.base``). Shared machinery asks the registry for a detector
by the name an event file or a model records, and uses only the protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hitgen.core.errors import EventFileError, HitgenError
from hitgen.core.events import EventSet, read_header
from hitgen.core.registry import Registry
from hitgen.detectors.base import Detector, FileFormat, Geant4Setup, Option, Table

REGISTRY: Registry[Detector] = Registry("hitgen.detectors", "DETECTOR", "detector")


def get_detector(name: str) -> Detector:
    """The detector called ``name``; one clear error listing the known ones otherwise."""
    return REGISTRY.get(name)


def register_detector(detector: Detector, replace: bool = False) -> Detector:
    return REGISTRY.register(detector, replace)


def _fields(spec: dict, key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    fields = spec.get(key)
    if not isinstance(fields, dict):
        return {}
    return {n: (str(np.dtype(f.get("dtype"))), tuple(f.get("shape", ()))) for n, f in fields.items() if isinstance(f, dict)}


def check_spec(spec: dict, where: str) -> Detector:
    """The registered detector a spec (of an event file or a model folder) names, after checking
    that the spec declares that detector's own hit and condition fields."""
    if not isinstance(spec, dict):
        raise HitgenError(f"{where}: its detector spec is not a JSON object")
    detector = get_detector(spec.get("name"))
    own = detector.info.spec()
    try:
        for key in ("hit_fields", "conditions"):
            if _fields(spec, key) != _fields(own, key):
                raise HitgenError(f"{where}: its {key.replace('_', ' ')} {_fields(spec, key)} are not those of {detector.name} {_fields(own, key)}")
    except TypeError:
        raise HitgenError(f"{where}: its detector spec has malformed fields") from None
    return detector


def value_problems(detector: Detector, conditions: dict[str, np.ndarray], hits: dict[str, np.ndarray], spec: dict | None = None) -> list[str]:
    """Every value outside its field's range, and what the detector's own check_events finds (given
    the file's spec, the ranges its settings set, such as a layout's number of cells)."""
    problems = detector.info.problems(conditions, hits)
    return problems + getattr(detector, "check_events", lambda c, h, s=None: [])(conditions, hits, spec)


def check_events(events: EventSet, where: str) -> Detector:
    """The events' detector, after checking their spec and that every value lies in its field's range."""
    detector = check_spec(events.detector_spec, where)
    problems = value_problems(detector, events.conditions, events.hits, events.detector_spec)
    if problems:
        raise EventFileError(f"{where}: " + "; ".join(problems))
    return detector


def check_conditions_file(path: str | Path, detector_name: str) -> int:
    """The number of events of an event file whose conditions are to be used for detector_name
    (by simulate --conditions or generate --conditions), after checking its header and spec."""
    _, spec, n = read_header(path)
    if spec.get("name") != detector_name:
        raise HitgenError(f"{path}: conditions of detector {spec.get('name')}, but {detector_name} is asked for")
    check_spec(spec, str(path))
    if n == 0:
        raise HitgenError(f"{path}: holds no events")
    return n


def read_events(path: str | Path) -> EventSet:
    """An event file, read (hitgen.core.events) and checked against its registered detector."""
    events = EventSet.read(path)
    check_events(events, str(path))
    return events


def formats_of(detector: Detector) -> dict[str, FileFormat]:
    """The foreign file formats a detector reads or writes (its optional ``formats``), by name."""
    return {f.name: f for f in getattr(detector, "formats", ())}


def reader_of(format_name: str, detector_name: str | None = None) -> tuple[Detector, FileFormat]:
    """The detector and format that read ``format_name`` files: the one detector offering it, or the
    named one; one clear error listing what is known otherwise."""
    offering = [(d, f) for d in REGISTRY for f in formats_of(d).values() if f.name == format_name and f.read is not None]
    if detector_name is not None:
        offering = [(d, f) for d, f in offering if d.name == get_detector(detector_name).name]
    if len(offering) == 1:
        return offering[0]
    known = sorted({f"{f.name} ({d.name})" for d in REGISTRY for f in formats_of(d).values() if f.read is not None})
    if not offering:
        where = f" for detector {detector_name}" if detector_name else ""
        raise HitgenError(f"unknown import --format '{format_name}'{where} (known: {', '.join(known) or 'none'})")
    names = ", ".join(d.name for d, _ in offering)
    raise HitgenError(f"--format {format_name} is read by several detectors ({names}): choose one with --detector")


def writer_of(detector: Detector, format_name: str) -> FileFormat:
    """The format of ``detector`` that writes ``format_name`` files; one clear error otherwise."""
    fmt = formats_of(detector).get(format_name)
    if fmt is None or fmt.write is None:
        known = [f.name for f in formats_of(detector).values() if f.write is not None]
        raise HitgenError(f"{detector.name} event files cannot be exported as '{format_name}' (their formats: {', '.join(known) or 'none'})")
    return fmt


__all__ = [
    "REGISTRY",
    "Detector",
    "FileFormat",
    "Geant4Setup",
    "Option",
    "Table",
    "check_conditions_file",
    "check_events",
    "check_spec",
    "formats_of",
    "get_detector",
    "read_events",
    "reader_of",
    "register_detector",
    "value_problems",
    "writer_of",
    "",
]
