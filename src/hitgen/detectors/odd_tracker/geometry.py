"""`odd-tracker`: an ODD-like silicon barrel tracker -- geometry, module tiling, geometry
ids, module-local coordinates and condition sampling. Pure numpy; no Geant4 here (the Geant4
description that uses these constants is `hitgen.detectors.odd_tracker.geant4`).

Frames
------
Lab: z along the beam (and the solenoid field), the nominal interaction point at the origin,
millimetres and GeV. A module is a flat silicon rectangle whose centre sits at radius r and azimuth
phi, at height z; its local frame has u along the azimuthal direction (-sin phi, cos phi, 0), v
along z and w along the outward normal (cos phi, sin phi, 0); (local_u, local_v) is the position on
the module's mid-plane, 0 at its centre.

The layout (documented choices; "ODD-like", not the Open Data Detector's exact description)
--------------------------------------------------------------------------------------------
Radii as the track GPT's specification gives them: pixel layers at 34, 70, 116, 172 mm, short-strip layers at 260, 360, 500,
660 mm, long-strip layers at 820 and 1020 mm. Where the issue is silent:
- module sizes: pixels 16.8 x 72 mm (u x v), 0.15 mm of silicon; short and long strips 48 x 108 mm,
  0.32 mm of silicon (hybrid pixel and strip module sizes of this order are what LHC trackers use);
- barrel half-lengths: 480 mm (pixels), 1080 mm (short strips), 1080 mm (long strips), so that the
  tracks of |eta| < 1 from a beam spot of +-50 mm cross every layer;
- tiling: the fewest modules per ring such that even an outer-staggered module spans the azimuthal
  pitch with 2% of its width to spare, and the
  fewest per row that cover the half-length with at least 2% overlap in v; neighbouring modules in
  phi alternate by +-stagger of their layer's radius and neighbouring rows in z by +-stagger/4, so
  overlapping modules never intersect (tested);
- passive material: a beryllium beam pipe (0.8 mm at 24 mm radius) and one carbon support cylinder
  just inside every layer (0.3 mm for pixel layers, 1.0 mm for strip layers: 0.15% and 0.5% of a
  radiation length, the order of an LHC tracker's per-layer support; the silicon adds 0.16% and
  0.34%); the world is vacuum;
- read-out pitches (for the digitisation of the reconstruction): 50 x 50 um pixels;
  80 um x 1.2 mm short strips; 80 um x 10.8 mm long strips (resolution pitch / sqrt(12));
- geometry ids in the ACTS bit layout (volume 8 bits, boundary 8, layer 12, approach 8, sensitive
  20, extra 8) with the ODD's volume numbers (pixel barrel 17, short strips 24, long strips 29),
  layer numbers 2, 4, 6, ... and sensitive numbers from 1, so ids look like those of ACTS files.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.fields import DetectorInfo, FieldSpec

NAME = "odd-tracker"
SPEC_VERSION = 1
FIELD_TESLA = 2.6  # solenoid field along +z
BEAM_SPOT_HALF_Z_MM = 50.0  # vertices uniform in z over +-50 mm, on the beam line
MIN_OVERLAP = 0.02  # of the module size, in u and in v
Z_STAGGER_FRACTION = 0.25  # neighbouring rows in z sit +- this fraction of the layer's stagger apart
BEAM_PIPE_RADIUS_MM, BEAM_PIPE_THICKNESS_MM = 24.0, 0.8  # beryllium
SUPPORT_GAP_MM = 0.5  # between a support cylinder and the innermost silicon of its layer
WORLD_HALF_MM = (1200.0, 1200.0, 1300.0)  # vacuum box around the barrel


@dataclass(frozen=True)
class Subsystem:
    name: str
    volume: int  # ACTS-style volume number
    radii_mm: tuple[float, ...]
    module_u_mm: float  # module width along the azimuthal direction
    module_v_mm: float  # module length along z
    thickness_mm: float
    half_length_mm: float
    pitch_u_mm: float
    pitch_v_mm: float
    stagger_mm: float  # alternate modules sit this much in and out of the layer radius
    support_mm: float  # carbon support cylinder per layer

    def radial_extent(self, radius: float) -> tuple[float, float]:
        """Innermost and outermost radius any silicon of a layer at `radius` reaches."""
        out = self.stagger_mm * (1 + Z_STAGGER_FRACTION)
        r_max = math.hypot(radius + out + self.thickness_mm / 2, self.module_u_mm / 2)
        return radius - out - self.thickness_mm / 2, r_max


SUBSYSTEMS = (
    Subsystem("pixel", 17, (34.0, 70.0, 116.0, 172.0), 16.8, 72.0, 0.15, 480.0, 0.05, 0.05, 1.0, 0.3),
    Subsystem("short_strip", 24, (260.0, 360.0, 500.0, 660.0), 48.0, 108.0, 0.32, 1080.0, 0.08, 1.2, 2.0, 1.0),
    Subsystem("long_strip", 29, (820.0, 1020.0), 48.0, 108.0, 0.32, 1080.0, 0.08, 10.8, 2.0, 1.0),
)

# --- geometry ids (the ACTS GeometryIdentifier bit layout) -----------------------------------------
_FIELDS = {"volume": (56, 0xFF), "boundary": (48, 0xFF), "layer": (36, 0xFFF), "approach": (28, 0xFF), "sensitive": (8, 0xFFFFF), "extra": (0, 0xFF)}


def encode_geometry_id(volume, layer, sensitive) -> np.ndarray:
    """uint64 ids from volume, layer and sensitive numbers (arrays or scalars; boundary, approach,
    extra 0). Values outside their bit fields are refused."""
    out = np.zeros(np.broadcast(volume, layer, sensitive).shape, dtype=np.uint64)
    for name, value in (("volume", volume), ("layer", layer), ("sensitive", sensitive)):
        shift, mask = _FIELDS[name]
        v = np.asarray(value, dtype=np.int64)
        if np.any((v < 0) | (v > mask)):
            raise ValueError(f"geometry id field {name} out of range 0..{mask}")
        out |= v.astype(np.uint64) << np.uint64(shift)
    return out


def decode_geometry_id(gid) -> dict[str, np.ndarray]:
    g = np.asarray(gid, dtype=np.uint64)
    return {name: ((g >> np.uint64(shift)) & np.uint64(mask)).astype(np.int64) for name, (shift, mask) in _FIELDS.items()}


# --- module tiling ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Modules:
    """Every sensitive module, one row each (arrays of equal length)."""

    geometry_id: np.ndarray  # uint64
    layer: np.ndarray  # global layer index 0..9, inside out
    radius: np.ndarray  # of the module centre, mm (the layer radius +- stagger)
    phi: np.ndarray  # of the module centre
    z: np.ndarray  # of the module centre, mm
    half_u: np.ndarray
    half_v: np.ndarray
    thickness: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry_id)

    def centre(self) -> np.ndarray:
        return np.stack([self.radius * np.cos(self.phi), self.radius * np.sin(self.phi), self.z], axis=-1)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit vectors u (azimuthal), v (z) and w (outward normal) of every module, (M, 3) each."""
        c, s = np.cos(self.phi), np.sin(self.phi)
        zero, one = np.zeros_like(c), np.ones_like(c)
        return np.stack([-s, c, zero], -1), np.stack([zero, zero, one], -1), np.stack([c, s, zero], -1)


