"""`odd-tracker`: the barrel of the Open Data Detector's silicon tracker (geometry, Geant4, track
reconstruction, evaluation, ACTS import). The geometry module's names are re-exported here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.events import EventSet
from hitgen.detectors.base import Geant4Setup, Option, PackageParts
from hitgen.detectors.odd_tracker.geometry import *  # noqa: F403
from hitgen.detectors.odd_tracker.geometry import (
    INFO,
    MAX_ETA,
    MAX_PT_GEV,
    NAME,
    PARTICLES,
    cached_modules,
    hits_from_steps,
    module_index,
    sample_conditions,
)


def _digitize(conditions: dict[str, np.ndarray], raw, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Geant4 hits are the event file's hits (the digitisation into pixels and strips belongs to
    the reconstruction, which compares Geant4 and the model on equal terms)."""
    c = raw.columns
    position = np.stack([c["x"], c["y"], c["z"]], axis=1)
    momentum = np.stack([c["px"], c["py"], c["pz"]], axis=1)
    return raw.offsets, hits_from_steps(cached_modules(), c["module"], position, momentum), {}


class OddTracker(PackageParts):
    package = __name__
    name = NAME
    info = INFO
    options = (
        Option("particle", "choice", "mu-, mu+, mu+- (either charge), e- or pi+ (default mu-)", (*PARTICLES, "mu+-")),
        Option("pt_range", "positive-range", "pT range in GeV, LO:HI (default 80:85)", limits=(0.0, MAX_PT_GEV)),
        Option("eta_range", "range", "eta range, LO:HI (default 0.05:0.1); within the barrel's acceptance", limits=(-MAX_ETA, MAX_ETA)),
        Option("phi_range", "range-or-all", "phi range in rad, LO:HI, or 'all' (default 0:0.1)"),
    )
    generation_options: tuple[str, ...] = ()  # a track model generates for the conditions of an event file
    # the phi-inclusive muons of both charges the shipped track model is trained on
    bench_options = {"particle": "mu+-", "pt_range": (70.0, 90.0), "eta_range": (0.05, 0.25), "phi_range": None}

    def sample_conditions(self, n: int, rng: np.random.Generator, **options: Any) -> dict[str, np.ndarray]:
        return sample_conditions(n, rng, **options)

    def check_events(self, conditions: dict[str, np.ndarray], hits: dict[str, np.ndarray], spec: dict[str, Any] | None = None) -> list[str]:
        """Beyond the fields' ranges: every hit is on a module of the barrel."""
        problems = []
        if "geometry_id" in hits and len(hits["geometry_id"]):
            try:
                module_index(cached_modules(), hits["geometry_id"])
            except ValueError as e:
                problems.append(f"hits/geometry_id: {e}")
        return problems

    def geant4(self) -> Geant4Setup:
        module = "hitgen.detectors.odd_tracker.geant4"
        return Geant4Setup(f"{module}:make_construction", f"{module}:Recorder", _digitize, decays=True, primary_only=True)

    def evaluate(self, ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None):
        from hitgen.detectors.odd_tracker.evaluation import evaluate_tracker

        return evaluate_tracker(ref, cand, out, plots, replica)

    def commands(self) -> list[tuple[str, Callable]]:
        """Commands of its own that the CLI adds: the ACTS importer."""
        from hitgen.detectors.odd_tracker.cli import import_acts

        return [("import-acts", import_acts)]


DETECTOR = OddTracker()
