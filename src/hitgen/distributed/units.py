"""Units of work of a run: event ranges whose output is a pure function of (command, seed, range).

A run (one `hitgen simulate` or `hitgen generate` command) is cut into units of UNIT_EVENTS events.
Its identity (`run_id`) is a hash of everything that decides its events: the command, the detector
or model, the settings, the seed, the number of events and the conditions themselves. Each unit is
written as a block, an ordinary hitgen-events file under a hidden name beside the output

    .OUT.h5.<run_id>.<start>-<stop>.h5      (written under a partial name first, renamed when whole)

whose notes record {"unit": {"run", "start", "stop", "events"}}. The driver joins the blocks into
the output in event order, one block in memory at a time, and removes them. A block found beside the
output is used only if its name and its record say it is this run's (`--resume`); a share of a run
(`--units K/N`) is a file whose notes record {"share": {...}}, and `hitgen merge` joins shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet, EventWriter, read_header

UNIT_EVENTS = 1000  # a multiple of the simulation's digitisation block, so blocks digitise alike


@dataclass(frozen=True)
class Unit:
    start: int
    stop: int

    @property
    def events(self) -> int:
        return self.stop - self.start


def plan(n_events: int, unit_events: int = UNIT_EVENTS) -> list[Unit]:
    return [Unit(lo, min(lo + unit_events, n_events)) for lo in range(0, n_events, unit_events)]


def parse_share(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N (a job-array index K of N shares)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise HitgenError(f"malformed --units '{text}': expected K/N, e.g. 3/10 (the K-th of N shares, K from 1)")
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n:
        raise HitgenError(f"--units {text}: need 1 <= K <= N")
    return k, n


def share_of(units: list[Unit], k: int, n: int) -> list[Unit]:
    """The K-th (1-based) of N contiguous shares of the units, as equal as whole units allow."""
    if n > len(units):
        size = units[0].events if units else 0
        raise HitgenError(f"--units {k}/{n}: the run has only {len(units)} units of {size} events (N at most {len(units)})")
    lo, hi = len(units) * (k - 1) // n, len(units) * k // n
    return units[lo:hi]


def digest_arrays(arrays: dict[str, np.ndarray]) -> str:
    """A hash of named arrays (their names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def run_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def block_path(out: Path, run: str, unit: Unit) -> Path:
    return out.parent / f".{out.name}.{run}.{unit.start:012d}-{unit.stop:012d}.h5"


def unit_note(run: str, unit: Unit, n_events: int) -> dict[str, Any]:
    return {"unit": {"run": run, "start": unit.start, "stop": unit.stop, "events": n_events}}


def finished_blocks(out: Path, run: str, units: Iterable[Unit], n_events: int) -> dict[Unit, Path]:
    """The blocks of these units already beside the output, each checked to be this run's."""
    found = {}
    for unit in units:
        path = block_path(out, run, unit)
        if not path.exists():
            continue
        attrs, _, n = read_header(path)
        note = json.loads(attrs.get("notes", "{}")).get("unit")
        if note != unit_note(run, unit, n_events)["unit"] or n != unit.events:
            raise HitgenError(f"{path}: a block that is not this run's unit {unit.start}-{unit.stop} (remove it)")
        found[unit] = path
    return found


def stale_blocks(out: Path, run: str) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.{run}.*-*.h5"))


def check_writable(out: Path) -> None:
    """Before any work: the output's folder takes new files (os.access is not enough: /proc, read-only mounts)."""
    probe = out.parent / f".{out.name}.probe-{os.getpid()}"
    try:
        probe.open("w").close()
        probe.unlink()
    except OSError as e:
        raise HitgenError(f"{out}: cannot write here ({e.strerror or e})") from None


def check_no_stale_blocks(out: Path, run: str, resume: bool) -> None:
    """Without --resume, blocks of an interrupted run of the same command are not silently reused or
    lost; also checks that the output's folder takes new files."""
    check_writable(out)
    stale = stale_blocks(out, run)
    if stale and not resume:
        raise HitgenError(
            f"{out}: {len(stale)} finished unit(s) of an interrupted run of this command lie beside it: "
            f"add --resume to continue it, or remove {out.parent}/.{out.name}.{run}.*"
        )


def join(out: Path, paths: list[Path], overwrite: bool, notes: dict[str, Any] | None = None) -> tuple[Path, int, int]:
    """The blocks (or shares), in this order, as one event file at `out` (one block in memory at a
    time); their producer, seed, spec and physics must agree. Returns (path, events, hits)."""
    first = EventSet.read(paths[0])
    writer = EventWriter(out, first.detector_spec, first.producer, first.seed, overwrite, dict(notes or {}), first.physics)
    try:
        for path in paths:
            part = first if path == paths[0] else EventSet.read(path)
            if (part.detector_spec, part.producer, part.seed, part.physics) != (first.detector_spec, first.producer, first.seed, first.physics):
                raise HitgenError(f"{path}: not made by the same run as {paths[0]} (spec, producer, seed or physics differ)")
            writer.append(part.conditions, part.offsets, part.hits, part.truth)
        n_events, n_hits = writer.n_events, writer.n_hits
        path = writer.close()
    except BaseException:
        writer.abort()
        raise
    return path, n_events, n_hits


def remove(paths: Iterable[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def share_note(run: str, k: int, n: int, units: list[Unit], n_events: int) -> dict[str, Any]:
    return {"share": {"run": run, "k": k, "of": n, "start": units[0].start, "stop": units[-1].stop, "events": n_events}}


def merge(parts: list[Path], out: Path, overwrite: bool) -> tuple[Path, int, int]:
    """`hitgen merge`: shares of one run (--units K/N), each exactly once, joined in event order into
    the file one machine's run writes."""
    if not parts:
        raise HitgenError("give the shares to merge")
    shares = []
    for path in parts:
        attrs, _, n = read_header(path)
        note = json.loads(attrs.get("notes", "{}")).get("share")
        if not isinstance(note, dict):
            raise HitgenError(f"{path}: not a share of a run (written without --units K/N)")
        if note["stop"] - note["start"] != n:
            raise HitgenError(f"{path}: holds {n} events, its record says {note['stop'] - note['start']}")
        shares.append((note, Path(path)))
    runs = {note["run"] for note, _ in shares}
    if len(runs) > 1:
        raise HitgenError(f"the shares belong to {len(runs)} different runs ({', '.join(sorted(runs))}): another command or seed")
    shares.sort(key=lambda s: s[0]["start"])
    n_events, of = shares[0][0]["events"], shares[0][0]["of"]
    expected = 0
    for note, path in shares:
        if note["start"] < expected:
            raise HitgenError(f"{path}: share {note['k']}/{note['of']} is given twice or overlaps another")
        if note["start"] > expected:
            raise HitgenError(f"events {expected}-{note['start']} are missing: a share of the {of} is not given")
        expected = note["stop"]
    if expected != n_events:
        raise HitgenError(f"events {expected}-{n_events} are missing: a share of the {of} is not given")
    return join(out, [p for _, p in shares], overwrite, notes={"merged": {"run": runs.pop(), "shares": of}})
