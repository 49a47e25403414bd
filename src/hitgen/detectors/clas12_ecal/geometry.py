"""`clas12-ecal`: a CLAS12-like lead/scintillator electromagnetic calorimeter (PCAL + EC inner + EC outer).

Pure geometry, condition sampling and digitisation; the Geant4 description that uses these
constants is `hitgen.detectors.clas12_ecal.geant4`.

Frames
------
Lab: z along the beam, the target at the origin, the sector centred on azimuth 0.
Calorimeter (local): the front face of PCAL is the plane z_loc = 0; z_loc grows with depth along
the face normal n = (sin 25 deg, 0, cos 25 deg). x_loc ("a") points away from the beam in the
sector's mid-plane, y_loc ("b") = lab y. The face centre sits FACE_DISTANCE_CM from the target
along n. The lab->local map is a rotation about lab y by TILT_DEG.

Readout geometry
----------------
Every module is an equilateral triangle centred on the face axis, apex towards the beam.
U strips run parallel to the far side (the base), V and W strips parallel to the two other
sides. A view's strip coordinate d is the distance of a point from the vertex opposite the side
its strips are parallel to, measured along that side's outward normal; d runs from 0 at the
vertex to the triangle height H at the side, and strip k covers k*w <= d < (k+1)*w.
Strips are read out at one end, the end reached by turning the side normal +90 degrees.

Simplifications against the real CLAS12 (documented choices, see docs/detectors/clas12-ecal.md): flat modules placed
back to back with no gap; every view of a module tiles the same triangle, so PCAL V/W strips are
H/62 = 4.94 cm wide (the real PCAL doubles some strips instead); EC strips are 10 cm wide, so the
EC triangle (height 3.6 m) is larger than PCAL's (3.06 m); vacuum between target and face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hitgen.core.csr import offsets_from_counts
from hitgen.core.fields import DetectorInfo, FieldSpec

NAME = "clas12-ecal"
SPEC_VERSION = 1

# --- geometry -----------------------------------------------------------------------------------
SCINTILLATOR_THICKNESS_CM = 1.0  # plastic scintillator strips, upstream part of every layer
LEAD_THICKNESS_CM = 0.22  # lead sheet, downstream part of every layer
LAYER_PITCH_CM = SCINTILLATOR_THICKNESS_CM + LEAD_THICKNESS_CM
FACE_DISTANCE_CM = 700.0  # target -> PCAL front face, along the face normal
TILT_DEG = 25.0  # polar angle of the face normal
VIEWS = ("U", "V", "W")

# module name -> (number of layers, strips per view U/V/W, triangle height in cm)
PCAL_STRIP_WIDTH_CM = 4.5
EC_STRIP_WIDTH_CM = 10.0
MODULES: dict[str, tuple[int, tuple[int, int, int], float]] = {
    "PCAL": (15, (68, 62, 62), 68 * PCAL_STRIP_WIDTH_CM),
    "ECIN": (15, (36, 36, 36), 36 * EC_STRIP_WIDTH_CM),
    "ECOUT": (24, (36, 36, 36), 36 * EC_STRIP_WIDTH_CM),
}
N_READOUT_LAYERS = 9
MAX_HITS_PER_LAYER = 20  # the readout keeps the 20 largest-ADC strips of a readout layer

# --- digitisation -------------------------------------------------------------------------------
# ADC: visible energy at the strip -> light at the readout end -> photoelectrons -> counts.
ATTENUATION_LENGTH_CM = 376.0  # light attenuation along a strip (order of CLAS12 EC strips)
PHOTOELECTRONS_PER_MEV = {"PCAL": 11.5, "ECIN": 3.5, "ECOUT": 3.5}  # at the readout end
SPE_RELATIVE_WIDTH = 0.4  # relative width of the single-photoelectron charge response
ADC_PER_MEV = 100.0  # gain-matched: 1 MeV of light at the readout end gives 100 counts
ADC_NOISE_COUNTS = 3.0  # Gaussian electronic noise on the integrated charge
ADC_THRESHOLD_COUNTS = 10  # strips below this are not read out (0.1 MeV at the readout end)
ADC_MAX_COUNTS = 94920  # the digitiser saturates here (the top of the CLAS12 ADC binning)
# TDC: time of flight to the shower + light propagation to the readout end + walk + jitter.
TDC_THRESHOLD_COUNTS = 100  # discriminator threshold in ADC counts; below it tdc = 0 (no time)
EFFECTIVE_LIGHT_SPEED_CM_PER_NS = 18.1  # signal speed along a strip
TIME_JITTER_NS = 0.3  # Gaussian timing resolution
TIME_WALK_NS = 2.0  # leading-edge walk at the discriminator threshold, scaling as 1/sqrt(ADC)
TDC_LSB_NS = 0.025  # 25 ps per TDC count
SPEED_OF_LIGHT_CM_PER_NS = 29.9792458

# --- default photon kinematics --------------------------------------------------------------------
THETA_RANGE_DEG = (5.0, 35.0)
PHI_RANGE_DEG = (-30.0, 30.0)
MOMENTUM_RANGE_GEV = (0.5, 10.0)
# the largest |p| simulate takes and an event file may hold. An EM shower's Geant4 time grows about
# linearly with the energy (measured: 17 ms per photon of 0.5-10 GeV on one core), so 100 GeV costs
# of the order of 0.3 s per event (an estimate); the ADC saturates before that in the shower core
MAX_MOMENTUM_GEV = 100.0
FIDUCIAL_MARGIN_CM = 2 * PCAL_STRIP_WIDTH_CM  # the photon's PCAL impact stays this far inside
PHOTON_PDG = 22


@dataclass(frozen=True)
class ReadoutLayer:
    """One of the nine readout layers: the strips of one view in one module, summed over depth."""

    index: int
    module: str
    view: str
    n_strips: int
    strip_width_cm: float
    height_cm: float
    layer_numbers: tuple[int, ...]  # global layer numbers (0..53) read out together

    @property
    def name(self) -> str:
        return f"{self.module}_{self.view}"

    @property
    def mean_depth_cm(self) -> float:
        """Mean local z of the centres of this readout layer's scintillator sheets."""
        return float(np.mean([scintillator_center_z(n) for n in self.layer_numbers]))


