"""Physics settings of a Geant4 simulation: the EM constructor, the multiple-scattering step limitation
and range factor of e+-, and the production range cut. Every detector has its default
(``Geant4Setup.physics``); `hitgen simulate` may change each of them, and the file records all four
in its ``physics`` attribute and its producer.

The settings are always applied explicitly, as Geant4 UI commands after the physics list is made and
before the run is initialised, so a file's record is exactly what ran: EM option1's own values
(Minimal, 0.2) are what it sets itself, and a test checks that applying them changes no event.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from hitgen.core.errors import HitgenError

EM_CONSTRUCTORS = {  # those the minimal EM data set supports (../shared/g4data/README)
    "emstandard_opt1": "G4EmStandardPhysics_option1",
    "emstandard_opt2": "G4EmStandardPhysics_option2",
}
# Geant4's names of G4MscStepLimitType, as /process/msc/StepLimit takes them
MSC_STEP_LIMITS = ("Minimal", "UseSafety", "UseSafetyPlus", "UseDistanceToBoundary")
# the fields a user may set (the command line spells them --em, --msc-step-limit, ...), with their help
FIELDS = {
    "em": f"EM physics constructor: {', '.join(EM_CONSTRUCTORS)}",
    "msc_step_limit": f"multiple-scattering step limitation of e+-: {', '.join(MSC_STEP_LIMITS)}",
    "msc_range_factor": "multiple-scattering range factor of e+-, 0 < F <= 1 (option1's own: 0.2)",
    "range_cut_mm": "production range cut in mm (Geant4's default 0.7)",
}


@dataclass(frozen=True)
class PhysicsSettings:
    em: str = "emstandard_opt1"
    msc_step_limit: str = "Minimal"  # option1's own (G4EmStandardPhysics_option1 sets fMinimal)
    msc_range_factor: float = 0.2  # option1's own
    range_cut_mm: float = 0.7

    def __post_init__(self) -> None:
        if self.em not in EM_CONSTRUCTORS:
            raise HitgenError(f"unknown EM physics '{self.em}' (known: {', '.join(EM_CONSTRUCTORS)})")
        if self.msc_step_limit not in MSC_STEP_LIMITS:
            raise HitgenError(f"unknown multiple-scattering step limitation '{self.msc_step_limit}' (known: {', '.join(MSC_STEP_LIMITS)})")
        if not (isinstance(self.msc_range_factor, int | float) and math.isfinite(self.msc_range_factor) and 0 < self.msc_range_factor <= 1):
            raise HitgenError(f"msc range factor {self.msc_range_factor!r}: need 0 < F <= 1")
        if not (isinstance(self.range_cut_mm, int | float) and math.isfinite(self.range_cut_mm) and 0 < self.range_cut_mm <= 1000):
            raise HitgenError(f"range cut {self.range_cut_mm!r} mm: need 0 < CUT <= 1000")

    @property
    def constructor(self) -> str:
        return EM_CONSTRUCTORS[self.em]

    def ui_commands(self) -> tuple[str, ...]:
        return (f"/process/msc/StepLimit {self.msc_step_limit}", f"/process/msc/RangeFactor {self.msc_range_factor:g}")

    def describe(self) -> str:
        """One line for the producer attribute and the CLI."""
        return f"{self.constructor} (msc {self.msc_step_limit}, range factor {self.msc_range_factor:g}; range cut {self.range_cut_mm:g} mm)"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_changes(self, changes: dict[str, Any]) -> PhysicsSettings:
        """These settings with some fields replaced (None values are left out); one clear error for bad ones."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise HitgenError(f"unknown physics setting(s) {sorted(unknown)} (known: {', '.join(FIELDS)})")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PhysicsSettings:
        """The settings a file's ``physics`` attribute records."""
        try:
            return cls(**{k: record[k] for k in FIELDS})
        except KeyError as e:
            raise HitgenError(f"physics record lacks {e.args[0]!r}") from None
        except TypeError as e:
            raise HitgenError(f"malformed physics record ({e})") from None


DEFAULT_PHYSICS = PhysicsSettings()  # EM option1 with its own multiple-scattering settings
