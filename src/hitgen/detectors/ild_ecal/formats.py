"""Foreign file formats of `ild-ecal`: what the users of ILD-like calorimeter showers already have.

Written (`hitgen export EVENTS.h5 --format NAME --out FILE`) and read (`hitgen import FILE --format
NAME --out EVENTS.h5`):

- ``showerdata``: the HDF5 layout of the ShowerData library (AllShowers, CaloClouds): per shower a
  variable-length float32 array of points (x mm, y mm, z = layer index, energy GeV), with
  ``energies`` (N, 1) GeV, ``directions`` (N, 3), ``pdg``, ``shower_ids``, ``num_points`` and
  ``shape`` = (N, max points, 4). hitgen writes it with h5py (no run-time dependency); the tests
  read it with showerdata's own loader and import files that showerdata itself wrote.
- ``calochallenge``: the voxel view (`views.voxels`) as CaloChallenge-style HDF5:
  ``incident_energies`` (N, 1) MeV and ``showers`` (N, 27000) MeV, flattened layer-major, then x,
  then y (``showers[n, l*900 + i*30 + j]`` is layer l, window column i, row j; numpy's C order of
  (N, 30, 30, 30) [event, layer, x, y], as CaloChallenge datasets 2 and 3 put the layer first).

Read only:

- ``edm4hep``: the silicon SimCalorimeterHits of ILD's ECAL barrel in a ddsim EDM4hep ROOT file,
  projected onto the slab (see `read_edm4hep`).
- ``caloclouds``: CaloClouds' point-cloud HDF5 (``events`` (N, P, 4) x, y, z, E zero-padded,
  ``energy`` (N, 1) GeV), the points summed into the slab's cells (see `read_caloclouds`).

Everything a format cannot hold travels in extra datasets and attributes where the format allows
(entry points, directions, pdg, the detector spec with its absorber and field); what is still
missing on import is filled with stated defaults and listed in the events' notes (``import``), which
`hitgen import` prints. Bad input (a foreign file, wrong shapes or units, negative or non-finite
energies, a point outside the slab) is one HitgenError line.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors import check_events, check_spec
from hitgen.detectors.ild_ecal.geometry import (
    CELL_SIZE_MM,
    INFO,
    N_CELLS,
    N_LAYERS,
    NAME,
    THRESHOLD_MEV,
    cell_of,
    require_ild_layout,
)
from hitgen.detectors.ild_ecal.views import HALF_WINDOW, WINDOW, points, voxels

SHOWERDATA_LAYOUT = "0.7.0"  # the showerdata release whose file layout the writer follows
SPEC_ATTR = "hitgen_detector_spec"  # the exporting file's detector spec (absorber, field), JSON
VOXELS = N_LAYERS * WINDOW * WINDOW
CHUNK = 256  # events converted at a time (CaloChallenge: 27000 voxels each)
DEFAULT_PDG = 22
MAX_POINTS_PER_EVENT = 10_000_000  # more points than this in one shower: a forged or damaged file

# ILD's ECAL barrel (ILD_l5_v02, as ddsim simulates it; see docs/detectors/ild-ecal.md)
EDM4HEP_COLLECTIONS = ("ECalBarrelSiHitsEven", "ECalBarrelSiHitsOdd")  # silicon, even and odd layers
ILD_BARREL_FRONT_MM = 1804.0  # distance of the barrel's inner face from the beam axis (ShowerData's calo_surface)
ILD_STAVES = 8  # the barrel is an octagon whose stave normals point at multiples of 45 degrees
MC_FIELDS = ("PDG", "generatorStatus", "mass", "momentum.x", "momentum.y", "momentum.z", "vertex.x", "vertex.y", "vertex.z")
LAYER_PLANE_TOLERANCE_MM = 1.0  # silicon cells of one layer lie in one plane normal to the stave


# --- shared: per-point arrays to ild-ecal events ----------------------------------------------------
def _fail(where: str, message: str) -> HitgenError:
    return HitgenError(f"{where}: {message}")


def build_events(
    where: str,
    conditions: dict[str, np.ndarray],
    event: np.ndarray,
    layer: np.ndarray,
    cell_x: np.ndarray,
    cell_y: np.ndarray,
    energy_mev: np.ndarray,
    producer: str,
    notes: list[str],
    spec: dict[str, Any] | None = None,
    threshold_mev: float | None = None,
) -> EventSet:
    """ild-ecal events from points (event index, layer, cell_x, cell_y, MeV): points in one cell
    are summed, cells without energy (or below threshold_mev, where given) are left out, and the
    hits are sorted by (layer, cell_x, cell_y) within each event. A negative or non-finite energy,
    or a point outside the slab, is a HitgenError naming the first such point."""
    n = len(conditions["energy"])
    event, layer, cell_x, cell_y = (np.asarray(a, np.int64) for a in (event, layer, cell_x, cell_y))
    energy = np.asarray(energy_mev, np.float64)
    bad = ~np.isfinite(energy) | (energy < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(where, f"{int(bad.sum())} point(s) with negative or non-finite energy (event {event[i]}: {energy[i]:g} MeV)")
    outside = (layer < 0) | (layer >= N_LAYERS) | (cell_x < 0) | (cell_x >= N_CELLS) | (cell_y < 0) | (cell_y >= N_CELLS)
    if outside.any():
        i = int(np.argmax(outside))
        raise _fail(
            where,
            f"{int(outside.sum())} point(s) outside the slab (event {event[i]}: layer {layer[i]}, cell ({cell_x[i]}, {cell_y[i]}); "
            f"the slab has layers 0-{N_LAYERS - 1} and cells 0-{N_CELLS - 1}, x and y within +-{N_CELLS * CELL_SIZE_MM / 2:g} mm)",
        )
    key = ((event * N_LAYERS + layer) * N_CELLS + cell_x) * N_CELLS + cell_y
    cells, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=energy, minlength=len(cells))
    if len(cells) < len(key):
        notes.append(f"{len(key)} points summed into {len(cells)} cells")
    keep = summed > 0
    if threshold_mev is not None:
        below = keep & (summed < threshold_mev)
        if below.any():
            notes.append(f"{int(below.sum())} cells below the slab's {threshold_mev:g} MeV threshold left out ({summed[below].sum():.3g} MeV)")
        keep &= summed >= threshold_mev
    cells, summed = cells[keep], summed[keep]
    rest, cy = np.divmod(cells, N_CELLS)
    rest, cx = np.divmod(rest, N_CELLS)
    ev, ly = np.divmod(rest, N_LAYERS)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(ev, minlength=n))]).astype(np.int64)
    hits = {"layer": ly.astype(np.int8), "cell_x": cx.astype(np.int16), "cell_y": cy.astype(np.int16), "energy": summed.astype(np.float32)}
    try:
        events = EventSet(NAME, spec or INFO.spec(), conditions, offsets, hits, producer, notes={"import": notes} if notes else {})
    except ValueError as e:
        raise _fail(where, str(e)) from None
    check_events(events, where)
    return events


def _conditions(
    n: int, energy_gev: np.ndarray, direction: np.ndarray | None, entry: np.ndarray | None, pdg: np.ndarray | None, notes: list[str]
) -> dict[str, np.ndarray]:
    """The four ild-ecal conditions, with stated defaults for those a file does not hold."""
    if direction is None:
        direction = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (n, 1))
        notes.append("no directions in the file: normal incidence (0, 0, 1) assumed")
    if entry is None:
        entry = np.zeros((n, 3), np.float32)
        notes.append("no entry points in the file: (0, 0, 0) mm, the slab's axis, assumed")
    if pdg is None:
        pdg = np.full(n, DEFAULT_PDG, np.int32)
        notes.append(f"no PDG codes in the file: {DEFAULT_PDG} (photon) assumed")
    return {
        "energy": np.asarray(energy_gev, np.float32).reshape(n),
        "direction": np.asarray(direction, np.float32).reshape(n, 3),
        "entry_point": np.asarray(entry, np.float32).reshape(n, 3),
        "pdg": np.asarray(pdg, np.int32).reshape(n),
    }


def _open_hdf5(path: Path, what: str) -> h5py.File:
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise _fail(str(path), f"cannot be read ({e.strerror or e})") from None
    if not is_hdf5:
        raise _fail(str(path), f"not an HDF5 file (expected a {what} file)")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise _fail(str(path), "damaged or truncated HDF5 file (it cannot be opened)") from None


def _dataset(f: h5py.File, key: str, where: str, what: str, required: bool = True) -> h5py.Dataset | None:
    if key not in f or not isinstance(f[key], h5py.Dataset):
        if required:
            raise _fail(where, f"not a {what} file (no /{key} dataset)")
        return None
    return f[key]


def _array(f: h5py.File, key: str, where: str, what: str, shape: tuple[int | None, ...], required: bool = True) -> np.ndarray | None:
    """A dataset read whole after checking its shape (None: any length on that axis) and finiteness."""
    ds = _dataset(f, key, where, what, required)
    if ds is None:
        return None
    if ds.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, ds.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise _fail(where, f"/{key} has shape {ds.shape}, expected {want}")
    if ds.dtype.kind not in "iuf":
        raise _fail(where, f"/{key} holds {ds.dtype}, not numbers")
    a = ds[()]
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise _fail(where, f"/{key} holds non-finite values")
    return a


def _spec_of(f: h5py.File, where: str, notes: list[str]) -> dict[str, Any] | None:
    """The ild-ecal spec an export recorded (absorber, field), checked; None with a note if absent."""
    text = f.attrs.get(SPEC_ATTR)
    if text is None:
        notes.append(f"no {SPEC_ATTR} attribute: the detector's defaults (absorber {INFO.extra['absorber']}, field {INFO.extra['field']}) recorded")
        return None
    try:
        spec = json.loads(text)
    except (TypeError, ValueError):
        raise _fail(where, f"its {SPEC_ATTR} attribute is not valid JSON") from None
    if not isinstance(spec, dict) or spec.get("name") != NAME:
        raise _fail(where, f"its {SPEC_ATTR} attribute describes detector {spec.get('name') if isinstance(spec, dict) else spec!r}, not {NAME}")
    check_spec(spec, where)
    return spec


def _check_units(where: str, deposited: np.ndarray, incident: np.ndarray, deposit_unit: str, incident_unit: str) -> None:
    """A calorimeter sees less than the incident energy: more is a unit mistake (MeV for GeV, say)."""
    over = deposited > incident * (1 + 1e-4)
    if over.any():
        i = int(np.argmax(over))
        raise _fail(
            where,
            f"event {i}: its cells hold {deposited[i]:.4g} {deposit_unit}, more than the incident {incident[i]:.4g} {incident_unit} "
            f"(the format wants cell energies in {deposit_unit} and incident energies in {incident_unit}; wrong units?)",
        )


# --- ShowerData -------------------------------------------------------------------------------------
def write_showerdata(events: EventSet, path: Path) -> str:
    """The events as a ShowerData file: points at the cell centres in the slab's frame (x, y mm from
    the slab's axis, so within half a cell of the particle's entry point; z the layer index; energy
    GeV), the incident kinetic energy in GeV, directions and PDG codes; the entry points (mm) and
    the detector spec go in the extra dataset ``entry_points`` and attribute ``hitgen_detector_spec``.
    Hits without energy are left out (ShowerData reads a zero energy as padding)."""
    require_ild_layout(events.detector_spec, "the showerdata export")
    p = points(events)
    keep = p.energy > 0
    counts = np.bincount(events.event_index()[keep], minlength=events.n_events).astype(np.int32)
    rows = np.stack([p.x, p.y, p.layer.astype(np.float32), (p.energy.astype(np.float64) / 1e3).astype(np.float32)], axis=1)[keep]
    ends = np.cumsum(counts)
    n = events.n_events
    with h5py.File(path, "w") as f:
        showers = f.create_dataset("showers", (n,), dtype=h5py.vlen_dtype(np.dtype("float32")))
        for lo in range(0, n, 4096):
            hi = min(lo + 4096, n)
            showers[lo:hi] = [rows[e - c : e].reshape(-1) for e, c in zip(ends[lo:hi], counts[lo:hi], strict=True)]
        f.create_dataset("energies", data=events.conditions["energy"].astype(np.float32).reshape(n, 1))
        f.create_dataset("directions", data=events.conditions["direction"].astype(np.float32))
        f.create_dataset("pdg", data=events.conditions["pdg"].astype(np.int32))
        f.create_dataset("shower_ids", data=np.arange(n, dtype=np.int32))
        f.create_dataset("num_points", data=counts)
        f.create_dataset("shape", data=np.array([n, int(counts.max()) if n else 0, 4], np.int32))
        f.create_dataset("entry_points", data=events.conditions["entry_point"].astype(np.float32))
        f.attrs["showerdata_version"] = SHOWERDATA_LAYOUT
        f.attrs[SPEC_ATTR] = json.dumps(events.detector_spec, sort_keys=True)
        f.attrs["producer"] = events.producer
    dropped = int((~keep).sum())
    return "points x, y in mm (cell centres), z = layer, energy in GeV" + (f"; {dropped} zero-energy hits left out" if dropped else "")


def read_showerdata(path: Path) -> EventSet:
    """A ShowerData file as ild-ecal events: every point goes to the cell holding its (x, y) and to
    layer floor(z + 0.1) (showerdata's own rounding); points in one cell are summed; zero-energy
    points are padding. Entry points come from ``entry_points`` where an export left them, else
    (0, 0, 0): x = y = 0 is then the slab's axis."""
    where, what, notes = str(path), "ShowerData", []
    with _open_hdf5(path, what) as f:
        showers = _dataset(f, "showers", where, what)
        shape = _array(f, "shape", where, what, (3,))
        if showers.ndim != 1 or showers.dtype.kind != "O":
            raise _fail(where, f"/showers has shape {showers.shape} and dtype {showers.dtype}, expected (N,) variable-length float32")
        n, width = len(showers), int(shape[2])
        if width not in (4, 5) or int(shape[0]) != n:
            raise _fail(where, f"/shape is {shape.tolist()}, expected ({n}, max points, 4 or 5)")
        energies = _array(f, "energies", where, what, (n, 1))
        directions = _array(f, "directions", where, what, (n, 3))
        pdg = _array(f, "pdg", where, what, (n,))
        num_points = _array(f, "num_points", where, what, (n,), required=False)
        entry = _array(f, "entry_points", where, what, (n, 3), required=False)
        spec = _spec_of(f, where, notes)
        version = f.attrs.get("showerdata_version", "unknown")
        parts = []
        for lo in range(0, n, 4096):
            for i, flat in enumerate(showers[lo : min(lo + 4096, n)], start=lo):
                flat = np.asarray(flat)
                if flat.size % width or flat.size > MAX_POINTS_PER_EVENT * width:
                    raise _fail(where, f"shower {i} holds {flat.size} numbers, not a whole number of {width}-column points")
                pts = flat.reshape(-1, width)
                if num_points is not None:
                    if not 0 <= num_points[i] <= len(pts):
                        raise _fail(where, f"shower {i}: num_points {num_points[i]} but {len(pts)} points stored")
                    pts = pts[: num_points[i]]
                parts.append((i, pts))
    idx = np.concatenate([np.full(len(p), i, np.int64) for i, p in parts]) if parts else np.zeros(0, np.int64)
    pts = np.concatenate([p for _, p in parts]).astype(np.float64) if parts else np.zeros((0, width))
    if not np.isfinite(pts).all():
        raise _fail(where, "its points hold non-finite values")
    if (pts[:, 3] < 0).any():
        raise _fail(where, f"{int((pts[:, 3] < 0).sum())} point(s) with negative energy")
    real = pts[:, 3] > 0
    idx, pts = idx[real], pts[real]
    _check_units(where, np.bincount(idx, weights=pts[:, 3], minlength=n), energies.reshape(n).astype(np.float64), "GeV", "GeV")
    if width == 5:
        notes.append("the points' time (fifth column) is not kept: ild-ecal hits have none")
    conditions = _conditions(n, energies, directions, entry, pdg, notes)
    layer = np.floor(pts[:, 2] + 0.1)
    return build_events(
        where,
        conditions,
        idx,
        layer,
        cell_of(pts[:, 0]),
        cell_of(pts[:, 1]),
        pts[:, 3] * 1e3,
        f"import of ShowerData file {path.name} (showerdata_version {version})",
        notes,
        spec,
    )


# --- CaloChallenge-style voxels -------------------------------------------------------------------------
def write_calochallenge(events: EventSet, path: Path) -> str:
    """The voxel view as CaloChallenge-style HDF5 (float32): ``incident_energies`` (N, 1) MeV and
    ``showers`` (N, 27000) MeV (layer-major, then x, then y); extra datasets ``entry_points`` (N, 3)
    mm, ``directions`` (N, 3), ``pdg`` (N,) and ``energy_outside_window`` (N,) MeV, the energy of
    the hits the 30 x 30 window leaves out (not in ``showers``); attribute ``hitgen_detector_spec``."""
    require_ild_layout(events.detector_spec, "the calochallenge export")
    n = events.n_events
    outside = np.zeros(n)
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=(events.conditions["energy"].astype(np.float64) * 1e3).astype(np.float32).reshape(n, 1))
        showers = f.create_dataset("showers", (n, VOXELS), np.float32, chunks=(max(1, min(n, 64)), VOXELS), compression="gzip", shuffle=True)
        for lo in range(0, n, CHUNK):
            part = events.select(np.arange(lo, min(lo + CHUNK, n)))
            v = voxels(part)
            showers[lo : lo + part.n_events] = v.grid.reshape(part.n_events, VOXELS)
            outside[lo : lo + part.n_events] = v.outside_energy
        f.create_dataset("entry_points", data=events.conditions["entry_point"].astype(np.float32))
        f.create_dataset("directions", data=events.conditions["direction"].astype(np.float32))
        f.create_dataset("pdg", data=events.conditions["pdg"].astype(np.int32))
        f.create_dataset("energy_outside_window", data=outside.astype(np.float32))
        f.attrs["layout"] = (
            f"showers[n, l*{WINDOW * WINDOW} + i*{WINDOW} + j]: layer l, window column i (x), row j (y); "
            f"cell_x = entry cell x - {HALF_WINDOW} + i, cell_y = entry cell y - {HALF_WINDOW} + j"
        )
        f.attrs["units"] = "MeV"
        f.attrs[SPEC_ATTR] = json.dumps(events.detector_spec, sort_keys=True)
        f.attrs["producer"] = events.producer
    total = float(events.hits["energy"].astype(np.float64).sum())
    share = outside.sum() / total if total > 0 else 0.0
    return f"{VOXELS} voxels per event in MeV; {share:.2e} of the hit energy lay outside the {WINDOW}x{WINDOW} window (energy_outside_window)"