def _build_layers() -> tuple[list[ReadoutLayer], list[tuple[str, int, int]]]:
    readout: list[ReadoutLayer] = []
    stack: list[tuple[str, int, int]] = []  # global layer -> (module, layer in module, readout index)
    for m, (module, (n_layers, strips, height)) in enumerate(MODULES.items()):
        first = len(stack)
        for j in range(n_layers):
            stack.append((module, j, 3 * m + j % 3))
        for v, view in enumerate(VIEWS):
            numbers = tuple(first + j for j in range(n_layers) if j % 3 == v)
            readout.append(ReadoutLayer(3 * m + v, module, view, strips[v], height / strips[v], height, numbers))
    return readout, stack


READOUT_LAYERS, LAYER_STACK = _build_layers()
N_LAYERS = len(LAYER_STACK)  # 54
STRIPS_PER_LAYER = tuple(r.n_strips for r in READOUT_LAYERS)  # 68/62/62/36/.../36
TOTAL_DEPTH_CM = N_LAYERS * LAYER_PITCH_CM


def scintillator_center_z(layer_number: int) -> float:
    """Local z of the centre of a global layer's scintillator sheet."""
    return layer_number * LAYER_PITCH_CM + 0.5 * SCINTILLATOR_THICKNESS_CM


def lead_center_z(layer_number: int) -> float:
    return layer_number * LAYER_PITCH_CM + SCINTILLATOR_THICKNESS_CM + 0.5 * LEAD_THICKNESS_CM


