"""ACTS simulated hits (ActsExamples RootSimHitWriter + RootParticleWriter ROOT files) as
`odd-tracker` events, read with uproot.

One hitgen event per primary particle (vertex_secondary, generation and sub_particle all 0) with at
least one hit, in the order of (event_id, particle barcode); its hits sorted by their `index` along
the trajectory. Hits of secondaries are dropped (before any geometry check); the conditions (pdg,
charge, vertex, momentum) come from the particles file, and a hit's momentum is the one after it
(tp + deltap). Particle identities are read in either form ACTS has written: the packed uint64
`particle_id` (vertex_primary 12 bits, vertex_secondary 12, particle 16, generation 8,
sub_particle 16) or the five-number `barcode` vector (hits) / five vectors (particles).

Geometry: the files give a hit's global position and the ACTS geometry id of its surface, but not
the surfaces' transforms, so local coordinates cannot be computed for ACTS's own surfaces. Every
hit is therefore mapped onto hitgen's ODD-like barrel modules (`hitgen.detectors.odd_tracker`): the
layer whose radius is nearest the hit's transverse radius, and in it the module whose (u, v) bounds
contain the hit projected along the module normal, the nearest such module plane if several do.
Geometry ids and local (u, v) of the imported events refer to hitgen's modules, not to the ACTS
surfaces: files from the real Open Data Detector land on hitgen's approximation of it (same layer
radii, its own tiling). A primary's hit further than PLANE_TOLERANCE_MM from the plane of every
module that contains it, or outside every module (an endcap hit, say), is an error, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd_tracker

# A hit may sit this far from its module's mid-plane: more than the thickest silicon (0.32 mm) and
# the in/out stagger of neighbouring modules, well short of the 36 mm and more between layers.
PLANE_TOLERANCE_MM = 5.0
BOUNDS_SLACK_MM = 0.01  # float32 positions on a module's very edge still count as on it
BARCODE = ("vertex_primary", "vertex_secondary", "particle", "generation", "sub_particle")
_PACKING = ((52, 0xFFF), (40, 0xFFF), (24, 0xFFFF), (16, 0xFF), (0, 0xFFFF))  # shift, mask of each BARCODE field
HIT_BRANCHES = ("event_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "deltapx", "deltapy", "deltapz", "index")
PARTICLE_BRANCHES = ("event_id", "particle_type", "q", "vx", "vy", "vz", "px", "py", "pz")


def read_acts(hits_path: str | Path, particles_path: str | Path, hits_tree: str = "hits", particles_tree: str = "particles") -> EventSet:
    """The primaries of an ACTS hits file and its particles file as odd-tracker events."""
    hits_path, particles_path = Path(hits_path), Path(particles_path)
    hits = _read_hits(hits_path, hits_tree)
    parts = _read_particles(particles_path, particles_tree)
    h = {k: v[_is_primary(hits["barcode"])] for k, v in hits.items()}
    if not len(h["event"]):
        raise HitgenError(f"{hits_path}: tree '{hits_tree}' holds no hit of a primary particle")
    order = np.lexsort((h["index"], *h["barcode"].T[::-1], h["event"]))
    h = {k: v[order] for k, v in h.items()}
    key = np.column_stack([h["event"], h["barcode"]])
    starts = np.flatnonzero(np.r_[True, np.any(key[1:] != key[:-1], axis=1)])
    row = _lookup(key[starts], np.column_stack([parts["event"], parts["barcode"]]), particles_path)
    if np.any(row < 0):
        e, *bc = key[starts[np.argmax(row < 0)]].tolist()
        raise HitgenError(f"event {e}: particle {tuple(bc)} has hits in {hits_path} but is missing from {particles_path}")
    modules = odd_tracker.build_modules()
    module, local, layer = map_to_modules(modules, h["position"])
    bad = (module < 0) | (np.abs(local[:, 2]) > PLANE_TOLERANCE_MM)
    if bad.any():
        i = int(np.argmax(bad))
        radius = _layer_radii()[layer[i]]
        where = "outside every module" if module[i] < 0 else f"{abs(local[i, 2]):.1f} mm from the nearest module plane"
        x, y, z = h["position"][i]
        raise HitgenError(
            f"{hits_path}: event {h['event'][i]}, hit {h['index'][i]} of particle {tuple(h['barcode'][i].tolist())} at "
            f"({x:.1f}, {y:.1f}, {z:.1f}) mm lies {where} of hitgen's odd-tracker layer at r = {radius:g} mm "
            f"(tolerance {PLANE_TOLERANCE_MM:g} mm)"
        )
    p = {k: v[row] for k, v in parts.items()}
    return EventSet(
        detector=odd_tracker.NAME,
        detector_spec=odd_tracker.INFO.spec(),
        conditions={
            "pdg": p["pdg"].astype(np.int32),
            "charge": np.rint(p["q"]).astype(np.int8),
            "vertex": p["vertex"].astype(np.float32),
            "momentum": p["momentum"].astype(np.float32),
        },
        offsets=np.r_[starts, len(key)].astype(np.int64),
        hits={
            "geometry_id": modules.geometry_id[module],
            "local_u": local[:, 0].astype(np.float32),
            "local_v": local[:, 1].astype(np.float32),
            **{name: h["momentum"][:, i].astype(np.float32) for i, name in enumerate(("px", "py", "pz"))},
        },
        producer=f"ACTS RootSimHitWriter import of {hits_path.name}",
    )


def map_to_modules(modules: odd_tracker.Modules, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global points (N, 3) mm -> (module row or -1 where no module's bounds contain the point,
    local (u, v, w) on that module, layer index). The candidates of a point are the modules of its
    layer nearest in azimuth and z and their neighbours (3 x 3): a module's bounds reach only just
    past half the grid step, so no other module can contain the point."""
    n_phi, n_z, first, z0, dz = _layer_grids(modules)
    points = np.asarray(points, dtype=np.float64)
    r, phi = np.hypot(points[:, 0], points[:, 1]), np.arctan2(points[:, 1], points[:, 0])
    layer = np.argmin(np.abs(r[:, None] - _layer_radii()[None, :]), axis=1)
    n_phi, n_z, first = n_phi[layer, None, None], n_z[layer, None, None], first[layer, None, None]
    k_phi = np.rint(phi * n_phi[:, 0, 0] / (2 * np.pi)).astype(np.int64)
    k_z = np.rint((points[:, 2] - z0[layer]) / dz[layer]).astype(np.int64)
    step = np.array([-1, 0, 1])
    cand_phi = (k_phi[:, None, None] + step[None, :, None]) % n_phi
    cand_z = np.clip(k_z[:, None, None] + step[None, None, :], 0, n_z - 1)
    cand = (first + cand_phi * n_z + cand_z).reshape(len(points), 9)
    local = odd_tracker.to_local(modules, cand.ravel(), np.repeat(points, 9, axis=0)).reshape(len(points), 9, 3)
    inside = (np.abs(local[..., 0]) <= modules.half_u[cand] + BOUNDS_SLACK_MM) & (np.abs(local[..., 1]) <= modules.half_v[cand] + BOUNDS_SLACK_MM)
    distance = np.where(inside, np.abs(local[..., 2]), np.inf)
    best = np.argmin(distance, axis=1)
    rows = np.arange(len(points))
    return np.where(inside.any(axis=1), cand[rows, best], -1), local[rows, best], layer


