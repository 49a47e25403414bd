"""Geant4 geometry, field and hit recording of `odd-tracker` (constants from hitgen.detectors.odd_tracker).

Every layer is a vacuum tube holding its flat silicon modules (one G4Box per subsystem, placed once
per module with the module's row in `build_modules()` as copy number); a carbon support cylinder
sits just inside each layer and a beryllium beam pipe inside the first; a uniform solenoid field
fills the world. A Python sensitive detector on the silicon keeps the steps of the primary
particle only (track id 1): per step its module, entry and exit points and momentum after the
step. At the end of an event, consecutive steps in the same module are merged into one hit: the
mid-point of the path through the module and the momentum after the last step (a crossing is one
to a few steps; secondaries return at once, so Python runs a few dozen times per event).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from hitgen.detectors.odd_tracker import geometry as det


def make_construction(g4: ModuleType):
    """A G4VUserDetectorConstruction for odd-tracker, built with the imported geant4_pybind."""
    mm = g4.mm
    modules = det.build_modules()

    class SiliconSD(g4.G4VSensitiveDetector):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.rows: list[tuple[float, ...]] = []

        def ProcessHits(self, step, history):  # noqa: N802 (Geant4 API)
            if step.GetTrack().GetTrackID() != 1:
                return False
            pre, post = step.GetPreStepPoint(), step.GetPostStepPoint()
            a, b, p = pre.GetPosition(), post.GetPosition(), post.GetMomentum()
            self.rows.append((pre.GetTouchable().GetCopyNumber(), a.x, a.y, a.z, b.x, b.y, b.z, p.x, p.y, p.z))
            return True

    class Construction(g4.G4VUserDetectorConstruction):
        def __init__(self) -> None:
            super().__init__()
            self.silicon_logicals: list = []
            self.sd: SiliconSD | None = None
            self._keep: list = []  # geant4_pybind objects must outlive the run

        def _tube(self, name: str, r_min: float, r_max: float, half_z: float, material, mother):
            solid = g4.G4Tubs(name, r_min * mm, r_max * mm, half_z * mm, 0.0, 2 * np.pi)
            logical = g4.G4LogicalVolume(solid, material, name)
            placement = g4.G4PVPlacement(None, g4.G4ThreeVector(), logical, name, mother, False, 0)
            self._keep += [solid, logical, placement]
            return logical

        def Construct(self):  # noqa: N802 (Geant4 API)
            nist = g4.G4NistManager.Instance()
            vacuum, silicon = nist.FindOrBuildMaterial("G4_Galactic"), nist.FindOrBuildMaterial("G4_Si")
            beryllium, carbon = nist.FindOrBuildMaterial("G4_Be"), nist.FindOrBuildMaterial("G4_C")
            world_s = g4.G4Box("World", *(h * mm for h in det.WORLD_HALF_MM))
            world_l = g4.G4LogicalVolume(world_s, vacuum, "World")
            world_p = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_l, "World", None, False, 0)
            self._keep += [world_s, world_l]
            r_pipe = det.BEAM_PIPE_RADIUS_MM
            self._tube("BeamPipe", r_pipe, r_pipe + det.BEAM_PIPE_THICKNESS_MM, det.WORLD_HALF_MM[2] - 1, beryllium, world_l)

            centre, layer_index = modules.centre(), 0
            for sub in det.SUBSYSTEMS:
                box = g4.G4Box(f"Module_{sub.name}", sub.thickness_mm / 2 * mm, sub.module_u_mm / 2 * mm, sub.module_v_mm / 2 * mm)
                module_l = g4.G4LogicalVolume(box, silicon, f"Module_{sub.name}")
                self.silicon_logicals.append(module_l)
                self._keep += [box, module_l]
                for radius in sub.radii_mm:
                    r_in, r_out = sub.radial_extent(radius)
                    half_z = sub.half_length_mm + 1.0
                    support_out = r_in - det.SUPPORT_GAP_MM
                    self._tube(f"Support{layer_index}", support_out - sub.support_mm, support_out, half_z, carbon, world_l)
                    envelope = self._tube(f"Layer{layer_index}", r_in - 0.05, r_out + 0.05, half_z, vacuum, world_l)
                    for k in np.nonzero(modules.layer == layer_index)[0]:
                        # box x = module normal w, y = u, z = v: a rotation by phi about z puts it in place
                        rot = g4.G4RotationMatrix()
                        rot.rotateZ(float(modules.phi[k]))
                        where = g4.G4Transform3D(rot, g4.G4ThreeVector(*(centre[k] * mm)))
                        self._keep += [rot, g4.G4PVPlacement(where, module_l, f"Module{k}", envelope, False, int(k))]
                    layer_index += 1
            return world_p

        def ConstructSDandField(self):  # noqa: N802 (Geant4 API)
            self.sd = SiliconSD("Silicon")
            g4.G4SDManager.GetSDMpointer().AddNewDetector(self.sd)
            for logical in self.silicon_logicals:
                self.SetSensitiveDetector(logical, self.sd)
            field = g4.G4UniformMagField(g4.G4ThreeVector(0.0, 0.0, det.FIELD_TESLA * g4.tesla))
            manager = g4.G4TransportationManager.GetTransportationManager().GetFieldManager()
            manager.SetDetectorField(field)
            manager.CreateChordFinder(field)
            self._keep += [field]

    return Construction()


class Recorder:
    """Per event: one row per module the primary crossed (steps in one module merged):
    module row, mid-point x, y, z (mm) and momentum after the hit (GeV)."""

    columns = ("module", "x", "y", "z", "px", "py", "pz")

    def __init__(self, g4: ModuleType, construction) -> None:
        self._sd = construction.sd
        self._mm, self._gev = g4.mm, g4.GeV

    def end_event(self, event) -> list[tuple[float, ...]]:
        steps, self._sd.rows = self._sd.rows, []
        return merge_steps(steps, self._mm, self._gev)


def merge_steps(steps: list[tuple[float, ...]], mm: float = 1.0, gev: float = 1.0) -> list[tuple[float, ...]]:
    """Consecutive steps in one module -> one hit (module, mid-point of first entry and last exit,
    momentum after the last step). A module entered again later is a new hit."""
    hits: list[tuple[float, ...]] = []
    i = 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and steps[j + 1][0] == steps[i][0]:
            j += 1
        first, last = steps[i], steps[j]
        mid = [(first[1 + c] + last[4 + c]) / 2 / mm for c in range(3)]
        hits.append((first[0], *mid, last[7] / gev, last[8] / gev, last[9] / gev))
        i = j + 1
    return hits