def ring_size(radius: float, module_u: float, stagger: float) -> int:
    """Modules per ring: the fewest such that even a module on the outer (staggered) radius spans
    the azimuthal pitch with MIN_OVERLAP of its width to spare."""
    half_angle = math.atan(module_u / 2 * (1 - MIN_OVERLAP) / (radius + stagger * (1 + Z_STAGGER_FRACTION)))
    return math.ceil(2 * math.pi / (2 * half_angle))


def row_size(half_length: float, module_v: float) -> int:
    """Modules per row along z: the fewest that cover +-half_length with MIN_OVERLAP in v."""
    return math.ceil(2 * half_length / (module_v * (1 - MIN_OVERLAP)))


def build_modules() -> Modules:
    cols: dict[str, list] = {k: [] for k in ("geometry_id", "layer", "radius", "phi", "z", "half_u", "half_v", "thickness")}
    layer_index = 0
    for sub in SUBSYSTEMS:
        for i, r in enumerate(sub.radii_mm):
            n_phi, n_z = ring_size(r, sub.module_u_mm, sub.stagger_mm), row_size(sub.half_length_mm, sub.module_v_mm)
            if n_phi % 2:  # the +- stagger must alternate all the way round
                n_phi += 1
            step_z = (2 * sub.half_length_mm - sub.module_v_mm) / max(n_z - 1, 1)
            k_phi, k_z = np.meshgrid(np.arange(n_phi), np.arange(n_z), indexing="ij")
            k_phi, k_z = k_phi.ravel(), k_z.ravel()
            cols["geometry_id"].append(encode_geometry_id(sub.volume, 2 * (i + 1), 1 + np.arange(len(k_phi))))
            cols["layer"].append(np.full(len(k_phi), layer_index))
            z_stagger = Z_STAGGER_FRACTION * sub.stagger_mm * np.where(k_z % 2 == 0, -1, 1)
            cols["radius"].append(r + np.where(k_phi % 2 == 0, -sub.stagger_mm, sub.stagger_mm) + z_stagger)
            cols["phi"].append(2 * np.pi * k_phi / n_phi)
            cols["z"].append(-sub.half_length_mm + sub.module_v_mm / 2 + k_z * step_z)
            for key, value in (("half_u", sub.module_u_mm / 2), ("half_v", sub.module_v_mm / 2), ("thickness", sub.thickness_mm)):
                cols[key].append(np.full(len(k_phi), value))
            layer_index += 1
    return Modules(**{k: np.concatenate(v) for k, v in cols.items()})