# --- triangle and strips ---------------------------------------------------------------------------
def triangle_vertices(height_cm: float) -> np.ndarray:
    """Vertices (3, 2) of the equilateral triangle of a module in the face frame (a, b), counter-
    clockwise: apex A towards the beam, then B and C on the far side (the base)."""
    h = height_cm
    return np.array([[-2 * h / 3, 0.0], [h / 3, -h / math.sqrt(3)], [h / 3, h / math.sqrt(3)]])


# per view: index of the vertex opposite the side its strips run along, and that side's outward normal
_VIEW_AXES = {
    "U": (0, (1.0, 0.0)),  # strips parallel to BC (the base), d measured from A
    "V": (1, (-0.5, math.sqrt(3) / 2)),  # strips parallel to CA, d measured from B
    "W": (2, (-0.5, -math.sqrt(3) / 2)),  # strips parallel to AB, d measured from C
}


def view_frame(view: str, height_cm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin vertex P, unit normal n, unit along-strip t) of a view; d = (x - P).n, s = (x - P).t."""
    vertex, normal = _VIEW_AXES[view]
    p = triangle_vertices(height_cm)[vertex]
    n = np.array(normal)
    t = np.array([-n[1], n[0]])
    return p, n, t


def strip_coordinate(points: np.ndarray, layer: ReadoutLayer) -> np.ndarray:
    """Distance d (cm) of points (..., 2) in the face frame from the view's origin vertex."""
    p, n, _ = view_frame(layer.view, layer.height_cm)
    return (np.asarray(points, dtype=float) - p) @ n


def inside_triangle(points: np.ndarray, height_cm: float, margin_cm: float = 0.0) -> np.ndarray:
    """True where points (..., 2) lie inside the triangle shrunk by margin_cm on every side."""
    pts = np.asarray(points, dtype=float)
    ok = np.ones(pts.shape[:-1], dtype=bool)
    for view in VIEWS:
        p, n, _ = view_frame(view, height_cm)
        d = (pts - p) @ n
        ok &= (d >= margin_cm) & (d <= height_cm - margin_cm)
    return ok


def strip_index(points: np.ndarray, layer: ReadoutLayer) -> np.ndarray:
    """Strip index of points (..., 2) in one readout layer; -1 outside the module's triangle."""
    pts = np.asarray(points, dtype=float)
    k = np.floor(strip_coordinate(pts, layer) / layer.strip_width_cm).astype(np.int64)
    k = np.minimum(k, layer.n_strips - 1)  # d == H exactly belongs to the last strip
    return np.where(inside_triangle(pts, layer.height_cm), k, -1)


def _clip(poly: list[np.ndarray], n: np.ndarray, c: float) -> list[np.ndarray]:
    """Keep the part of a convex polygon where x.n <= c (one Sutherland-Hodgman pass)."""
    out: list[np.ndarray] = []
    for i, cur in enumerate(poly):
        prev = poly[i - 1]
        fc, fp = cur @ n - c, prev @ n - c
        if fc <= 0:
            if fp > 0:
                out.append(prev + (cur - prev) * (fp / (fp - fc)))
            out.append(cur)
        elif fp <= 0:
            out.append(prev + (cur - prev) * (fp / (fp - fc)))
    return out


def strip_polygon(layer: ReadoutLayer, k: int) -> np.ndarray:
    """Outline (M, 2), counter-clockwise, of strip k: the triangle cut to k*w <= d <= (k+1)*w."""
    if not 0 <= k < layer.n_strips:
        raise ValueError(f"strip {k} out of range for {layer.name} ({layer.n_strips} strips)")
    p, n, _ = view_frame(layer.view, layer.height_cm)
    w = layer.strip_width_cm
    poly = list(triangle_vertices(layer.height_cm))
    poly = _clip(poly, n, p @ n + (k + 1) * w)
    poly = _clip(poly, -n, -(p @ n + k * w))
    out = np.array(poly)
    keep = np.ones(len(out), dtype=bool)  # drop repeated vertices left by clipping through a vertex
    keep[1:] = np.linalg.norm(np.diff(out, axis=0), axis=1) > 1e-9
    if np.linalg.norm(out[0] - out[-1]) <= 1e-9:
        keep[-1] = False
    return out[keep]