def _layer_radii() -> np.ndarray:
    return np.array([r for sub in odd_tracker.SUBSYSTEMS for r in sub.radii_mm])


def _layer_grids(modules: odd_tracker.Modules) -> tuple[np.ndarray, ...]:
    """Per layer: modules in azimuth and in z, the first module's row, the first row's z and the z
    step (build_modules lays every layer out as consecutive rows, azimuth-major)."""
    cols: list[list[float]] = [[], [], [], [], []]
    for layer in range(len(_layer_radii())):
        rows = np.flatnonzero(modules.layer == layer)
        zs = np.unique(modules.z[rows])
        dz = float(zs[1] - zs[0]) if len(zs) > 1 else 1.0
        for col, value in zip(cols, (len(np.unique(modules.phi[rows])), len(zs), rows[0], zs[0], dz), strict=True):
            col.append(value)
    n_phi, n_z, first = (np.array(c, dtype=np.int64) for c in cols[:3])
    return n_phi, n_z, first, np.array(cols[3]), np.array(cols[4])


def _is_primary(barcode: np.ndarray) -> np.ndarray:
    return (barcode[:, 1] == 0) & (barcode[:, 3] == 0) & (barcode[:, 4] == 0)


def _unpack(particle_id: np.ndarray) -> np.ndarray:
    """Packed uint64 ActsFatras barcodes (N,) -> (N, 5) fields in BARCODE order."""
    pid = particle_id.astype(np.uint64)
    return np.stack([((pid >> np.uint64(s)) & np.uint64(m)).astype(np.int64) for s, m in _PACKING], axis=1)