def read_calochallenge(path: Path) -> EventSet:
    """A CaloChallenge-style file of the voxel view as ild-ecal events: every voxel with energy
    becomes a hit; the window is placed by the entry point (its entry cell at window index 15) where
    ``entry_points`` is stored, else on the central cell. What lay outside the window when it was
    written cannot come back (``energy_outside_window`` says how much)."""
    where, what, notes = str(path), "CaloChallenge-style", []
    with _open_hdf5(path, what) as f:
        showers = _dataset(f, "showers", where, what)
        if showers.ndim != 2 or showers.shape[1] != VOXELS or showers.dtype.kind != "f":
            raise _fail(
                where,
                f"/showers has shape {showers.shape} ({showers.dtype}), expected (N, {VOXELS}) floats: {N_LAYERS} layers x {WINDOW} x {WINDOW} "
                "cells of ild-ecal's voxel view (CaloChallenge's own datasets 2 and 3 have 6480 and 40500 voxels of another geometry)",
            )
        n = showers.shape[0]
        incident = _array(f, "incident_energies", where, what, (n, 1)).reshape(n).astype(np.float64)
        entry = _array(f, "entry_points", where, what, (n, 3), required=False)
        directions = _array(f, "directions", where, what, (n, 3), required=False)
        pdg = _array(f, "pdg", where, what, (n,), required=False)
        outside = _array(f, "energy_outside_window", where, what, (n,), required=False)
        spec = _spec_of(f, where, notes)
        conditions = _conditions(n, incident / 1e3, directions, entry, pdg, notes)
        ox, oy = (cell_of(conditions["entry_point"][:, k].astype(np.float64)) - HALF_WINDOW for k in (0, 1))
        parts: list[tuple[np.ndarray, ...]] = []
        deposited = np.zeros(n)
        for lo in range(0, n, CHUNK):
            block = showers[lo : min(lo + CHUNK, n)]
            if not np.isfinite(block).all():
                raise _fail(where, "/showers holds non-finite values")
            if (block < 0).any():
                raise _fail(where, f"/showers holds {int((block < 0).sum())} negative energies")
            deposited[lo : lo + len(block)] = block.sum(axis=1, dtype=np.float64)
            ev, layer, i, j = np.nonzero(block.reshape(len(block), N_LAYERS, WINDOW, WINDOW))
            e = block.reshape(len(block), N_LAYERS, WINDOW, WINDOW)[ev, layer, i, j]
            ev = ev + lo
            parts.append((ev, layer, ox[ev] + i, oy[ev] + j, e))
    _check_units(where, deposited, incident, "MeV", "MeV")
    if outside is not None and outside.sum() > 0:
        notes.append(f"{outside.sum():.4g} MeV lay outside the window when the file was written and is not in it")
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)] if parts else [np.zeros(0)] * 5
    return build_events(where, conditions, *cols, f"import of CaloChallenge-style file {path.name}", notes, spec)


