"""What the simulation runner needs from each detector: conditions, Geant4 geometry, digitisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hitgen.detectors import clas12_ecal, get_detector
from hitgen.detectors.base import DetectorInfo
from hitgen.simulation.session import RawEvents


@dataclass(frozen=True)
class Backend:
    info: DetectorInfo
    # (n, rng, **options) -> conditions dict; options are the CLI's kinematic ranges
    sample_conditions: Callable[..., dict[str, np.ndarray]]
    # "module:function" building the G4VUserDetectorConstruction (imported inside workers only)
    construction: str
    collections: str
    # (conditions, raw scorer output, rng) -> (offsets, hits, truth)
    digitize: Callable[[dict[str, np.ndarray], RawEvents, np.random.Generator], tuple[np.ndarray, dict, dict]]


def _clas12_digitize(
    conditions: dict[str, np.ndarray], raw: RawEvents, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    offsets, hits = clas12_ecal.digitize(conditions["momentum"], raw.offsets, raw.layer, raw.strip, raw.edep_mev, rng)
    n = len(raw.offsets) - 1
    event = np.repeat(np.arange(n), np.diff(raw.offsets))
    per_layer = np.zeros((n, clas12_ecal.N_READOUT_LAYERS))
    np.add.at(per_layer, (event, raw.layer.astype(np.int64)), raw.edep_mev)
    truth = {"visible_energy_layer": (per_layer / 1000.0).astype(np.float32)}  # GeV per readout layer
    return offsets, hits, truth


BACKENDS: dict[str, Backend] = {
    clas12_ecal.NAME: Backend(
        info=clas12_ecal.INFO,
        sample_conditions=clas12_ecal.sample_conditions,
        construction="hitgen.simulation.clas12_ecal:make_construction",
        collections="hitgen.simulation.clas12_ecal:collection_names",
        digitize=_clas12_digitize,
    )
}


def get_backend(name: str) -> Backend:
    get_detector(name)  # the clear error for unknown names
    return BACKENDS[name]