# --- frames and kinematics ---------------------------------------------------------------------
_TILT = math.radians(TILT_DEG)
# columns: local x (a), local y (b), local z (face normal n), expressed in the lab frame
LOCAL_TO_LAB = np.array([[math.cos(_TILT), 0.0, math.sin(_TILT)], [0.0, 1.0, 0.0], [-math.sin(_TILT), 0.0, math.cos(_TILT)]])
FACE_CENTER_LAB_CM = FACE_DISTANCE_CM * LOCAL_TO_LAB[:, 2]


def lab_to_local(points_lab: np.ndarray) -> np.ndarray:
    """Lab points (..., 3) in cm -> local (a, b, z_loc) with z_loc = 0 on the PCAL front face."""
    return (np.asarray(points_lab, dtype=float) - FACE_CENTER_LAB_CM) @ LOCAL_TO_LAB


def impact_points(directions_lab: np.ndarray, depth_cm: float | np.ndarray) -> np.ndarray:
    """Where straight lines from the target along directions (N, 3) cross local depth(s) z_loc.

    Returns lab points (N, ..., 3) in cm; depth_cm may be a scalar or an array of K depths, giving
    (N, K, 3). Directions must point into the calorimeter (positive component along the normal).
    """
    u = np.asarray(directions_lab, dtype=float)
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    along = u @ LOCAL_TO_LAB[:, 2]
    dist = (FACE_DISTANCE_CM + np.asarray(depth_cm, dtype=float)) / along[..., None]  # (N, K)
    return u[:, None, :] * dist[..., None] if np.ndim(depth_cm) else u * dist[:, :1]


def sample_conditions(
    n: int,
    rng: np.random.Generator,
    momentum_range: tuple[float, float] = MOMENTUM_RANGE_GEV,
    theta_range_deg: tuple[float, float] = THETA_RANGE_DEG,
    phi_range_deg: tuple[float, float] = PHI_RANGE_DEG,
) -> dict[str, np.ndarray]:
    """Photons from the target: |p| uniform, direction isotropic in the theta/phi window, kept
    only if the line of flight meets PCAL at least FIDUCIAL_MARGIN_CM inside its triangle."""
    pcal = READOUT_LAYERS[0]
    cos_lo, cos_hi = np.cos(np.radians(theta_range_deg[1])), np.cos(np.radians(theta_range_deg[0]))
    dirs = np.empty((0, 3))
    while len(dirs) < n:
        m = 2 * (n - len(dirs)) + 64
        cos_t = rng.uniform(cos_lo, cos_hi, m)
        phi = np.radians(rng.uniform(*phi_range_deg, m))
        sin_t = np.sqrt(1 - cos_t**2)
        d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
        face = lab_to_local(impact_points(d, 0.0))[:, :2]
        dirs = np.concatenate([dirs, d[inside_triangle(face, pcal.height_cm, FIDUCIAL_MARGIN_CM)]])
    p = rng.uniform(*momentum_range, n)
    return {
        "momentum": (dirs[:n] * p[:, None]).astype(np.float32),
        "pdg": np.full(n, PHOTON_PDG, dtype=np.int32),
    }


# --- digitisation --------------------------------------------------------------------------------
def shower_axis_points(momenta: np.ndarray) -> np.ndarray:
    """Lab points (N, 9, 3), cm: the photon's line of flight at each readout layer's mean depth."""
    depths = np.array([r.mean_depth_cm for r in READOUT_LAYERS])
    return impact_points(momenta, depths)