# --- CaloClouds point clouds ----------------------------------------------------------------------------
def read_caloclouds(path: Path) -> EventSet:
    """CaloClouds' point-cloud HDF5 as ild-ecal events. Layout (CaloClouds' test sample): ``events``
    (N, P, 4) float32 points x, y, z, E zero-padded, with x and z transverse in mm, y the depth in
    units of layers (0 to 30: the point lies in layer floor(y)) and E in GeV; ``energy`` (N, 1)
    GeV, the incident energy. Its local frame is ILD's (y along the stave normal, z along the beam),
    so, as for EDM4hep, slab x = -x and slab y = z (a right-handed frame with the depth along y).
    Points are summed into the slab's 5 mm cells and cells below its threshold are left out.
    ``p_norm_local`` is not used: its frame is not documented with the files."""
    where, what, notes = str(path), "CaloClouds", []
    with _open_hdf5(path, what) as f:
        ds = _dataset(f, "events", where, what)
        if ds.ndim != 3 or ds.shape[2] != 4 or ds.dtype.kind != "f":
            raise _fail(where, f"/events has shape {ds.shape} ({ds.dtype}), expected (N, points, 4) floats x, y, z, E")
        n = ds.shape[0]
        energy = _array(f, "energy", where, what, (n, 1)).reshape(n).astype(np.float64)
        if "p_norm_local" in f:
            notes.append("p_norm_local not used (its frame is not documented): normal incidence recorded")
        pts = ds[()].astype(np.float64)
    if not np.isfinite(pts).all():
        raise _fail(where, "/events holds non-finite values")
    if (pts[..., 3] < 0).any():
        raise _fail(where, f"/events holds {int((pts[..., 3] < 0).sum())} point(s) with negative energy")
    ev, k = np.nonzero(pts[..., 3] > 0)
    p = pts[ev, k]
    _check_units(where, np.bincount(ev, weights=p[:, 3], minlength=n), energy, "GeV", "GeV")
    conditions = _conditions(n, energy, None, None, None, notes)
    return build_events(
        where,
        conditions,
        ev,
        np.floor(p[:, 1]),
        cell_of(-p[:, 0]),
        cell_of(p[:, 2]),
        p[:, 3] * 1e3,
        f"import of CaloClouds file {path.name}",
        notes,
        threshold_mev=THRESHOLD_MEV,
    )


