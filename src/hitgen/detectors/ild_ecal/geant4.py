"""Geant4 geometry, field and scoring of `ild-ecal` (constants from hitgen.detectors.ild_ecal.geometry).

Every layer is three boxes in a row along z: absorber, silicon, readout board (FR4). The silicon
plane is divided into cells by replicas (rows along x, cells along y), so the geometry holds three
silicon volumes whatever the number of cells. One G4MultiFunctionalDetector with a
G4PSEnergyDeposit3D scorer sits on the cells: Geant4's C++ sums the energy per cell, indexed by
(layer, row, cell) from the copy numbers of the touchable, and Python reads one map per event.
"""

from __future__ import annotations

from types import ModuleType

from hitgen.detectors.ild_ecal import geometry as det

WORLD_HALF_MM = 1000.0


def _fr4(g4: ModuleType, nist):
    """FR4: epoxy (C11H12O3, 1.2 g/cm3) and glass (SiO2) in the mass ratio 47.2 : 52.8, 1.86 g/cm3."""
    existing = g4.G4Material.GetMaterial("FR4", False)
    if existing is not None:
        return existing
    gcm3 = g4.g / g4.cm3
    epoxy = g4.G4Material("Epoxy", 1.2 * gcm3, 3)
    epoxy.AddElement(nist.FindOrBuildElement("C"), 11)
    epoxy.AddElement(nist.FindOrBuildElement("H"), 12)
    epoxy.AddElement(nist.FindOrBuildElement("O"), 3)
    fr4 = g4.G4Material("FR4", 1.86 * gcm3, 2)
    fr4.AddMaterial(nist.FindOrBuildMaterial("G4_SILICON_DIOXIDE"), 0.528)
    fr4.AddMaterial(epoxy, 0.472)
    return fr4


