"""What a detector provides to the shared machinery (the ``Detector`` protocol) and its small parts."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.core.fields import DetectorInfo
from hitgen.core.physics import DEFAULT_PHYSICS, PhysicsSettings

# (title, column names, rows of strings): how a detector's tables reach the CLI, a report or a card
Table = tuple[str, list[str], list[list[str]]]


@dataclass(frozen=True)
class Option:
    """A detector's own option of ``hitgen simulate`` (and of ``generate`` where it samples conditions).

    kind: "range" (LO:HI), "positive-range" (0 < LO < HI), "range-or-all" (LO:HI or 'all' -> None),
    "number" (one finite number, inside ``limits`` where given), or "choice" (one of ``choices``).

    A ``setting`` configures the simulated detector itself (a material, a field) instead of sampling
    conditions: `hitgen simulate` hands it to the Geant4 construction and writes it into the file's
    detector spec under its name, and it applies with --conditions as well (where it defaults to
    the value that file's spec records). Its default is the value of the detector's ``info.extra``.
    A detector whose spec follows its settings (a layout with its own geometry) may define
    ``configure_spec(spec, given) -> spec``, called with the settings given explicitly.
    """

    name: str  # keyword of sample_conditions; the command line spells it --name-with-dashes
    kind: str
    help: str
    choices: tuple[str, ...] = ()
    limits: tuple[float, float] | None = None  # a range must lie inside these (what the detector can simulate)
    setting: bool = False  # a setting of the detector (see above), not a condition sampler

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        if self.kind == "choice":
            if self.choices and text not in self.choices:
                raise HitgenError(f"unknown {self.name.replace('_', ' ')} '{text}' for {self.flag} (known: {', '.join(self.choices)})")
            return text
        if self.kind == "range-or-all" and text == "all":
            return None
        if self.kind == "number":
            try:
                value = float(text)
            except ValueError:
                raise HitgenError(f"malformed {self.flag} '{text}': expected a number") from None
            if not math.isfinite(value):
                raise HitgenError(f"malformed {self.flag} '{text}': expected a finite number")
            if self.limits is not None and not self.limits[0] <= value <= self.limits[1]:
                raise HitgenError(f"{self.flag} {text}: outside what the detector takes ({self.limits[0]:g} to {self.limits[1]:g})")
            return value
        lo, hi = parse_range(text, self.flag, positive=self.kind == "positive-range")
        if self.limits is not None and (lo < self.limits[0] or hi > self.limits[1]):
            raise HitgenError(f"{self.flag} {text}: outside what the detector takes ({self.limits[0]:g} to {self.limits[1]:g})")
        return lo, hi


def parse_range(text: str, option: str, positive: bool = True) -> tuple[float, float]:
    """'LO:HI' -> (lo, hi) with lo < hi (and lo > 0 if positive); HitgenError otherwise."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise HitgenError(f"malformed {option} '{text}': expected LO:HI, e.g. 0.5:10") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi) or (positive and lo <= 0):
        bound = "0 < LO < HI" if positive else "LO < HI"
        raise HitgenError(f"malformed {option} '{text}': need {bound}")
    return lo, hi


@dataclass(frozen=True)
class Geant4Setup:
    """What the Geant4 runner needs: where to find the geometry and the recorder (imported inside
    the worker processes only), and how to digitise the recorder's output."""

    construction: str  # "module:function" building the G4VUserDetectorConstruction
    recorder: str  # "module:class" of the per-event recorder (hitgen.simulation.session.Recorder)
    # (conditions, raw recorder output, rng) -> (offsets, hits, truth)
    digitize: Callable[[dict[str, np.ndarray], Any, np.random.Generator], tuple[np.ndarray, dict, dict]]
    decays: bool = False  # register G4DecayPhysics next to the EM physics
    primary_only: bool = False  # kill secondaries at birth (the detector records the primary only)
    # the detector's default physics settings (EM constructor, msc step limitation and range factor,
    # range cut); `hitgen simulate` may change each, and the file records what ran
    physics: PhysicsSettings = DEFAULT_PHYSICS
    # conditions -> (pdg (n,), momentum (n, 3) GeV, vertex (n, 3) mm or None) of the primaries;
    # None: the conditions hold them as "pdg", "momentum" and, optionally, "vertex"
    primaries: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = None


@dataclass(frozen=True)
class FileFormat:
    """A foreign file format a detector reads (`hitgen import FILE --format NAME`) or writes (`hitgen
    export EVENTS.h5 --format NAME`); a detector lists its own in ``formats`` (optional, default none).

    ``read(path)`` returns the events of a foreign file (checked by the caller against the detector);
    ``write(events, path)`` writes the events of one of the detector's files to ``path``, which the
    caller names: a temporary name renamed into place once the writer returns. Both raise HitgenError
    on bad input, and return (``write``) or put in the events' notes (``read``) what the user should
    know about what the format could not hold.
    """

    name: str
    help: str
    read: Callable[[Path], EventSet] | None = None
    write: Callable[[EventSet, Path], str] | None = None


class PackageParts:
    """The Detector protocol's info and evaluation methods of a detector package whose ``info`` module
    defines info_tables and info_plots and whose ``evaluation`` module defines evaluate,
    summary_tables and render_report, imported when first called (so that simulate does not load
    matplotlib or scikit-learn). A detector class sets ``package`` to its package's name."""

    package: str

    def _part(self, module: str, name: str) -> Callable:
        return getattr(importlib.import_module(f"{self.package}.{module}"), name)

    def info_tables(self, events: EventSet) -> list[Table]:
        return self._part("info", "info_tables")(events)

    def info_plots(self, events: EventSet, folder: Path) -> list[Path]:
        return self._part("info", "info_plots")(events, folder)

    def evaluate(
        self, ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
        return self._part("evaluation", "evaluate")(ref, cand, out, plots, replica)

    def summary_tables(self, metrics: dict[str, Any]) -> list[Table]:
        return self._part("evaluation", "summary_tables")(metrics)

    def render_report(self, metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
        return self._part("evaluation", "render_report")(metrics, figures, path)


@runtime_checkable
class Detector(Protocol):
    """Everything the shared machinery knows about a detector."""

    name: str
    info: DetectorInfo  # hit and condition fields, the spec written into every event file
    options: tuple[Option, ...]  # its options of `hitgen simulate`
    generation_options: tuple[str, ...]  # those that sample conditions for `hitgen generate` (none: a file is needed)
    bench_options: dict[str, Any]  # the conditions `hitgen bench` times Geant4 and the models on

    def sample_conditions(self, n: int, rng: np.random.Generator, **options: Any) -> dict[str, np.ndarray]: ...

    def geant4(self) -> Geant4Setup:
        """The Geant4 description; only its modules import geant4_pybind, and only when simulating."""
        ...

    def info_tables(self, events: EventSet) -> list[Table]:
        """The tables `hitgen info` prints beside the sizes and the hits per event."""
        ...

    def info_plots(self, events: EventSet, folder: Path) -> list[Path]: ...

    def evaluate(
        self, ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
        """The detector's part of metrics.json and the figures (caption, path). Its ``noise_floor``
        holds the same metrics for the reference against its replica (Geant4 at the same conditions,
        another seed) where one is given (``kind`` "replica"), else between two halves of the
        reference (``kind`` "halves")."""
        ...

    def summary_tables(self, metrics: dict[str, Any]) -> list[Table]:
        """The headline tables of an evaluation, for the CLI and the model card."""
        ...

    def render_report(self, metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path: ...