cached_modules = functools.cache(build_modules)  # the module table, built once per process on first use


def to_local(modules: Modules, index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Global points (N, 3) mm on modules `index` (N,) -> local (u, v, w) (N, 3)."""
    u, v, w = (a[index] for a in modules.axes())
    d = points - modules.centre()[index]
    return np.stack([(d * u).sum(-1), (d * v).sum(-1), (d * w).sum(-1)], axis=-1)


def to_global(modules: Modules, index: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Local (u, v) or (u, v, w) on modules `index` -> global points (N, 3)."""
    u, v, w = (a[index] for a in modules.axes())
    local = np.asarray(local, dtype=np.float64)
    out = modules.centre()[index] + local[:, :1] * u + local[:, 1:2] * v
    return out + local[:, 2:3] * w if local.shape[1] > 2 else out


# --- conditions -------------------------------------------------------------------------------------
PARTICLES = {"mu-": (13, -1), "mu+": (-13, 1), "e-": (11, -1), "pi+": (211, 1)}  # PDG code, charge
MAX_PT_GEV = 1.0e4  # the largest pT simulate takes
MAX_MOMENTUM_GEV = 2.0e5  # the largest momentum component a file may hold (pT 10 TeV at the acceptance's edge)
# |eta| beyond which a particle from the beam spot's centre misses even the innermost pixel layer
MAX_ETA = math.asinh(SUBSYSTEMS[0].half_length_mm / SUBSYSTEMS[0].radii_mm[0])


def sample_conditions(
    n: int,
    rng: np.random.Generator,
    particle: str = "mu-",
    pt_range: tuple[float, float] = (80.0, 85.0),
    eta_range: tuple[float, float] = (0.05, 0.1),
    phi_range: tuple[float, float] | None = (0.0, 0.1),
) -> dict[str, np.ndarray]:
    """Primary particles: pT, eta, phi uniform in their ranges (phi_range None: all of 0..2 pi),
    the vertex on the beam line, z uniform over +-50 mm; particle "mu+-" draws either charge."""
    if particle == "mu+-":
        pdg = np.where(rng.random(n) < 0.5, 13, -13)
    elif particle in PARTICLES:
        pdg = np.full(n, PARTICLES[particle][0])
    else:
        raise HitgenError(f"unknown particle '{particle}' (known: {', '.join([*PARTICLES, 'mu+-'])})")
    charge = np.where(np.abs(pdg) == 211, np.sign(pdg), -np.sign(pdg))  # mu-, e- (positive codes) are negative
    pt = rng.uniform(*pt_range, n)
    eta = rng.uniform(*eta_range, n)
    phi = rng.uniform(*(phi_range or (0.0, 2 * np.pi)), n)
    momentum = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=1)
    vertex = np.zeros((n, 3))
    vertex[:, 2] = rng.uniform(-BEAM_SPOT_HALF_Z_MM, BEAM_SPOT_HALF_Z_MM, n)
    return {
        "pdg": pdg.astype(np.int32),
        "charge": charge.astype(np.int8),
        "vertex": vertex.astype(np.float32),
        "momentum": momentum.astype(np.float32),
    }


