"""The `hitgen-events` HDF5 file: per-event conditions plus ragged (CSR) hits, shared by Geant4
output and model output.

    /conditions/<name>   (N, ...)  per-event inputs (e.g. momentum (N,3) float32 GeV, pdg (N,) int32)
    /hits/offsets        (N+1,) int64, offsets[0] = 0; hits of event i are [offsets[i], offsets[i+1])
    /hits/<field>        (H,) one flat typed array per hit field
    /truth/<name>        (N, ...) optional per-event simulation truth (never a model input)
    attrs: format, format_version, detector, detector_spec (JSON), producer, seed, hitgen_version, created,
           notes (JSON, optional), physics (JSON, optional: the Geant4 physics settings of a simulation)

Files are written in chunks to a hidden temporary name in the target folder and renamed when
complete, and the `format` attribute is written last, so a killed writer never leaves a file that
looks whole. Every attribute and shape is checked on read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hitgen import __version__
from hitgen.core import csr
from hitgen.core.csr import offsets_from_counts
from hitgen.core.errors import EventFileError, HitgenError

FORMAT = "hitgen-events"
FORMAT_VERSION = 1
CHUNK_EVENTS = 65536  # HDF5 chunk length (events or hits) of every dataset
# every dataset is stored with the byte-shuffle filter and gzip level 4 (in every HDF5 build): a
# clas12-ecal file shrinks 3.6x (12.6 -> 3.5 MB for 20000 events) for about 0.2 s of writing
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
REQUIRED_ATTRS = ("format", "format_version", "detector", "detector_spec", "producer", "hitgen_version", "created")


def _field_dtypes(spec: dict[str, Any], key: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    return {name: (np.dtype(f["dtype"]), tuple(f.get("shape", ()))) for name, f in spec.get(key, {}).items()}


@dataclass
class EventSet:
    """Events of one detector: conditions (N, ...), hits as CSR (offsets + flat fields), truth."""

    detector: str
    detector_spec: dict[str, Any]
    conditions: dict[str, np.ndarray]
    offsets: np.ndarray
    hits: dict[str, np.ndarray]
    producer: str
    seed: int | None = None
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    hitgen_version: str = __version__
    notes: dict[str, Any] = field(default_factory=dict)  # free-form flags, stored as the JSON attribute "notes"
    # the simulation's physics settings (hitgen.core.physics), stored as the JSON attribute "physics";
    # empty for model output and for files written before it was recorded
    physics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = validate_arrays(self.detector_spec, self.conditions, self.offsets, self.hits, self.truth)
        if self.detector_spec.get("name") != self.detector:
            problems.insert(0, f"detector '{self.detector}' differs from detector_spec name '{self.detector_spec.get('name')}'")
        if problems:
            raise ValueError("invalid EventSet: " + "; ".join(problems))

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_hits(self) -> int:
        return int(self.offsets[-1])

    def hits_per_event(self) -> np.ndarray:
        return np.diff(self.offsets)

    def event_index(self) -> np.ndarray:
        """For every hit, the index of its event."""
        return np.repeat(np.arange(self.n_events), self.hits_per_event())

    def event(self, i: int) -> dict[str, np.ndarray]:
        """The hits of event i as a dict of field -> array."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return {k: v[lo:hi] for k, v in self.hits.items()}

    def select(self, indices: np.ndarray) -> EventSet:
        """A new EventSet with the events at `indices` (any order, repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64)
        counts = self.hits_per_event()[indices]
        starts = self.offsets[:-1][indices]
        flat = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return EventSet(
            detector=self.detector,
            detector_spec=self.detector_spec,
            conditions={k: v[indices] for k, v in self.conditions.items()},
            offsets=offsets_from_counts(counts),
            hits={k: v[flat] for k, v in self.hits.items()},
            producer=self.producer,
            seed=self.seed,
            truth={k: v[indices] for k, v in self.truth.items()},
            created=self.created,
            hitgen_version=self.hitgen_version,
            notes=self.notes,
            physics=self.physics,
        )

    @classmethod
    def concatenate(cls, parts: list[EventSet]) -> EventSet:
        """Events of several sets of the same detector, in order; producer and seeds are joined."""
        first = parts[0]
        for p in parts[1:]:
            if p.detector != first.detector or p.detector_spec != first.detector_spec:
                raise HitgenError(f"cannot join event files of different detectors or specs ({first.detector}, {p.detector})")
        offsets, hits = csr.concatenate([(p.offsets, p.hits) for p in parts])
        truth_keys = set.intersection(*(set(p.truth) for p in parts))
        seeds = [p.seed for p in parts]
        return cls(
            detector=first.detector,
            detector_spec=first.detector_spec,
            conditions={k: np.concatenate([p.conditions[k] for p in parts]) for k in first.conditions},
            offsets=offsets,
            hits=hits,
            producer=first.producer if all(p.producer == first.producer for p in parts) else " | ".join(sorted({p.producer for p in parts})),
            seed=seeds[0] if len(parts) == 1 else None,
            truth={k: np.concatenate([p.truth[k] for p in parts]) for k in truth_keys},
            notes={"seeds": seeds} if len(parts) > 1 else first.notes,
            physics=first.physics if all(p.physics == first.physics for p in parts) else {},
        )

    def write(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write atomically (temporary file, then rename), in chunks of CHUNK_EVENTS events."""
        with EventWriter(path, self.detector_spec, self.producer, self.seed, overwrite, self.notes, self.physics) as w:
            for lo in range(0, max(self.n_events, 1), CHUNK_EVENTS):
                sl = slice(lo, min(lo + CHUNK_EVENTS, self.n_events))
                o = self.offsets[sl.start : sl.stop + 1]
                w.append(
                    {k: v[sl] for k, v in self.conditions.items()},
                    o - o[0],
                    {k: v[o[0] : o[-1]] for k, v in self.hits.items()},
                    {k: v[sl] for k, v in self.truth.items()},
                )
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> EventSet:
        """Read and validate a hitgen-events file; raises EventFileError saying what is wrong."""
        path = Path(path)
        with open_event_file(path) as f:
            attrs, spec = check_header(f, path)
            check_declared_sizes(f, path)
            try:
                conditions = {k: v[()] for k, v in f["conditions"].items()}
                offsets = f["hits/offsets"][()]
                hits = {k: v[()] for k, v in f["hits"].items() if k != "offsets"}
                truth = {k: v[()] for k, v in f["truth"].items()} if "truth" in f else {}
            except (OSError, KeyError, RuntimeError) as e:
                raise EventFileError(f"{path}: damaged or truncated data ({e})") from None
        problems = validate_arrays(spec, conditions, offsets, hits, truth)
        if problems:
            raise EventFileError(f"{path}: " + "; ".join(problems))
        seed = attrs.get("seed")
        try:
            notes = json.loads(attrs["notes"]) if "notes" in attrs else {}
        except ValueError:
            raise EventFileError(f"{path}: notes attribute is not valid JSON") from None
        physics = physics_record(attrs, path)
        return cls(
            detector=str(attrs["detector"]),
            detector_spec=spec,
            conditions=conditions,
            offsets=offsets,
            hits=hits,
            producer=str(attrs["producer"]),
            seed=None if seed is None else int(seed),
            truth=truth,
            created=str(attrs["created"]),
            hitgen_version=str(attrs["hitgen_version"]),
            notes=notes,
            physics=physics,
        )