def _lookup(keys: np.ndarray, table: np.ndarray, table_path: Path) -> np.ndarray:
    """Row of every key (K, 6) in table (T, 6), -1 where absent; duplicated table rows are an error."""
    unique, inverse = np.unique(np.concatenate([keys, table]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(np.unique(inverse[len(keys) :])) < len(table):
        raise HitgenError(f"{table_path}: a particle appears more than once in the same event")
    row = np.full(len(unique), -1, dtype=np.int64)
    row[inverse[len(keys) :]] = np.arange(len(table))
    return row[inverse[: len(keys)]]


@contextmanager
def _open_tree(path: Path, name: str, option: str) -> Iterator[uproot.TTree]:
    """The TTree `name` of a ROOT file; a missing file, foreign file or missing tree is a HitgenError."""
    if not path.exists():
        raise HitgenError(f"{path}: no such file")
    if not path.is_file():
        raise HitgenError(f"{path}: is not a file")
    try:
        file = uproot.open(path)
    except (OSError, ValueError) as e:
        raise HitgenError(f"{path}: not a readable ROOT file ({str(e).splitlines()[0]})") from None
    with file:
        try:
            tree = file[name]
        except KeyError:
            trees = ", ".join(file.keys(cycle=False, filter_classname="TTree")) or "none"
            raise HitgenError(f"{path}: no tree '{name}' (its trees: {trees}; choose one with {option})") from None
        if not isinstance(tree, uproot.TTree):
            raise HitgenError(f"{path}: '{name}' is a {tree.classname}, not a TTree")
        yield tree


def _arrays(tree: uproot.TTree, names: list[str], path: Path) -> ak.Array:
    missing = [b for b in names if b not in tree.keys()]
    if missing:
        raise HitgenError(f"{path}: tree '{tree.name}' has no branch {', '.join(repr(b) for b in missing)}")
    try:
        return tree.arrays(names, library="ak")
    except (OSError, ValueError, uproot.deserialization.DeserializationError) as e:
        raise HitgenError(f"{path}: damaged or truncated ROOT file ({str(e).splitlines()[0]})") from None


def _flat(arrays: ak.Array, name: str, path: Path) -> np.ndarray:
    """A branch of one number per entry as numpy."""
    if arrays[name].ndim != 1:
        raise HitgenError(f"{path}: branch '{name}' holds a list per entry, expected one number")
    return ak.to_numpy(arrays[name])


def _jagged(arrays: ak.Array, name: str, counts: np.ndarray, path: Path) -> np.ndarray:
    """A branch of one list per entry, flattened; every entry's list must have length `counts`."""
    a = arrays[name]
    if a.ndim != 2 or np.any(ak.to_numpy(ak.num(a, axis=1)) != counts):
        raise HitgenError(f"{path}: branch '{name}' does not hold a list of the expected length per entry")
    return ak.to_numpy(ak.flatten(a, axis=1))


def _read_hits(path: Path, tree_name: str) -> dict[str, np.ndarray]:
    with _open_tree(path, tree_name, "--hits-tree") as tree:
        form = "particle_id" if "particle_id" in tree.keys() else "barcode"
        a = _arrays(tree, [*HIT_BRANCHES, form], path)
    col = {name: _flat(a, name, path) for name in HIT_BRANCHES}
    if form == "particle_id":
        barcode = _unpack(_flat(a, "particle_id", path))
    else:
        barcode = _jagged(a, "barcode", np.full(len(a), 5), path).reshape(-1, 5).astype(np.int64)
    return {
        "event": col["event_id"].astype(np.int64),
        "barcode": barcode,
        "index": col["index"].astype(np.int64),
        "position": np.stack([col["tx"], col["ty"], col["tz"]], axis=1).astype(np.float64),
        "momentum": np.stack([col[f"tp{c}"].astype(np.float64) + col[f"deltap{c}"] for c in "xyz"], axis=1),
    }


def _read_particles(path: Path, tree_name: str) -> dict[str, np.ndarray]:
    with _open_tree(path, tree_name, "--particles-tree") as tree:
        form = ["particle_id"] if "particle_id" in tree.keys() else list(BARCODE)
        a = _arrays(tree, [*PARTICLE_BRANCHES, *form], path)
    if a["particle_type"].ndim != 2:
        raise HitgenError(f"{path}: branch 'particle_type' holds one number per entry, expected a list of the event's particles")
    counts = ak.to_numpy(ak.num(a["particle_type"], axis=1))
    col = {name: _jagged(a, name, counts, path) for name in [*PARTICLE_BRANCHES[1:], *form]}
    barcode = _unpack(col["particle_id"]) if form == ["particle_id"] else np.stack([col[f] for f in BARCODE], axis=1).astype(np.int64)
    return {
        "event": np.repeat(_flat(a, "event_id", path).astype(np.int64), counts),
        "barcode": barcode,
        "pdg": col["particle_type"],
        "q": col["q"],
        "vertex": np.stack([col["vx"], col["vy"], col["vz"]], axis=1),
        "momentum": np.stack([col["px"], col["py"], col["pz"]], axis=1),
    }