# --- event-file fields and Geant4 hits -> hit fields ------------------------------------------------
INFO = DetectorInfo(
    name=NAME,
    version=SPEC_VERSION,
    hit_fields=(
        FieldSpec("geometry_id", "uint64", doc="module id in the ACTS bit layout (volume, layer, sensitive)"),
        FieldSpec(
            "local_u", "float32", unit="mm", doc="position on the module along its azimuthal axis", low=-WORLD_HALF_MM[2], high=WORLD_HALF_MM[2]
        ),
        FieldSpec("local_v", "float32", unit="mm", doc="position on the module along z", low=-WORLD_HALF_MM[2], high=WORLD_HALF_MM[2]),
        FieldSpec("px", "float32", unit="GeV", doc="momentum of the particle after the hit", low=-MAX_MOMENTUM_GEV, high=MAX_MOMENTUM_GEV),
        FieldSpec("py", "float32", unit="GeV", doc="momentum of the particle after the hit", low=-MAX_MOMENTUM_GEV, high=MAX_MOMENTUM_GEV),
        FieldSpec("pz", "float32", unit="GeV", doc="momentum of the particle after the hit", low=-MAX_MOMENTUM_GEV, high=MAX_MOMENTUM_GEV),
    ),
    condition_fields=(
        FieldSpec("pdg", "int32", doc="PDG id of the primary"),
        FieldSpec("charge", "int8", unit="e", doc="charge of the primary", low=-1, high=1),
        FieldSpec("vertex", "float32", (3,), "mm", "production vertex (on the beam line)", low=-WORLD_HALF_MM[2], high=WORLD_HALF_MM[2]),
        FieldSpec("momentum", "float32", (3,), "GeV", "initial (px, py, pz)", low=-MAX_MOMENTUM_GEV, high=MAX_MOMENTUM_GEV),
    ),
    extra={
        "field_tesla": FIELD_TESLA,
        "beam_spot_half_z_mm": BEAM_SPOT_HALF_Z_MM,
        "hits": "primary particle only, one hit per module crossed (Geant4 steps in a module merged)",
        "subsystems": [
            {
                "name": s.name,
                "volume": s.volume,
                "radii_mm": list(s.radii_mm),
                "module_mm": [s.module_u_mm, s.module_v_mm, s.thickness_mm],
                "half_length_mm": s.half_length_mm,
                "pitch_mm": [s.pitch_u_mm, s.pitch_v_mm],
                "support_carbon_mm": s.support_mm,
            }
            for s in SUBSYSTEMS
        ],
    },
)


def hits_from_steps(modules: Modules, module: np.ndarray, position: np.ndarray, momentum: np.ndarray) -> dict[str, np.ndarray]:
    """Event-file hit fields from Geant4 hits: module index (H,), global position (H, 3) mm (the
    mid-point of the primary's path through the module) and momentum after the hit (H, 3) GeV."""
    module = module.astype(np.int64)
    local = to_local(modules, module, position)
    return {
        "geometry_id": modules.geometry_id[module],
        "local_u": local[:, 0].astype(np.float32),
        "local_v": local[:, 1].astype(np.float32),
        "px": momentum[:, 0].astype(np.float32),
        "py": momentum[:, 1].astype(np.float32),
        "pz": momentum[:, 2].astype(np.float32),
    }


def module_index(modules: Modules, geometry_id: np.ndarray) -> np.ndarray:
    """Row of every geometry id in `modules`; unknown ids raise ValueError naming the first."""
    order = np.argsort(modules.geometry_id)
    sorted_ids = modules.geometry_id[order]
    pos = np.clip(np.searchsorted(sorted_ids, geometry_id), 0, len(sorted_ids) - 1)
    bad = sorted_ids[pos] != geometry_id
    if bad.any():
        g = int(np.asarray(geometry_id)[bad][0])
        d = {k: int(v) for k, v in decode_geometry_id(g).items()}
        raise ValueError(f"geometry id {g} (volume {d['volume']}, layer {d['layer']}, sensitive {d['sensitive']}) is not a module of {NAME}")
    return order[pos]
