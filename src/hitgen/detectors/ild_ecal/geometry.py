"""`ild-ecal`: an ILD-like silicon-tungsten electromagnetic calorimeter as a flat slab.

Pure geometry (two layouts: ILD's, the module constants below, and the CALICE physics prototype's,
``LAYOUTS``), condition sampling and digitisation; the Geant4 description that uses these
constants is `hitgen.detectors.ild_ecal.geant4`. Sources of every constant: docs/detectors/ild-ecal.md.

Frame
-----
The beam enters along +z, normal to the layers; the front face of the slab is the plane z = 0 and
the slab is centred on the z axis. Layer l is (absorber, silicon, readout board), in this order along z.
The 3.5 T field points along +y, parallel to the layers (as in ILD's barrel, where the solenoid
field runs along the layers of every module).

Cells
-----
The silicon of every layer is a plane of N_CELLS x N_CELLS square cells of CELL_SIZE_MM; cell
(i, j) covers x in [(i - N_CELLS/2) * s, (i + 1 - N_CELLS/2) * s) and likewise y (s the cell size).
N_CELLS is odd, so the central cell CENTRE_CELL is centred on the z axis; the entry point of a
particle is jittered uniformly over that cell, so cell edges do not sit at a fixed place relative
to the shower axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.fields import DetectorInfo, FieldSpec

NAME = "ild-ecal"
SPEC_VERSION = 1

# --- longitudinal structure (mm) of the ILD layout ----------------------------------------------
N_LAYERS = 30
N_THIN_LAYERS = 20  # layers 0-19 have the thin absorber, 20-29 the thick one
ABSORBER_THIN_MM = 2.1
ABSORBER_THICK_MM = 4.2
SILICON_MM = 0.525  # ILD's Ecal_Si_thickness
# readout board behind each sensor: ILD's Ecal_Slab_PCB_thickness (k4geo ILD_common_v02/ecal_defs.xml),
# FR4 (the copper, glue, kapton, fibre and air of the real slab are left out; see the docs)
BOARD_MM = 1.70
BOARD_MATERIAL = "FR4"

# --- absorbers: Geant4 NIST material, radiation length and Moliere radius (mm; PDG tables) -----
ABSORBERS: dict[str, tuple[str, float, float]] = {
    "W": ("G4_W", 3.504, 9.327),
    "Ta": ("G4_Ta", 4.094, 10.10),
    "Pb": ("G4_Pb", 5.612, 16.02),
}
DEFAULT_ABSORBER = "W"

# --- transverse segmentation --------------------------------------------------------------------
CELL_SIZE_MM = 5.0
# 121 x 121 cells (605 x 605 mm): the worst case, Pb at 45 degrees incidence, has its shower axis
# at most 151 mm off-centre at the back of the slab, and the Pb stack's effective Moliere radius is
# about 25 mm, so the edge is more than 5.9 effective Moliere radii from the axis everywhere
N_CELLS = 121
CENTRE_CELL = N_CELLS // 2
HALF_WIDTH_MM = N_CELLS * CELL_SIZE_MM / 2

# --- readout ------------------------------------------------------------------------------------
THRESHOLD_MEV = 0.1  # cell threshold (ShowerData's value for ILD's ECAL)


@dataclass(frozen=True)
class Layout:
    """One arrangement of the 30 sampling layers: absorber thickness per layer, silicon, readout board,
    and a square silicon plane of n_cells x n_cells cells. Cell i covers x in
    [(i - n_cells/2) * s, (i + 1 - n_cells/2) * s), s the cell size: with an odd n_cells the central
    cell is centred on the beam axis, with an even one the axis is a cell edge."""

    name: str
    absorber_mm: tuple[float, ...]
    silicon_mm: float
    board_mm: float
    cell_size_mm: float
    n_cells: int
    threshold_mev: float  # the readout's zero suppression: cells below it are not written
    field: str  # the default of the field setting with this layout
    doc: str
    # whether its files' cell fields say its own cells; the layouts before ild-fine keep ild's words, so
    # that their files join the files written before (a spec's fields are compared as written)
    own_cell_docs: bool = False

    @property
    def half_width_mm(self) -> float:
        return self.n_cells * self.cell_size_mm / 2

    @property
    def silicon_z_mm(self) -> np.ndarray:
        """z of the silicon centre of every layer (the front face at z = 0)."""
        absorber = np.asarray(self.absorber_mm)
        front = np.concatenate([[0.0], np.cumsum(absorber + self.silicon_mm + self.board_mm)[:-1]])
        return front + absorber + self.silicon_mm / 2

    def cell_centre_mm(self, index: np.ndarray) -> np.ndarray:
        return (np.asarray(index, dtype=np.float64) - (self.n_cells - 1) / 2) * self.cell_size_mm

    def cell_of(self, coordinate_mm: np.ndarray) -> np.ndarray:
        """The cell index (int64) holding x (or y) in mm; may lie outside 0..n_cells-1 off the plane."""
        return np.floor(np.asarray(coordinate_mm, dtype=np.float64) / self.cell_size_mm + self.n_cells / 2).astype(np.int64)

    def cell_field_docs(self) -> dict[str, str]:
        """The docs of the cell_x and cell_y hit fields in this layout's terms."""
        last, centre = self.n_cells - 1, (self.n_cells - 1) / 2
        axes = (("x", "column", "i"), ("y", "row", "j"))
        return {f"cell_{a}": f"cell {w}, 0 to {last} ({a} = ({i} - {centre:g}) * {self.cell_size_mm:g} mm)" for a, w, i in axes}

    def spec_extra(self) -> dict[str, Any]:
        """What the detector spec of a file records of this layout."""
        return {
            "layout": self.name,
            "absorber_mm": list(self.absorber_mm),
            "silicon_mm": self.silicon_mm,
            "board_mm": self.board_mm,
            "cell_size_mm": self.cell_size_mm,
            "n_cells": self.n_cells,
            "threshold_mev": self.threshold_mev,
        }