def _strip_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per readout layer: first global strip, origin vertex, along-strip unit vector, photoelectron
    yield; per global strip: half length of its centre line (cm)."""
    n_strips = np.array(STRIPS_PER_LAYER)
    first = np.concatenate([[0], np.cumsum(n_strips)[:-1]])
    half_len = np.empty(n_strips.sum())
    origin = np.empty((N_READOUT_LAYERS, 2))
    along = np.empty((N_READOUT_LAYERS, 2))
    for r in READOUT_LAYERS:
        p, _, t = view_frame(r.view, r.height_cm)
        origin[r.index], along[r.index] = p, t
        d_centre = (np.arange(r.n_strips) + 0.5) * r.strip_width_cm
        half_len[first[r.index] : first[r.index] + r.n_strips] = d_centre / math.sqrt(3)
    pe = np.array([PHOTOELECTRONS_PER_MEV[r.module] for r in READOUT_LAYERS])
    return first, origin, along, pe, half_len


_FIRST_STRIP, _ORIGIN, _ALONG, _PE_PER_MEV, _HALF_LENGTH = _strip_tables()


def light_path_and_time_of_flight(momenta: np.ndarray, event: np.ndarray, layer: np.ndarray, strip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For hits (event, layer, strip): the strip length (cm) between the shower axis and the
    readout end, and the photon's flight time (ns) from the target to the axis in that layer."""
    axis = shower_axis_points(momenta)  # (N, 9, 3) lab
    axis_face = lab_to_local(axis)[..., :2]  # (N, 9, 2) face frame
    half = _HALF_LENGTH[_FIRST_STRIP[layer] + strip]
    s = np.einsum("ij,ij->i", axis_face[event, layer] - _ORIGIN[layer], _ALONG[layer])
    path = half - np.clip(s, -half, half)
    tof = np.linalg.norm(axis[event, layer], axis=1) / SPEED_OF_LIGHT_CM_PER_NS
    return path, tof


def mean_adc(edep_mev: np.ndarray, path_cm: np.ndarray) -> np.ndarray:
    """Expected ADC (before photo-statistics and noise) of a strip with visible energy edep_mev."""
    return ADC_PER_MEV * edep_mev * np.exp(-path_cm / ATTENUATION_LENGTH_CM)


