"""`ild-ecal`: an ILD-like Si-W electromagnetic calorimeter as a flat slab (geometry, Geant4,
views, observables, evaluation). The geometry module's names are re-exported here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.events import EventSet
from hitgen.core.physics import PhysicsSettings
from hitgen.detectors.base import FileFormat, Geant4Setup, Option, PackageParts
from hitgen.detectors.ild_ecal.geometry import *  # noqa: F403
from hitgen.detectors.ild_ecal.geometry import (
    ABSORBERS,
    DEFAULT_LAYOUT,
    INFO,
    LAYOUTS,
    MAX_ANGLE_DEG,
    MAX_ENERGY_GEV,
    NAME,
    PARTICLES,
    SPECTRA,
    cell_problems,
    check_conditions,
    digitize,
    primaries,
    sample_conditions,
)

# the accurate multiple-scattering step limitation for thin silicon, validated against the CALICE test
# beam (docs/detectors/calice-2006.md; hitgen validate calice-2006)
PHYSICS = PhysicsSettings(msc_step_limit="UseDistanceToBoundary", msc_range_factor=0.04)


def _format(name: str, read: bool, write: bool):
    """The reader or writer `name` of hitgen.detectors.ild_ecal.formats, imported when first used."""

    def reader(path: Path) -> EventSet:
        from hitgen.detectors.ild_ecal import formats

        return getattr(formats, f"read_{name}")(path)

    def writer(events: EventSet, path: Path) -> str:
        from hitgen.detectors.ild_ecal import formats

        return getattr(formats, f"write_{name}")(events, path)

    return {"read": reader if read else None, "write": writer if write else None}


FORMATS = (
    FileFormat("showerdata", "ShowerData HDF5 point clouds (x, y mm, z = layer, E GeV)", **_format("showerdata", True, True)),
    FileFormat("calochallenge", "CaloChallenge-style HDF5 of the 30x30x30 voxel view, MeV", **_format("calochallenge", True, True)),
    FileFormat("edm4hep", "ddsim EDM4hep ROOT file: ILD ECAL barrel silicon hits, projected onto the slab", **_format("edm4hep", True, False)),
    FileFormat("caloclouds", "CaloClouds point-cloud HDF5 (events (N, P, 4) x, y, z, E GeV)", **_format("caloclouds", True, False)),
)


def _digitize(conditions: dict[str, np.ndarray], raw, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Cells above threshold from the scorer map (no random numbers: the silicon has no noise here)."""
    c = raw.columns
    return digitize(raw.offsets, c["layer"], c["cell_x"], c["cell_y"], c["edep_mev"], c["above"] > 0.5)


class IldEcal(PackageParts):
    package = __name__
    name = NAME
    info = INFO
    options = (
        Option("particle", "choice", "gamma, e-, e+, mu- or mu+ (default gamma; EM physics only, no hadrons)", tuple(PARTICLES)),
        Option("energy_range", "positive-range", "kinetic energy range in GeV, LO:HI (default 1:10)", limits=(0.0, MAX_ENERGY_GEV)),
        Option("energy_spectrum", "choice", "uniform or log-uniform in the energy range (default uniform)", SPECTRA),
        Option("max_angle", "number", f"largest polar angle, degrees, 0 to {MAX_ANGLE_DEG:g} (default 0: normal)", limits=(0.0, MAX_ANGLE_DEG)),
        Option("absorber", "choice", "absorber material W, Ta or Pb (default W; same thicknesses)", tuple(ABSORBERS), setting=True),
        Option(
            "field",
            "choice",
            "3.5 T field along y, parallel to the layers: on or off (default: on, off with calice-prototype)",
            ("on", "off"),
            setting=True,
        ),
        Option(
            "layout",
            "choice",
            "ild (default), ild-fine (2.5 mm pads, no threshold) or calice-prototype (the 2006 CALICE Si-W test-beam prototype)",
            tuple(LAYOUTS),
            setting=True,
        ),
    )
    generation_options = ("particle", "energy_range", "energy_spectrum", "max_angle")
    bench_options: dict[str, Any] = {"particle": "gamma", "energy_range": (1.0, 10.0)}
    formats = FORMATS  # hitgen import / export --format (hitgen.detectors.ild_ecal.formats)
    validations = {"calice-2006": "hitgen.detectors.ild_ecal.testbeam"}  # hitgen validate NAME

    def sample_conditions(self, n: int, rng: np.random.Generator, **options: Any) -> dict[str, np.ndarray]:
        return sample_conditions(n, rng, **options)

    def configure_spec(self, spec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        """The file's detector spec for its settings: the layout's geometry, and its field default."""
        layout = LAYOUTS[spec.get("layout", DEFAULT_LAYOUT)]
        field = given.get("field", spec["field"] if "layout" not in given else layout.field)
        out = {**spec, **layout.spec_extra(), "field": field}
        if layout.own_cell_docs:
            docs = layout.cell_field_docs()
            out["hit_fields"] = {k: {**f, "doc": docs[k]} if k in docs else f for k, f in spec["hit_fields"].items()}
        return out

    def check_events(self, conditions: dict[str, np.ndarray], hits: dict[str, np.ndarray], spec: dict[str, Any] | None = None) -> list[str]:
        return check_conditions(conditions) + (cell_problems(spec, hits) if spec is not None else [])

    def geant4(self) -> Geant4Setup:
        module = "hitgen.detectors.ild_ecal.geant4"
        return Geant4Setup(f"{module}:make_construction", f"{module}:Recorder", _digitize, physics=PHYSICS, primaries=primaries)


DETECTOR = IldEcal()