LAYOUTS = {
    "ild": Layout(
        "ild",
        tuple([ABSORBER_THIN_MM] * N_THIN_LAYERS + [ABSORBER_THICK_MM] * (N_LAYERS - N_THIN_LAYERS)),
        SILICON_MM,
        BOARD_MM,
        CELL_SIZE_MM,
        N_CELLS,
        THRESHOLD_MEV,
        "on",
        "ILD's ECAL as a flat slab: 20 x 2.1 + 10 x 4.2 mm absorber, 0.525 mm Si, 1.7 mm FR4 board, 5 mm cells",
    ),
    # the CALICE Si-W physics prototype (NIM A 608 (2009) 372): 10 x 1.4, 10 x 2.8, 10 x 4.2 mm W,
    # 0.525 mm Si, 18 x 18 cm of 1 x 1 cm pads; its readout boards, carbon-fibre structure and the
    # gaps between wafers are left out (docs/detectors/calice-2006.md says what each would change).
    # Threshold 0.05 MeV (a third of a MIP) so that the paper's 0.6 MIP cut can be applied afterwards.
    "calice-prototype": Layout(
        "calice-prototype",
        tuple([1.4] * 10 + [2.8] * 10 + [4.2] * 10),
        0.525,
        0.0,
        10.0,
        18,
        0.05,
        "off",
        "the CALICE Si-W physics prototype (2006): 10 x 1.4, 10 x 2.8, 10 x 4.2 mm W, 0.525 mm Si, 18 x 18 1 cm pads, no field",
    ),
    # ILD's slab read out in pads of half the size without a threshold: the simulation truth at four
    # sub-cells per cell (sub-cells 2i and 2i + 1 make cell i), for models that generate below the
    # readout's grain; four sub-cells summed and cut at ILD's threshold are ild's readout (in distribution:
    # the cell volumes' boundaries take part in Geant4's stepping, so a seed's showers differ).
    "ild-fine": Layout(
        "ild-fine",
        tuple([ABSORBER_THIN_MM] * N_THIN_LAYERS + [ABSORBER_THICK_MM] * (N_LAYERS - N_THIN_LAYERS)),
        SILICON_MM,
        BOARD_MM,
        CELL_SIZE_MM / 2,
        2 * N_CELLS,
        0.0,
        "on",
        "ILD's ECAL in 2.5 mm pads without a threshold (every deposit; sub-cells 2i, 2i + 1 make ild's cell i)",
        own_cell_docs=True,
    ),
}
DEFAULT_LAYOUT = "ild"
ILD = LAYOUTS[DEFAULT_LAYOUT]
MAX_N_CELLS = max(layout.n_cells for layout in LAYOUTS.values())  # the hit fields' range; a file's own is its layout's