def digitize(
    momenta: np.ndarray,
    offsets: np.ndarray,
    layer: np.ndarray,
    strip: np.ndarray,
    edep_mev: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Turn Geant4 strip energies into readout hits, vectorised over a block of events.

    Input: per event (CSR over `offsets`) the visible energy `edep_mev` deposited in scintillator
    strip (`layer`, `strip`), summed over the sheets of that view. Output: new offsets and hit
    fields layer/strip/adc/tdc, sorted by (layer, strip) within each event, with at most
    MAX_HITS_PER_LAYER (the largest ADC) per readout layer.

    The light's path along the strip and the time of flight are taken at the photon's line of
    flight (the shower axis) in that readout layer; the lateral spread of an EM shower (a few cm)
    changes them by much less than the light-speed and jitter terms.
    """
    n_events = len(offsets) - 1
    event = np.repeat(np.arange(n_events), np.diff(offsets))
    layer = layer.astype(np.int64)
    strip = strip.astype(np.int64)
    path, tof = light_path_and_time_of_flight(momenta, event, layer, strip)

    # photo-statistics: Poisson photoelectrons, each with a smeared single-electron charge
    pe_per_mev = _PE_PER_MEV[layer]
    npe = rng.poisson(mean_adc(edep_mev, path) / ADC_PER_MEV * pe_per_mev)
    charge = npe + SPE_RELATIVE_WIDTH * np.sqrt(npe) * rng.standard_normal(len(npe))
    adc_f = ADC_PER_MEV * charge / pe_per_mev + ADC_NOISE_COUNTS * rng.standard_normal(len(npe))
    adc = np.minimum(np.rint(adc_f), ADC_MAX_COUNTS).astype(np.int64)

    walk = TIME_WALK_NS * np.sqrt(TDC_THRESHOLD_COUNTS / np.maximum(adc, 1))
    t_ns = tof + path / EFFECTIVE_LIGHT_SPEED_CM_PER_NS + walk + TIME_JITTER_NS * rng.standard_normal(len(adc))
    tdc = np.where(adc >= TDC_THRESHOLD_COUNTS, np.rint(t_ns / TDC_LSB_NS), 0).astype(np.int64)

    # threshold, then keep the MAX_HITS_PER_LAYER largest ADCs per (event, layer), then sort
    keep = adc >= ADC_THRESHOLD_COUNTS
    event, layer, strip, adc, tdc = event[keep], layer[keep], strip[keep], adc[keep], tdc[keep]
    order = np.lexsort((strip, -adc, layer, event))  # by event, layer, descending ADC
    event, layer, strip, adc, tdc = event[order], layer[order], strip[order], adc[order], tdc[order]
    group = event * N_READOUT_LAYERS + layer
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    rank = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
    keep = rank < MAX_HITS_PER_LAYER
    event, layer, strip, adc, tdc = event[keep], layer[keep], strip[keep], adc[keep], tdc[keep]
    order = np.lexsort((strip, layer, event))
    counts = np.bincount(event, minlength=n_events)
    new_offsets = offsets_from_counts(counts)
    hits = {
        "layer": layer[order].astype(np.int8),
        "strip": strip[order].astype(np.int16),
        "adc": adc[order].astype(np.int32),
        "tdc": tdc[order].astype(np.int32),
    }
    return new_offsets, hits


DIGITISATION = {
    "attenuation_length_cm": ATTENUATION_LENGTH_CM,
    "photoelectrons_per_mev": PHOTOELECTRONS_PER_MEV,
    "spe_relative_width": SPE_RELATIVE_WIDTH,
    "adc_per_mev": ADC_PER_MEV,
    "adc_noise_counts": ADC_NOISE_COUNTS,
    "adc_threshold_counts": ADC_THRESHOLD_COUNTS,
    "adc_max_counts": ADC_MAX_COUNTS,
    "tdc_threshold_counts": TDC_THRESHOLD_COUNTS,
    "effective_light_speed_cm_per_ns": EFFECTIVE_LIGHT_SPEED_CM_PER_NS,
    "time_jitter_ns": TIME_JITTER_NS,
    "time_walk_ns": TIME_WALK_NS,
    "tdc_lsb_ns": TDC_LSB_NS,
    "max_hits_per_layer": MAX_HITS_PER_LAYER,
}

INFO = DetectorInfo(
    name=NAME,
    version=SPEC_VERSION,
    hit_fields=(
        FieldSpec("layer", "int8", doc="readout layer 0-8: PCAL U/V/W, ECIN U/V/W, ECOUT U/V/W", low=0, high=N_READOUT_LAYERS - 1),
        FieldSpec("strip", "int16", doc="strip index within the readout layer", low=0, high=max(STRIPS_PER_LAYER) - 1),
        FieldSpec("adc", "int32", unit="counts", doc="integrated charge", low=0, high=ADC_MAX_COUNTS),
        FieldSpec("tdc", "int32", unit="25 ps", doc="time; 0 = below the TDC threshold", low=0),
    ),
    condition_fields=(
        FieldSpec("momentum", "float32", (3,), "GeV", "photon (px, py, pz) in the lab frame", low=-MAX_MOMENTUM_GEV, high=MAX_MOMENTUM_GEV),
        FieldSpec("pdg", "int32", doc="PDG id of the primary", low=PHOTON_PDG, high=PHOTON_PDG),
    ),
    extra={
        "readout_layers": [r.name for r in READOUT_LAYERS],
        "strips_per_layer": list(STRIPS_PER_LAYER),
        "max_hits_per_layer": MAX_HITS_PER_LAYER,
        "geometry": {
            "modules": {k: {"layers": v[0], "strips": list(v[1]), "height_cm": v[2]} for k, v in MODULES.items()},
            "scintillator_thickness_cm": SCINTILLATOR_THICKNESS_CM,
            "lead_thickness_cm": LEAD_THICKNESS_CM,
            "face_distance_cm": FACE_DISTANCE_CM,
            "tilt_deg": TILT_DEG,
        },
        "digitisation": DIGITISATION,
    },
)
