"""What every detector provides: its name, its hit fields, its conditions and a JSON spec."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FieldSpec:
    """A typed per-event (condition) or per-hit field. `shape` excludes the leading event/hit axis."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    unit: str = ""
    doc: str = ""

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "shape": list(self.shape), "unit": self.unit, "doc": self.doc}


@dataclass(frozen=True)
class DetectorInfo:
    """The data side of a detector: enough to read, write and check its event files.

    Geometry, digitisation and condition sampling live in the detector's own module; Geant4
    code lives in `hitgen.simulation` only, so this imports without Geant4.
    """

    name: str
    version: int
    hit_fields: tuple[FieldSpec, ...]
    condition_fields: tuple[FieldSpec, ...]
    extra: dict[str, Any]

    def spec(self) -> dict[str, Any]:
        """The JSON-able description written into every event file of this detector."""
        return {
            "name": self.name,
            "version": self.version,
            "hit_fields": {f.name: f.to_json() for f in self.hit_fields},
            "conditions": {f.name: f.to_json() for f in self.condition_fields},
            **self.extra,
        }