def layout_of(spec: dict[str, Any]) -> Layout:
    """The layout a file's detector spec records (files written before layouts existed: ild)."""
    name = spec.get("layout", DEFAULT_LAYOUT)
    if name not in LAYOUTS:
        raise HitgenError(f"unknown ild-ecal layout '{name}' (known: {', '.join(LAYOUTS)})")
    return LAYOUTS[name]


def cell_problems(spec: dict[str, Any], hits: dict[str, np.ndarray]) -> list[str]:
    """Cell indices beyond the n_cells of the file's layout, as sentences."""
    n = layout_of(spec).n_cells
    return [
        f"hits/{key} holds values above {n - 1}, the last cell of layout '{layout_of(spec).name}'"
        for key in ("cell_x", "cell_y")
        if key in hits and len(hits[key]) and int(np.max(hits[key])) >= n
    ]


def require_ild_layout(spec: dict[str, Any], what: str) -> None:
    """One clear error where a file of another layout reaches code made for ILD's (views, formats, models)."""
    name = spec.get("layout", DEFAULT_LAYOUT)
    if name != DEFAULT_LAYOUT:
        raise HitgenError(f"{what} is defined for the ild layout; these events are of layout '{name}'")


# --- field --------------------------------------------------------------------------------------
FIELD_TESLA = 3.5  # ILD's solenoid
DEFAULT_FIELD = "on"

# --- conditions ---------------------------------------------------------------------------------
PARTICLES: dict[str, tuple[int, float]] = {  # name -> (PDG code, mass in GeV)
    "gamma": (22, 0.0),
    "e-": (11, 0.000510999),
    "e+": (-11, 0.000510999),
    "mu-": (13, 0.1056584),
    "mu+": (-13, 0.1056584),
}
MASS_GEV = {pdg: mass for pdg, mass in PARTICLES.values()}
DEFAULT_PARTICLE = "gamma"
ENERGY_RANGE_GEV = (1.0, 10.0)
MAX_ENERGY_GEV = 100.0
MIN_ENERGY_GEV = 0.1
MAX_ANGLE_DEG = 45.0  # largest polar angle of incidence this transverse size contains
SPECTRA = ("uniform", "log-uniform")