def make_construction(
    g4: ModuleType,
    absorber: str = det.DEFAULT_ABSORBER,
    field: str = det.DEFAULT_FIELD,
    layout: str = det.DEFAULT_LAYOUT,
    board_mm: float | None = None,
):
    """A G4VUserDetectorConstruction for ild-ecal with the given absorber ("W", "Ta", "Pb"), field
    ("on": 3.5 T along +y, "off"), layout (hitgen.detectors.ild_ecal.geometry.LAYOUTS) and
    readout-board thickness (None: the layout's; 0: none, for studies of its effect)."""
    mm = g4.mm
    material_name = det.absorber_material(absorber)
    if field not in ("on", "off"):
        raise ValueError(f"field must be 'on' or 'off' (got {field!r})")
    geometry = det.layout_of({"layout": layout})
    board_mm = geometry.board_mm if board_mm is None else board_mm
    n_cells, cell_mm, silicon_mm = geometry.n_cells, geometry.cell_size_mm, geometry.silicon_mm

    class Construction(g4.G4VUserDetectorConstruction):
        def __init__(self) -> None:
            super().__init__()
            self.cell_logical = None
            self.layout = geometry
            self._keep: list = []  # geant4_pybind objects must outlive the run

        def _box(self, name: str, half_x: float, half_y: float, half_z: float, material):
            solid = g4.G4Box(name, half_x * mm, half_y * mm, half_z * mm)
            logical = g4.G4LogicalVolume(solid, material, name)
            self._keep += [solid, logical]
            return logical

        def _place(self, logical, z_centre_mm: float, name: str, mother, copy: int) -> None:
            self._keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z_centre_mm * mm), logical, name, mother, False, copy))

        def Construct(self):  # noqa: N802 (Geant4 API)
            nist = g4.G4NistManager.Instance()
            vacuum = nist.FindOrBuildMaterial("G4_Galactic")
            silicon = nist.FindOrBuildMaterial("G4_Si")
            radiator = nist.FindOrBuildMaterial(material_name)
            board = _fr4(g4, nist)
            half = geometry.half_width_mm

            world_s = g4.G4Box("World", WORLD_HALF_MM * mm, WORLD_HALF_MM * mm, WORLD_HALF_MM * mm)
            world_l = g4.G4LogicalVolume(world_s, vacuum, "World")
            world_p = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_l, "World", None, False, 0)
            self._keep += [world_s, world_l]

            si_layer = self._box("SiLayer", half, half, silicon_mm / 2, silicon)
            si_row = self._box("SiRow", cell_mm / 2, half, silicon_mm / 2, silicon)
            si_cell = self._box("SiCell", cell_mm / 2, cell_mm / 2, silicon_mm / 2, silicon)
            self._keep.append(g4.G4PVReplica("SiRow", si_row, si_layer, g4.EAxis.kXAxis, n_cells, cell_mm * mm))
            self._keep.append(g4.G4PVReplica("SiCell", si_cell, si_row, g4.EAxis.kYAxis, n_cells, cell_mm * mm))
            self.cell_logical = si_cell

            absorbers = {t: self._box(f"Absorber{t:g}", half, half, t / 2, radiator) for t in sorted(set(geometry.absorber_mm))}
            board_l = self._box("Board", half, half, board_mm / 2, board) if board_mm > 0 else None
            z = 0.0
            for layer in range(det.N_LAYERS):
                t = float(geometry.absorber_mm[layer])
                self._place(absorbers[t], z + t / 2, "Absorber", world_l, layer)
                z += t
                self._place(si_layer, z + silicon_mm / 2, "SiLayer", world_l, layer)  # copy number = layer
                z += silicon_mm
                if board_l is not None:
                    self._place(board_l, z + board_mm / 2, "Board", world_l, layer)
                    z += board_mm
            return world_p

        def ConstructSDandField(self):  # noqa: N802 (Geant4 API)
            mfd = g4.G4MultiFunctionalDetector("ECAL")
            g4.G4SDManager.GetSDMpointer().AddNewDetector(mfd)
            # index = layer * N^2 + row * N + cell, from the copy numbers at depths 2 (layer), 1 (row), 0 (cell)
            scorer = g4.G4PSEnergyDeposit3D("edep", det.N_LAYERS, n_cells, n_cells, 2, 1, 0)
            mfd.RegisterPrimitive(scorer)
            self.SetSensitiveDetector(self.cell_logical, mfd)
            self._keep += [mfd, scorer]
            if field == "on":
                magnetic = g4.G4UniformMagField(g4.G4ThreeVector(0.0, det.FIELD_TESLA * g4.tesla, 0.0))
                manager = g4.G4TransportationManager.GetTransportationManager().GetFieldManager()
                manager.SetDetectorField(magnetic)
                manager.CreateChordFinder(magnetic)
                self._keep.append(magnetic)

    return Construction()


class Recorder:
    """Per event: (layer, cell_x, cell_y, energy in MeV, above) of every silicon cell with a deposit,
    read from the map that Geant4's C++ filled (index = (layer * n + cell_x) * n + cell_y for the
    layout's n cells a side); ``above`` is 1 where the deposit passes the layout's threshold."""

    columns = ("layer", "cell_x", "cell_y", "edep_mev", "above")

    def __init__(self, g4: ModuleType, construction) -> None:
        self._id = g4.G4SDManager.GetSDMpointer().GetCollectionID("ECAL/edep")
        if self._id < 0:
            raise RuntimeError("scorer collection ECAL/edep not found")
        self._mev = g4.MeV
        self._n = construction.layout.n_cells
        self._threshold = construction.layout.threshold_mev

    def end_event(self, event) -> list[tuple[float, ...]]:
        hc = event.GetHCofThisEvent().GetHC(self._id)
        n, rows = self._n, []
        for index, edep in hc:
            rest, cell_y = divmod(int(index), n)
            layer, cell_x = divmod(rest, n)
            mev = edep / self._mev
            rows.append((layer, cell_x, cell_y, mev, float(mev >= self._threshold)))
        return rows