# --- EDM4hep (ddsim) --------------------------------------------------------------------------------------
def decode_cell_ids(cell_ids: np.ndarray, encoding: str) -> dict[str, np.ndarray]:
    """The fields of DD4hep cell ids from their encoding string ('name:offset:width' or 'name:width'
    continuing after the previous field; a negative width is a signed field)."""
    ids = np.asarray(cell_ids).astype(np.uint64)
    out, offset = {}, 0
    for part in encoding.split(","):
        m = re.fullmatch(r"\s*(\w+):(?:(\d+):)?(-?\d+)\s*", part)
        if not m:
            raise HitgenError(f"malformed cell id encoding '{encoding}' (at '{part}')")
        name, start, width = m.group(1), m.group(2), int(m.group(3))
        offset = int(start) if start is not None else offset
        bits = abs(width)
        if not 0 < bits <= 64 or offset + bits > 64:
            raise HitgenError(f"malformed cell id encoding '{encoding}' (field {name} leaves 64 bits)")
        v = ((ids >> np.uint64(offset)) & np.uint64((1 << bits) - 1)).astype(np.int64)
        if width < 0:
            v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
        out[name] = v
        offset += bits
    return out


def _edm4hep_encodings(f: Any, where: str) -> dict[str, str]:
    """The CellIDEncoding strings the podio metadata records for the collections."""
    try:
        a = f["metadata"].arrays(library="np")
        names = [str(x) for x in a["_stringMap.first"][0]]
        values = [list(v) for v in a["_stringMap.second"][0]]
    except Exception:  # noqa: BLE001 - any layout other than podio's is the same user error
        raise _fail(where, "no podio metadata with the collections' CellIDEncoding (not a ddsim EDM4hep file?)") from None
    return {k.removesuffix("__CellIDEncoding"): str(v[0]) for k, v in zip(names, values, strict=True) if k.endswith("__CellIDEncoding") and v}