def _layer_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer: absorber thickness, z of the front of the absorber and z of the silicon centre (mm)."""
    absorber = np.where(np.arange(N_LAYERS) < N_THIN_LAYERS, ABSORBER_THIN_MM, ABSORBER_THICK_MM)
    pitch = absorber + SILICON_MM + BOARD_MM
    front = np.concatenate([[0.0], np.cumsum(pitch)[:-1]])
    return absorber, front, front + absorber + SILICON_MM / 2


ABSORBER_MM, LAYER_FRONT_MM, SILICON_Z_MM = _layer_table()
TOTAL_DEPTH_MM = float(LAYER_FRONT_MM[-1] + ABSORBER_MM[-1] + SILICON_MM + BOARD_MM)


def cell_centre_mm(index: np.ndarray) -> np.ndarray:
    """x (or y) in mm of the centres of cells with this index."""
    return (np.asarray(index, dtype=np.float64) - CENTRE_CELL) * CELL_SIZE_MM


def cell_of(coordinate_mm: np.ndarray) -> np.ndarray:
    """The cell index (int64) holding x (or y) in mm; may lie outside 0..N_CELLS-1 off the plane."""
    return np.floor(np.asarray(coordinate_mm, dtype=np.float64) / CELL_SIZE_MM + CENTRE_CELL + 0.5).astype(np.int64)


def absorber_material(absorber: str) -> str:
    if absorber not in ABSORBERS:
        raise HitgenError(f"unknown absorber '{absorber}' (known: {', '.join(ABSORBERS)})")
    return ABSORBERS[absorber][0]


def depth_x0(absorber: str) -> np.ndarray:
    """Absorber depth in radiation lengths (of the absorber alone) at the silicon of every layer."""
    x0 = ABSORBERS[absorber][1]
    return np.cumsum(ABSORBER_MM) / x0


INFO = DetectorInfo(
    name=NAME,
    version=SPEC_VERSION,
    hit_fields=(
        FieldSpec("layer", "int8", unit="", doc="sampling layer, 0 (front) to 29", low=0, high=N_LAYERS - 1),
        FieldSpec("cell_x", "int16", unit="", doc=f"cell column, 0 to {N_CELLS - 1} (x = (i - {CENTRE_CELL}) * 5 mm)", low=0, high=MAX_N_CELLS - 1),
        FieldSpec("cell_y", "int16", unit="", doc=f"cell row, 0 to {N_CELLS - 1} (y = (j - {CENTRE_CELL}) * 5 mm)", low=0, high=MAX_N_CELLS - 1),
        FieldSpec("energy", "float32", unit="MeV", doc="energy deposited in the silicon cell", low=0.0),
    ),
    condition_fields=(
        FieldSpec("energy", "float32", unit="GeV", doc="kinetic energy of the incident particle", low=0.0, high=MAX_ENERGY_GEV),
        FieldSpec("direction", "float32", (3,), unit="", doc="unit direction of the incident particle", low=-1.0, high=1.0),
        FieldSpec("entry_point", "float32", (3,), unit="mm", doc="where the particle enters the front face (z = 0)"),
        FieldSpec("pdg", "int32", unit="", doc="PDG code: 22, 11, -11, 13, -13"),
    ),
    extra={
        "absorber": DEFAULT_ABSORBER,  # a setting of simulate (--absorber); one absorber per file
        "layout": DEFAULT_LAYOUT,  # a setting of simulate (--layout); the entries below are its geometry
        "field": DEFAULT_FIELD,  # a setting of simulate (--field on|off)
        "field_tesla": FIELD_TESLA,
        "field_direction": [0.0, 1.0, 0.0],
        "n_layers": N_LAYERS,
        "absorber_mm": ABSORBER_MM.tolist(),
        "silicon_mm": SILICON_MM,
        "board_mm": BOARD_MM,
        "board_material": BOARD_MATERIAL,
        "cell_size_mm": CELL_SIZE_MM,
        "n_cells": N_CELLS,
        "threshold_mev": THRESHOLD_MEV,
        "absorber_materials": {k: v[0] for k, v in ABSORBERS.items()},
    },
)


# --- conditions ---------------------------------------------------------------------------------
def sample_conditions(
    n: int,
    rng: np.random.Generator,
    particle: str = DEFAULT_PARTICLE,
    energy_range: tuple[float, float] = ENERGY_RANGE_GEV,
    energy_spectrum: str = "uniform",
    max_angle: float = 0.0,
) -> dict[str, np.ndarray]:
    """n incident particles: kinetic energy (GeV) uniform or log-uniform in energy_range, polar
    angle uniform in cos(theta) up to max_angle (degrees; 0: normal incidence), azimuth uniform,
    entry point uniform over the central cell of the front face."""
    if particle not in PARTICLES:
        raise HitgenError(f"unknown particle '{particle}' (known: {', '.join(PARTICLES)})")
    lo, hi = (float(v) for v in energy_range)
    if not (MIN_ENERGY_GEV <= lo < hi <= MAX_ENERGY_GEV):
        raise HitgenError(f"--energy-range {lo:g}:{hi:g}: need {MIN_ENERGY_GEV:g} <= LO < HI <= {MAX_ENERGY_GEV:g} GeV")
    if energy_spectrum not in SPECTRA:
        raise HitgenError(f"unknown energy spectrum '{energy_spectrum}' (known: {', '.join(SPECTRA)})")
    if not 0.0 <= max_angle <= MAX_ANGLE_DEG:
        raise HitgenError(f"--max-angle {max_angle:g}: need 0 to {MAX_ANGLE_DEG:g} degrees")
    u = rng.random(n)
    energy = lo + (hi - lo) * u if energy_spectrum == "uniform" else np.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    cos_max = math.cos(math.radians(max_angle))
    cos_theta = 1.0 - (1.0 - cos_max) * rng.random(n)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
    phi = rng.uniform(0.0, 2 * math.pi, n)
    direction = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)
    entry = np.zeros((n, 3))
    entry[:, :2] = rng.uniform(-CELL_SIZE_MM / 2, CELL_SIZE_MM / 2, (n, 2))
    return {
        "energy": energy.astype(np.float32),
        "direction": direction.astype(np.float32),
        "entry_point": entry.astype(np.float32),
        "pdg": np.full(n, PARTICLES[particle][0], np.int32),
    }


def check_conditions(conditions: dict[str, Any]) -> list[str]:
    """Beyond the fields' ranges: known particles, unit directions pointing into the slab."""
    problems = []
    if "pdg" in conditions and len(conditions["pdg"]):
        unknown = ~np.isin(conditions["pdg"], list(MASS_GEV))
        if unknown.any():
            problems.append(f"conditions/pdg holds {int(unknown.sum())} code(s) other than {sorted(MASS_GEV)}")
    if "direction" in conditions and len(conditions["direction"]):
        d = conditions["direction"].astype(np.float64)
        if np.abs(np.linalg.norm(d, axis=1) - 1.0).max() > 1e-3 or (d[:, 2] <= 0).any():
            problems.append("conditions/direction holds vectors that are not unit vectors into the slab (+z)")
    return problems