def physics_record(attrs: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The physics settings a file records (its JSON attribute "physics"), or {} where it has none."""
    if "physics" not in attrs:
        return {}
    try:
        record = json.loads(attrs["physics"])
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise EventFileError(f"{path}: physics attribute is not a JSON object")
    return record


def open_event_file(path: Path) -> h5py.File:
    """Open for reading, turning a missing, foreign or truncated file into one clear error."""
    if not path.exists():
        raise EventFileError(f"{path}: no such file")
    if path.is_dir():
        raise EventFileError(f"{path}: is a folder, not an event file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise EventFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not is_hdf5:
        raise EventFileError(f"{path}: not an HDF5 file (expected a hitgen-events file)")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise EventFileError(f"{path}: damaged or truncated HDF5 file (it cannot be opened)") from None


def check_header(f: h5py.File, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the attributes and groups of an open file; return (attrs, detector_spec)."""
    attrs = dict(f.attrs)
    fmt = attrs.get("format")
    if fmt != FORMAT:
        raise EventFileError(f"{path}: not a hitgen-events file (format attribute is {fmt!r})")
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise EventFileError(f"{path}: missing attribute(s) {', '.join(missing)}")
    if attrs["format_version"] != FORMAT_VERSION:
        raise EventFileError(f"{path}: format_version {attrs['format_version']} is not supported (this hitgen reads {FORMAT_VERSION})")
    try:
        spec = json.loads(attrs["detector_spec"])
    except (TypeError, ValueError):
        raise EventFileError(f"{path}: detector_spec attribute is not valid JSON") from None
    if not isinstance(spec, dict) or spec.get("name") != attrs["detector"]:
        raise EventFileError(f"{path}: detector_spec does not describe detector '{attrs['detector']}'")
    for group in ("conditions", "hits", "hits/offsets"):
        if group not in f:
            raise EventFileError(f"{path}: missing /{group}")
    return attrs, spec


MAX_COMPRESSION = 1100  # gzip packs at most about 1032:1 (a run of zeros): a dataset larger than this is forged


def check_declared_sizes(f: h5py.File, path: Path) -> None:
    """Before anything is read: every dataset's declared size fits what the file can hold, and the
    conditions have one row per event; a damaged or forged file then costs no memory."""
    budget = MAX_COMPRESSION * max(path.stat().st_size, 1) + (1 << 20)
    datasets: list[tuple[str, h5py.Dataset]] = []
    f.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    for name, ds in datasets:
        nbytes = int(np.prod(ds.shape, dtype=np.float64) * ds.dtype.itemsize)
        if nbytes > budget:
            raise EventFileError(f"{path}: /{name} declares shape {ds.shape} ({nbytes / 2**30:.1f} GiB) in a file of {path.stat().st_size} bytes")
    n = f["hits/offsets"].shape[0] - 1 if f["hits/offsets"].ndim == 1 else -1
    for name, ds in datasets:
        if name.startswith(("conditions/", "truth/")) and (ds.ndim == 0 or ds.shape[0] != n):
            raise EventFileError(f"{path}: /{name} has shape {ds.shape}, expected {n} events first")


def _check_fields(
    group: str, label: str, arrays: dict[str, np.ndarray], specs: dict[str, tuple[np.dtype, tuple[int, ...]]], length: int
) -> list[str]:
    """Names, shapes (length first) and dtypes of one group of arrays against the spec."""
    problems = []
    if set(arrays) != set(specs):
        problems.append(f"{label} {sorted(arrays)} differ from the detector's {sorted(specs)}")
    for name, arr in arrays.items():
        if name not in specs:
            continue
        dtype, shape = specs[name]
        if arr.shape != (length, *shape):
            problems.append(f"{group}/{name} has shape {arr.shape}, expected {(length, *shape)}")
        if arr.dtype != dtype:
            problems.append(f"{group}/{name} has dtype {arr.dtype}, expected {dtype}")
    return problems


def validate_arrays(
    spec: dict[str, Any],
    conditions: dict[str, np.ndarray],
    offsets: np.ndarray,
    hits: dict[str, np.ndarray],
    truth: dict[str, np.ndarray],
) -> list[str]:
    """Every inconsistency between arrays and the detector spec, as readable sentences."""
    problems: list[str] = []
    offsets = np.asarray(offsets)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets.dtype != np.int64:
        return [f"hits/offsets must be a 1-D int64 array of length N+1 (got shape {offsets.shape}, {offsets.dtype})"]
    n = len(offsets) - 1
    if offsets[0] != 0:
        problems.append(f"hits/offsets[0] is {offsets[0]}, not 0")
    if n and np.any(np.diff(offsets) < 0):
        problems.append("hits/offsets decrease somewhere")
    n_hits = int(offsets[-1])
    problems += _check_fields("hits", "hit fields", hits, _field_dtypes(spec, "hit_fields"), n_hits)
    problems += _check_fields("conditions", "conditions", conditions, _field_dtypes(spec, "conditions"), n)
    for name, arr in truth.items():
        if arr.ndim < 1 or arr.shape[0] != n:
            problems.append(f"truth/{name} has shape {arr.shape}, expected {n} events first")
    return problems


class EventWriter:
    """Append blocks of events to a new hitgen-events file; the file appears only on close().

    Use as a context manager: an exception (or KeyboardInterrupt) inside the block removes the
    temporary file and leaves any existing file at `path` untouched.
    """

    def __init__(
        self,
        path: str | Path,
        detector_spec: dict[str, Any],
        producer: str,
        seed: int | None,
        overwrite: bool = False,
        notes: dict[str, Any] | None = None,
        physics: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.notes = notes or {}
        self.physics = physics or {}
        self.spec = detector_spec
        self.producer = producer
        self.seed = seed
        if self.path.is_dir():
            raise HitgenError(f"{self.path}: is a folder; give a file name for the output")
        if self.path.exists() and not overwrite:
            raise HitgenError(f"{self.path}: already exists (use --overwrite to replace it)")
        parent = self.path.parent
        if not parent.is_dir():
            raise HitgenError(f"{self.path}: folder {parent} does not exist")
        self.tmp = parent / f".{self.path.name}.partial-{os.getpid()}"
        self.n_events = 0
        self.n_hits = 0
        try:  # nothing may stay behind if this fails or a signal arrives before the caller's `with`
            try:
                self.file = h5py.File(self.tmp, "w")
            except OSError as e:
                raise HitgenError(f"{self.path}: cannot write here ({e.strerror or e})") from None
            try:
                self.file.create_dataset("hits/offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(CHUNK_EVENTS,), **COMPRESSION)
                for group, kind in (("hits", "hit_fields"), ("conditions", "conditions")):
                    for name, (dtype, shape) in _field_dtypes(detector_spec, kind).items():
                        self.file.create_dataset(
                            f"{group}/{name}", (0, *shape), dtype, maxshape=(None, *shape), chunks=(CHUNK_EVENTS, *shape), **COMPRESSION
                        )
            except BaseException:
                self.file.close()
                raise
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _extend(ds: h5py.Dataset, data: np.ndarray, start: int) -> None:
        ds.resize(start + len(data), axis=0)
        ds[start : start + len(data)] = data

    def append(
        self,
        conditions: dict[str, np.ndarray],
        offsets: np.ndarray,
        hits: dict[str, np.ndarray],
        truth: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Add a block of events: offsets start at 0 and index into this block's hit arrays."""
        offsets = np.asarray(offsets, dtype=np.int64)
        truth = truth or {}
        problems = validate_arrays(self.spec, conditions, offsets, hits, truth)
        if problems:
            raise ValueError("invalid block of events: " + "; ".join(problems))
        f = self.file
        n, h = len(offsets) - 1, int(offsets[-1])
        for name, arr in conditions.items():
            self._extend(f[f"conditions/{name}"], arr, self.n_events)
        for name, arr in hits.items():
            self._extend(f[f"hits/{name}"], arr, self.n_hits)
        for name, arr in truth.items():
            key = f"truth/{name}"
            if key not in f:
                if self.n_events:
                    raise ValueError(f"truth/{name} appeared after the first block")
                shape = arr.shape[1:]
                f.create_dataset(key, (0, *shape), arr.dtype, maxshape=(None, *shape), chunks=(CHUNK_EVENTS, *shape), **COMPRESSION)
            self._extend(f[key], arr, self.n_events)
        self._extend(f["hits/offsets"], offsets[1:] + self.n_hits, self.n_events + 1)
        self.n_events += n
        self.n_hits += h

    def close(self) -> Path:
        """Write the attributes (format last), close, and rename into place."""
        f = self.file
        if "truth" in f:
            lengths = {name: ds.shape[0] for name, ds in f["truth"].items()}
            bad = [k for k, v in lengths.items() if v != self.n_events]
            if bad:
                raise ValueError(f"truth field(s) {bad} not given for every block")
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["detector"] = self.spec["name"]
        f.attrs["detector_spec"] = json.dumps(self.spec, sort_keys=True)
        f.attrs["producer"] = self.producer
        if self.seed is not None:
            f.attrs["seed"] = int(self.seed)
        f.attrs["hitgen_version"] = __version__
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        if self.notes:
            f.attrs["notes"] = json.dumps(self.notes, sort_keys=True)
        if self.physics:
            f.attrs["physics"] = json.dumps(self.physics, sort_keys=True)
        f.attrs["format"] = FORMAT
        f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_header(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], int]:
    """(attrs, detector_spec, number of events) of an event file, checked, without reading its data."""
    path = Path(path)
    with open_event_file(path) as f:
        attrs, spec = check_header(f, path)
        check_declared_sizes(f, path)
        return attrs, spec, f["hits/offsets"].shape[0] - 1


def iter_blocks(path: str | Path, block: int, hits: bool = True):
    """(first event, conditions, offsets from 0, hits) of consecutive blocks of `block` events, read
    one block at a time (memory bounded by the block, not the file); hits=False reads conditions only
    (hits come back empty). Shapes and dtypes are checked as EventSet.read checks them."""
    path = Path(path)
    with open_event_file(path) as f:
        _, spec = check_header(f, path)
        check_declared_sizes(f, path)
        n = f["hits/offsets"].shape[0] - 1
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            try:
                conditions = {k: v[lo:hi] for k, v in f["conditions"].items()}
                offsets = f["hits/offsets"][lo : hi + 1]
                if hits:
                    h = {k: v[int(offsets[0]) : int(offsets[-1])] for k, v in f["hits"].items() if k != "offsets"}
                else:
                    h = {k: np.zeros((0, *v.shape[1:]), v.dtype) for k, v in f["hits"].items() if k != "offsets"}
                    offsets = np.zeros(hi - lo + 1, np.int64) + offsets[0]
            except (OSError, KeyError, RuntimeError) as e:
                raise EventFileError(f"{path}: damaged or truncated data ({e})") from None
            offsets = offsets - offsets[0]
            problems = validate_arrays(spec, conditions, offsets, h, {})
            if problems:
                raise EventFileError(f"{path}: " + "; ".join(problems))
            yield lo, conditions, offsets, h


def condition_quantities(conditions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kinematic quantities whose training range a model records, keyed by the range's name:
    |p| in GeV (momentum), kinetic energy in GeV (energy), polar angle to +z in degrees (direction)."""
    out = {}
    if "momentum" in conditions:
        out["momentum_range_gev"] = np.linalg.norm(conditions["momentum"].astype(np.float64), axis=1)
    if "energy" in conditions:
        out["energy_range_gev"] = conditions["energy"].astype(np.float64)
    if "direction" in conditions:
        out["polar_angle_range_deg"] = np.degrees(np.arccos(np.clip(conditions["direction"][:, 2].astype(np.float64), -1.0, 1.0)))
    return out
