"""`clas12-ecal`: a CLAS12-like lead/scintillator calorimeter (geometry, digitisation, Geant4,
observables, evaluation). The geometry module's names are re-exported here."""

from __future__ import annotations

from typing import Any

import numpy as np

from hitgen.detectors.base import Geant4Setup, Option, PackageParts
from hitgen.detectors.clas12_ecal.geometry import *  # noqa: F403
from hitgen.detectors.clas12_ecal.geometry import INFO, MAX_MOMENTUM_GEV, N_READOUT_LAYERS, NAME, STRIPS_PER_LAYER, digitize, sample_conditions


def _digitize(conditions: dict[str, np.ndarray], raw, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Strips from the Geant4 deposits; the visible energy per readout layer is kept as truth."""
    layer, strip, edep = raw.columns["layer"].astype(np.int16), raw.columns["strip"].astype(np.int32), raw.columns["edep_mev"]
    offsets, hits = digitize(conditions["momentum"], raw.offsets, layer, strip, edep, rng)
    n = len(raw.offsets) - 1
    event = np.repeat(np.arange(n), np.diff(raw.offsets))
    per_layer = np.zeros((n, N_READOUT_LAYERS))
    np.add.at(per_layer, (event, layer.astype(np.int64)), edep)
    truth = {"visible_energy_layer": (per_layer / 1000.0).astype(np.float32)}  # GeV per readout layer
    return offsets, hits, truth


class Clas12Ecal(PackageParts):
    package = __name__
    name = NAME
    info = INFO
    options = (Option("momentum_range", "positive-range", "|p| range in GeV, LO:HI (default 0.5:10)", limits=(0.0, MAX_MOMENTUM_GEV)),)
    generation_options = ("momentum_range",)
    bench_options: dict[str, Any] = {}  # the default photons

    def sample_conditions(self, n: int, rng: np.random.Generator, **options: Any) -> dict[str, np.ndarray]:
        return sample_conditions(n, rng, **options)

    def check_events(self, conditions: dict[str, np.ndarray], hits: dict[str, np.ndarray], spec: dict[str, Any] | None = None) -> list[str]:
        """Beyond the fields' ranges: every strip exists in its readout layer."""
        if "strip" in hits and "layer" in hits and len(hits["strip"]):
            layer = np.clip(hits["layer"].astype(np.int64), 0, N_READOUT_LAYERS - 1)
            bad = hits["strip"] >= np.asarray(STRIPS_PER_LAYER)[layer]
            if bad.any():
                return [f"{int(bad.sum())} hit(s) on a strip its readout layer does not have"]
        return []

    def geant4(self) -> Geant4Setup:
        module = "hitgen.detectors.clas12_ecal.geant4"
        return Geant4Setup(f"{module}:make_construction", f"{module}:Recorder", _digitize)


DETECTOR = Clas12Ecal()