def primaries(conditions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pdg, momentum in GeV, vertex in mm) of the primaries: the particle starts at its entry point."""
    pdg = conditions["pdg"].astype(np.int64)
    mass = np.array([MASS_GEV[int(p)] for p in pdg]) if len(pdg) else np.zeros(0)
    t = conditions["energy"].astype(np.float64)
    p = np.sqrt(t * (t + 2 * mass))
    momentum = conditions["direction"].astype(np.float64) * p[:, None]
    return pdg, momentum, conditions["entry_point"].astype(np.float64)


# --- digitisation --------------------------------------------------------------------------------
def digitize(
    offsets: np.ndarray, layer: np.ndarray, cell_x: np.ndarray, cell_y: np.ndarray, edep_mev: np.ndarray, above: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The cells whose deposit passes the layout's threshold (``above``, decided where the layout is
    known), sorted by (layer, cell_x, cell_y) within each event; the truth is the silicon energy per
    layer before the threshold (MeV, (N, 30) float32)."""
    n = len(offsets) - 1
    layer, cell_x, cell_y = (np.asarray(a, dtype=np.int64) for a in (layer, cell_x, cell_y))
    event = np.repeat(np.arange(n), np.diff(offsets))
    visible = np.zeros((n, N_LAYERS))
    np.add.at(visible, (event, layer), edep_mev)
    keep = np.asarray(above, dtype=bool)
    order = np.lexsort((cell_y[keep], cell_x[keep], layer[keep], event[keep]))
    counts = np.bincount(event[keep], minlength=n)
    new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    hits = {
        "layer": layer[keep][order].astype(np.int8),
        "cell_x": cell_x[keep][order].astype(np.int16),
        "cell_y": cell_y[keep][order].astype(np.int16),
        "energy": np.asarray(edep_mev)[keep][order].astype(np.float32),
    }
    return new_offsets, hits, {"visible_energy_layer": visible.astype(np.float32)}
