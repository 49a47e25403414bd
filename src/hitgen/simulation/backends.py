"""What the simulation runner needs from each detector: conditions, Geant4 geometry, digitisation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hitgen.detectors import clas12_ecal, get_detector, odd_tracker
from hitgen.detectors.base import DetectorInfo
from hitgen.simulation.session import RawEvents


@dataclass(frozen=True)
class Backend:
    info: DetectorInfo
    # (n, rng, **options) -> conditions dict; options are the CLI's kinematic options below
    sample_conditions: Callable[..., dict[str, np.ndarray]]
    options: tuple[str, ...]  # the keyword names sample_conditions takes (CLI --option-name)
    # "module:function" building the G4VUserDetectorConstruction (imported inside workers only)
    construction: str
    recorder: str  # "module:class" of the per-event recorder (simulation.session.Recorder)
    # (conditions, raw recorder output, rng) -> (offsets, hits, truth)
    digitize: Callable[[dict[str, np.ndarray], RawEvents, np.random.Generator], tuple[np.ndarray, dict, dict]]
    decays: bool = False  # register G4DecayPhysics next to the EM physics
    primary_only: bool = False  # kill secondaries at birth (the detector records the primary only)


def _clas12_digitize(
    conditions: dict[str, np.ndarray], raw: RawEvents, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    layer, strip, edep = raw.columns["layer"].astype(np.int16), raw.columns["strip"].astype(np.int32), raw.columns["edep_mev"]
    offsets, hits = clas12_ecal.digitize(conditions["momentum"], raw.offsets, layer, strip, edep, rng)
    n = len(raw.offsets) - 1
    event = np.repeat(np.arange(n), np.diff(raw.offsets))
    per_layer = np.zeros((n, clas12_ecal.N_READOUT_LAYERS))
    np.add.at(per_layer, (event, layer.astype(np.int64)), edep)
    truth = {"visible_energy_layer": (per_layer / 1000.0).astype(np.float32)}  # GeV per readout layer
    return offsets, hits, truth


_odd_modules = functools.cache(odd_tracker.build_modules)  # built once per process, on first use


def _odd_digitize(conditions: dict[str, np.ndarray], raw: RawEvents, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Geant4 hits are the event file's hits (the digitisation into pixels and strips belongs to
    the reconstruction, which compares Geant4 and the model on equal terms)."""
    c = raw.columns
    position = np.stack([c["x"], c["y"], c["z"]], axis=1)
    momentum = np.stack([c["px"], c["py"], c["pz"]], axis=1)
    return raw.offsets, odd_tracker.hits_from_steps(_odd_modules(), c["module"], position, momentum), {}


BACKENDS: dict[str, Backend] = {
    clas12_ecal.NAME: Backend(
        info=clas12_ecal.INFO,
        sample_conditions=clas12_ecal.sample_conditions,
        options=("momentum_range",),
        construction="hitgen.simulation.clas12_ecal:make_construction",
        recorder="hitgen.simulation.clas12_ecal:Recorder",
        digitize=_clas12_digitize,
    ),
    odd_tracker.NAME: Backend(
        info=odd_tracker.INFO,
        sample_conditions=odd_tracker.sample_conditions,
        options=("particle", "pt_range", "eta_range", "phi_range"),
        construction="hitgen.simulation.odd_tracker:make_construction",
        recorder="hitgen.simulation.odd_tracker:Recorder",
        digitize=_odd_digitize,
        decays=True,
        primary_only=True,
    ),
}


def get_backend(name: str) -> Backend:
    get_detector(name)  # the clear error for unknown names
    return BACKENDS[name]
