"""Geant4 data location and import. The only place that imports geant4_pybind.

geant4_pybind downloads about 2 GB of data sets at import time unless GEANT4_DATA_DIR points at
them (and with CI=true it tries without asking, which fails offline). We never hard-code a data
path: the user (or the Makefile) sets GEANT4_DATA_DIR, and we refuse to import without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from hitgen.core.errors import Geant4DataError

HOW_TO_GET_DATA = (
    "set GEANT4_DATA_DIR to a folder of Geant4 data sets (G4EMLOW, G4ENSDFSTATE, PhotonEvaporation), "
    "e.g. ../shared/g4data or a full Geant4 data installation"
)


def data_dir() -> Path:
    """The Geant4 data folder named by GEANT4_DATA_DIR, checked; raises Geant4DataError."""
    value = os.environ.get("GEANT4_DATA_DIR", "").strip()
    if not value:
        raise Geant4DataError(f"Geant4 data not found: GEANT4_DATA_DIR is not set; {HOW_TO_GET_DATA}")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise Geant4DataError(f"Geant4 data not found: GEANT4_DATA_DIR={value} is not a folder; {HOW_TO_GET_DATA}")
    if not any(p.name.startswith("G4EMLOW") for p in path.iterdir()):
        raise Geant4DataError(f"Geant4 data not found: no G4EMLOW* data set in {path}; {HOW_TO_GET_DATA}")
    return path


def import_geant4() -> ModuleType:
    """Import geant4_pybind after checking that its data sets are present (no download ever)."""
    data_dir()
    import geant4_pybind

    return geant4_pybind


def livermore_subdir(root: Path) -> str | None:
    """The Livermore photoelectric tables shipped with this data set, as G4EmParameters wants it.

    The minimal data set ships `livermore/phot_epics2014` only, which needs
    SetLivermoreDataDir("livermore"); a full installation has `epics_2017` and needs nothing.
    """
    for emlow in sorted(root.glob("G4EMLOW*")):
        if (emlow / "livermore" / "phot_epics2014").is_dir() and not (emlow / "epics_2017").is_dir():
            return "livermore"
    return None