def read_edm4hep(path: Path) -> EventSet:
    """The silicon hits of ILD's ECAL barrel in a ddsim EDM4hep file (collections
    ECalBarrelSiHitsEven and ECalBarrelSiHitsOdd) as ild-ecal events, one per entry of the
    ``events`` tree, projected onto the flat slab:

    - the stave holding most of the hit energy is the slab; hits in other staves are left out
      (counted in the notes); its normal n is the octagon direction (a multiple of 45 degrees)
      nearest the energy-weighted centre of its hits, and every layer's hits must lie in one plane
      normal to n (else the file is not ILD's barrel as assumed here);
    - layer: the cell id's ``layer`` field (ILD numbers the 30 silicon layers 0-29 from the front);
    - the front face is the plane n . p = 1804 mm (the barrel's inner face); the primary
      (generatorStatus 1) crosses it at the entry point E, the slab's origin;
    - slab x = (p - E) . (z_hat x n) and slab y = (p - E) . z_hat: y along the beam and the solenoid
      field, as the slab's field is along its y; x completes a right-handed frame with the depth n;
    - each hit goes to the 5 mm slab cell holding its centre (ILD's cells are 5.1 mm, with gaps
      between wafers: two ILD cells can share a slab cell, summed); cells below the slab's 0.1 MeV
      threshold are left out (ddsim applies none), as are hits beyond the slab's 605 mm;
    - conditions: the primary's kinetic energy (GeV), its direction in the slab frame
      (z_hat x n, z_hat, n) components, PDG code; entry point (0, 0, 0).
    Hit energies are GeV in the file, MeV in hitgen."""
    import uproot

    where = str(path)
    try:
        f = uproot.open(path)
    except Exception as e:  # noqa: BLE001 - uproot raises many kinds for a non-ROOT file
        raise _fail(where, f"not a ROOT file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    with f:
        if "events" not in f:
            raise _fail(where, "no 'events' tree (not an EDM4hep file)")
        tree = f["events"]
        missing = [c for c in (*EDM4HEP_COLLECTIONS, "MCParticles") if c not in tree]
        if missing:
            raise _fail(where, f"no {', '.join(missing)} collection(s) in its events tree (expected ILD's ECAL barrel silicon hits)")
        encodings = _edm4hep_encodings(f, where)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cellID", "energy", "position.x", "position.y", "position.z")}
        for c in EDM4HEP_COLLECTIONS:
            if c not in encodings:
                raise _fail(where, f"no CellIDEncoding for {c} in its metadata")
            arrays = tree.arrays([f"{c}.{k}" for k in cols], library="np")
            for k in cols:
                cols[k].append(arrays[f"{c}.{k}"])
        mc = tree.arrays([f"MCParticles.{k}" for k in MC_FIELDS], library="np")
        n = tree.num_entries
    if n == 0:
        raise _fail(where, "its events tree has no entries")
    events: list[EventSet] = []
    notes: list[str] = []
    for i in range(n):
        hits = {k: np.concatenate([v[ci][i] for ci in range(len(EDM4HEP_COLLECTIONS))]) for k, v in cols.items()}
        fields = {}
        for ci, c in enumerate(EDM4HEP_COLLECTIONS):
            decoded = decode_cell_ids(cols["cellID"][ci][i], encodings[c])
            for k in ("layer", "stave"):
                if k not in decoded:
                    raise _fail(where, f"the cell id encoding of {c} has no '{k}' field: {encodings[c]}")
                fields.setdefault(k, []).append(decoded[k])
        layer, stave = (np.concatenate(fields[k]) for k in ("layer", "stave"))
        primary = np.flatnonzero(mc["MCParticles.generatorStatus"][i] == 1)
        if len(primary) != 1:
            raise _fail(where, f"event {i}: {len(primary)} generator particles (status 1), expected one incident particle")
        part = {k: float(mc[f"MCParticles.{k}"][i][int(primary[0])]) for k in MC_FIELDS}
        momentum = np.array([part["momentum.x"], part["momentum.y"], part["momentum.z"]])
        vertex = np.array([part["vertex.x"], part["vertex.y"], part["vertex.z"]])
        events.append(_project_event(where, i, hits, layer, stave, momentum, vertex, part["mass"], int(part["PDG"]), notes))
    joined = EventSet.concatenate(events) if len(events) > 1 else events[0]
    joined.producer = f"import of ddsim EDM4hep file {path.name} ({', '.join(EDM4HEP_COLLECTIONS)})"
    joined.notes = {"import": notes}
    check_events(joined, where)
    return joined


def _project_event(
    where: str,
    i: int,
    hits: dict[str, np.ndarray],
    layer: np.ndarray,
    stave: np.ndarray,
    momentum: np.ndarray,
    vertex: np.ndarray,
    mass: float,
    pdg: int,
    notes: list[str],
) -> EventSet:
    """One ddsim event projected onto the slab (see read_edm4hep)."""
    pos = np.stack([hits["position.x"], hits["position.y"], hits["position.z"]], axis=1).astype(np.float64)
    energy = hits["energy"].astype(np.float64)
    if not (np.isfinite(pos).all() and np.isfinite(energy).all()) or (energy < 0).any():
        raise _fail(where, f"event {i}: hits with negative or non-finite energy or position")
    if not len(energy):
        raise _fail(where, f"event {i}: no hit in {', '.join(EDM4HEP_COLLECTIONS)}")
    staves = np.unique(stave)
    main = staves[np.argmax([energy[stave == s].sum() for s in staves])]
    other = stave != main
    if other.any():
        notes.append(f"event {i}: {int(other.sum())} hits ({energy[other].sum() * 1e3:.3g} MeV) in other barrel staves left out")
    pos, energy, layer = pos[~other], energy[~other], layer[~other]
    centre = np.average(pos, axis=0, weights=energy) if energy.sum() > 0 else pos.mean(axis=0)
    step = 2 * math.pi / ILD_STAVES
    phi = round(math.atan2(centre[1], centre[0]) / step) * step
    normal = np.array([math.cos(phi), math.sin(phi), 0.0])
    z_hat = np.array([0.0, 0.0, 1.0])
    x_hat = np.cross(z_hat, normal)
    depth = pos @ normal
    for ly in np.unique(layer):
        d = depth[layer == ly]
        if d.max() - d.min() > LAYER_PLANE_TOLERANCE_MM:
            raise _fail(
                where,
                f"event {i}: layer {ly} spans {d.max() - d.min():.1f} mm along the stave normal at {math.degrees(phi):g} degrees "
                "(not ILD's barrel as assumed: octagon staves, layers parallel to them)",
            )
    p = float(np.linalg.norm(momentum))
    if p <= 0:
        raise _fail(where, f"event {i}: the primary has no momentum")
    direction = momentum / p
    if direction @ normal <= 0:
        raise _fail(where, f"event {i}: the primary does not point into the stave holding the hits")
    entry = vertex + direction * (ILD_BARREL_FRONT_MM - vertex @ normal) / (direction @ normal)
    rel = pos - entry
    sx, sy = rel @ x_hat, rel @ z_hat
    half = N_CELLS * CELL_SIZE_MM / 2
    beyond = (np.abs(sx) >= half) | (np.abs(sy) >= half)
    if beyond.any():
        notes.append(f"event {i}: {int(beyond.sum())} hits ({energy[beyond].sum() * 1e3:.3g} MeV) beyond the slab's +-{half:g} mm left out")
    keep = ~beyond
    conditions = {
        "energy": np.array([math.sqrt(p * p + mass * mass) - mass], np.float32),
        "direction": np.array([[direction @ x_hat, direction @ z_hat, direction @ normal]], np.float32),
        "entry_point": np.zeros((1, 3), np.float32),
        "pdg": np.array([pdg], np.int32),
    }
    event_notes: list[str] = []
    out = build_events(
        where,
        conditions,
        np.zeros(int(keep.sum()), np.int64),
        layer[keep],
        cell_of(sx[keep]),
        cell_of(sy[keep]),
        energy[keep] * 1e3,
        "edm4hep",
        event_notes,
        threshold_mev=THRESHOLD_MEV,
    )
    notes.extend(f"event {i}: {line}" for line in event_notes)
    return out
