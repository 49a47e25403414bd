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
    # the valid range of every value (inclusive; None: unbounded); floats must be finite as well.
    # Checked on reading, not part of the JSON spec (files written before they existed stay valid).
    low: float | None = None
    high: float | None = None

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def problem(self, values: np.ndarray, group: str) -> str | None:
        """A sentence saying how values break the field's range (or finiteness); None if they do not."""
        if values.size == 0:
            return None
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            return f"{group}/{self.name} holds {int((~np.isfinite(values)).sum())} non-finite value(s)"
        lo, hi = values.min(), values.max()
        if (self.low is not None and lo < self.low) or (self.high is not None and hi > self.high):
            bound = f"{'-inf' if self.low is None else f'{self.low:g}'} to {'inf' if self.high is None else f'{self.high:g}'}"
            return f"{group}/{self.name} spans {lo:g} to {hi:g}, outside its range {bound}"
        return None

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

    def problems(self, conditions: dict[str, np.ndarray], hits: dict[str, np.ndarray]) -> list[str]:
        """Every value of the conditions and hits outside its field's range, as sentences."""
        out = [f.problem(conditions[f.name], "conditions") for f in self.condition_fields if f.name in conditions]
        out += [f.problem(hits[f.name], "hits") for f in self.hit_fields if f.name in hits]
        return [p for p in out if p]

    def spec(self) -> dict[str, Any]:
        """The JSON-able description written into every event file of this detector."""
        return {
            "name": self.name,
            "version": self.version,
            "hit_fields": {f.name: f.to_json() for f in self.hit_fields},
            "conditions": {f.name: f.to_json() for f in self.condition_fields},
            **self.extra,
        }
