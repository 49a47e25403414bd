"""Geant4 geometry and scoring of `clas12-ecal` (constants from hitgen.detectors.clas12_ecal).

Each readout layer's strips are G4ExtrudedSolid trapezoids cut from the module triangle; one
slab volume per (module, view) holds its strips and the lead sheet behind them, and is placed
once per layer of that view. One G4MultiFunctionalDetector with a G4PSEnergyDeposit scorer per
readout layer is attached to all of its strips: Geant4's C++ sums the energy per strip (copy
number) over the layers of a view, so no Python runs per step; Python reads nine small maps per
event.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from hitgen.detectors.clas12_ecal import geometry as det


def make_construction(g4: ModuleType):
    """A G4VUserDetectorConstruction for clas12-ecal, built with the imported geant4_pybind."""
    cm, deg = g4.cm, g4.deg

    class Construction(g4.G4VUserDetectorConstruction):
        def __init__(self) -> None:
            super().__init__()
            self.strip_logicals: dict[int, list] = {}
            self._keep: list = []  # geant4_pybind objects must outlive the run

        def _polygon(self, vertices: np.ndarray):
            poly = g4.G4TwoVectorVector()
            for a, b in vertices[::-1]:  # G4ExtrudedSolid wants clockwise outlines
                poly.append(g4.G4TwoVector(a * cm, b * cm))
            return poly

        def _extruded(self, name: str, vertices: np.ndarray, half_z_cm: float):
            origin = g4.G4TwoVector(0, 0)
            solid = g4.G4ExtrudedSolid(name, self._polygon(vertices), half_z_cm * cm, origin, 1.0, origin, 1.0)
            self._keep.append(solid)
            return solid

        def Construct(self):  # noqa: N802 (Geant4 API)
            nist = g4.G4NistManager.Instance()
            vacuum = nist.FindOrBuildMaterial("G4_Galactic")
            lead = nist.FindOrBuildMaterial("G4_Pb")
            scint = nist.FindOrBuildMaterial("G4_PLASTIC_SC_VINYLTOLUENE")

            world_s = g4.G4Box("World", 12 * g4.m, 12 * g4.m, 12 * g4.m)
            world_l = g4.G4LogicalVolume(world_s, vacuum, "World")
            world_p = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_l, "World", None, False, 0)

            biggest = max(h for _, _, h in det.MODULES.values())
            half_a = 2 * biggest / 3 + 1.0
            half_b = biggest / np.sqrt(3) + 1.0
            half_depth = det.TOTAL_DEPTH_CM / 2
            calo_s = g4.G4Box("Calorimeter", half_a * cm, half_b * cm, half_depth * cm)
            calo_l = g4.G4LogicalVolume(calo_s, vacuum, "Calorimeter")
            centre = det.FACE_CENTER_LAB_CM + half_depth * det.LOCAL_TO_LAB[:, 2]
            rot = g4.G4RotationMatrix()
            rot.rotateY(det.TILT_DEG * deg)
            place = g4.G4Transform3D(rot, g4.G4ThreeVector(*(centre * cm)))
            calo_p = g4.G4PVPlacement(place, calo_l, "Calorimeter", world_l, False, 0)

            slabs = {}
            for r in det.READOUT_LAYERS:
                slab_s = g4.G4Box(f"Slab_{r.name}", half_a * cm, half_b * cm, det.LAYER_PITCH_CM / 2 * cm)
                slab_l = g4.G4LogicalVolume(slab_s, vacuum, f"Slab_{r.name}")
                z_scint = (det.SCINTILLATOR_THICKNESS_CM - det.LAYER_PITCH_CM) / 2
                z_lead = det.LAYER_PITCH_CM / 2 - det.LEAD_THICKNESS_CM / 2
                strips = []
                for k in range(r.n_strips):
                    solid = self._extruded(f"Strip_{r.name}_{k}", det.strip_polygon(r, k), det.SCINTILLATOR_THICKNESS_CM / 2)
                    logical = g4.G4LogicalVolume(solid, scint, f"Strip_{r.name}_{k}")
                    self._keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z_scint * cm), logical, f"Strip_{r.name}", slab_l, False, k))
                    strips.append(logical)
                self.strip_logicals[r.index] = strips
                lead_s = self._extruded(f"Lead_{r.name}", det.triangle_vertices(r.height_cm), det.LEAD_THICKNESS_CM / 2)
                lead_l = g4.G4LogicalVolume(lead_s, lead, f"Lead_{r.name}")
                self._keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z_lead * cm), lead_l, f"Lead_{r.name}", slab_l, False, 0))
                slabs[r.index] = slab_l
                self._keep += [slab_s, slab_l, lead_l, *strips]
            for n, (_, _, readout) in enumerate(det.LAYER_STACK):
                z = (n + 0.5) * det.LAYER_PITCH_CM - half_depth
                self._keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z * cm), slabs[readout], f"Layer{n}", calo_l, False, n))
            self._keep += [world_s, world_l, calo_s, calo_l, calo_p, rot, place]
            return world_p

        def ConstructSDandField(self):  # noqa: N802 (Geant4 API)
            sd_manager = g4.G4SDManager.GetSDMpointer()
            for r in det.READOUT_LAYERS:
                mfd = g4.G4MultiFunctionalDetector(f"SD_{r.name}")
                sd_manager.AddNewDetector(mfd)
                scorer = g4.G4PSEnergyDeposit("edep", 0)  # depth 0: index = strip copy number
                mfd.RegisterPrimitive(scorer)
                for logical in self.strip_logicals[r.index]:
                    self.SetSensitiveDetector(logical, mfd)
                self._keep += [mfd, scorer]

    return Construction()


class Recorder:
    """Per event: (readout layer, strip, energy in MeV) of every strip with a deposit, read from the
    nine scorer maps that Geant4's C++ filled."""

    columns = ("layer", "strip", "edep_mev")

    def __init__(self, g4: ModuleType, construction) -> None:
        names = [f"SD_{r.name}/edep" for r in det.READOUT_LAYERS]  # as Geant4 names them: SD/primitive
        sdm = g4.G4SDManager.GetSDMpointer()
        self._ids = [sdm.GetCollectionID(n) for n in names]
        if min(self._ids) < 0:
            raise RuntimeError(f"scorer collections not found: {names}")
        self._mev = g4.MeV

    def end_event(self, event) -> list[tuple[float, ...]]:
        hce = event.GetHCofThisEvent()
        return [(layer, strip, edep / self._mev) for layer, cid in enumerate(self._ids) for strip, edep in hce.GetHC(cid)]
