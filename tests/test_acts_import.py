"""ACTS hit files -> odd-tracker events: hitgen events written in the layout of ActsExamples'
RootSimHitWriter and RootParticleWriter (both particle identity forms, shuffled hits, secondaries)
come back as the same events; bad input is one clear HitgenError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker import geometry as odd
from hitgen.detectors.odd_tracker.acts import map_to_modules, read_acts
from hitgen.simulation.runner import simulate

MODULES = odd.build_modules()
FIRST_EVENT_ID = 7  # ACTS event of hitgen events 0 and 1; two primaries per ACTS event


@pytest.fixture(scope="module")
def muons(tmp_path_factory) -> EventSet:
    out = tmp_path_factory.mktemp("acts") / "mu.h5"
    simulate("odd-tracker", 40, out, seed=5, workers=1, particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)
    return EventSet.read(out)


def synthetic(n: int = 6) -> EventSet:
    """n events of one hit per layer, on made-up modules and made-up positions on them (no Geant4)."""
    rows = [np.flatnonzero(MODULES.layer == layer) for layer in range(10)]
    module = np.array([r[(7 * i + 31 * k) % len(r)] for i in range(n) for k, r in enumerate(rows)])
    u, v = 0.9 * np.sin(np.arange(len(module))), 0.8 * np.cos(np.arange(len(module)))
    p = np.linspace(1, 5, 3 * len(module), dtype=np.float32).reshape(-1, 3)
    return EventSet(
        odd.NAME,
        odd.INFO.spec(),
        {
            "pdg": np.full(n, 13, np.int32),
            "charge": np.full(n, -1, np.int8),
            "vertex": np.linspace(-9, 9, 3 * n, dtype=np.float32).reshape(n, 3),
            "momentum": np.linspace(10, 20, 3 * n, dtype=np.float32).reshape(n, 3),
        },
        np.arange(0, 10 * n + 1, 10, dtype=np.int64),
        {
            "geometry_id": MODULES.geometry_id[module],
            "local_u": (u * MODULES.half_u[module]).astype(np.float32),
            "local_v": (v * MODULES.half_v[module]).astype(np.float32),
            "px": p[:, 0],
            "py": p[:, 1],
            "pz": p[:, 2],
        },
        "synthetic",
    )


def _pack(barcode: np.ndarray) -> np.ndarray:
    shifts = np.array([52, 40, 24, 16, 0], dtype=np.uint64)
    return np.bitwise_or.reduce(barcode.astype(np.uint64) << shifts, axis=1)


def _identity(barcode: np.ndarray, form: str, jagged_counts: np.ndarray | None = None) -> dict:
    """Identity branches of hits (jagged_counts None) or of particles, in the packed or the barcode form."""
    if jagged_counts is None:
        if form == "particle_id":
            return {"particle_id": _pack(barcode)}
        return {"barcode": ak.from_regular(ak.Array(barcode.astype(np.uint32)))}
    if form == "particle_id":
        return {"particle_id": ak.unflatten(_pack(barcode), jagged_counts)}
    names = ("vertex_primary", "vertex_secondary", "particle", "generation", "sub_particle")
    return {name: ak.unflatten(barcode[:, i].astype(np.uint32), jagged_counts) for i, name in enumerate(names)}


def write_acts(
    events: EventSet, folder: Path, hits_form: str = "particle_id", particles_form: str = "particle_id", drop: str = "", shift_mm: float = 0.0
) -> tuple[Path, Path]:
    """hits.root and particles.root of `events`: two primaries per ACTS event, the first three ACTS
    events with a secondary (two hits nowhere near a module), a primary without hits in every ACTS
    event, hits shuffled; TTrees, as ACTS writes (uproot's assignment syntax writes RNTuples). `drop`
    leaves out a branch of either file; `shift_mm` moves event 1's first hit outwards."""
    rng = np.random.default_rng(0)
    n, h = events.n_events, events.hits
    index = odd.module_index(MODULES, h["geometry_id"])
    xyz = odd.to_global(MODULES, index, np.stack([h["local_u"], h["local_v"]], 1))
    event = events.event_index()
    first = events.offsets[1]
    xyz[first, :2] *= 1 + shift_mm / np.hypot(*xyz[first, :2])
    primary = np.column_stack([np.ones(n), np.zeros(n), 1 + np.arange(n) % 2, np.zeros((n, 2))]).astype(np.int64)
    n_acts = (n + 1) // 2
    secondary = np.array([[1, 0, 3, 1, 0]] * 2 * min(3, n_acts))
    p_after = np.stack([h["px"], h["py"], h["pz"]], 1)
    hits = {
        "event_id": np.r_[FIRST_EVENT_ID + event // 2, FIRST_EVENT_ID + np.arange(len(secondary)) // 2].astype(np.uint32),
        "index": np.r_[np.arange(events.n_hits) - events.offsets[event], np.arange(len(secondary)) % 2].astype(np.int32),
        "barcode": np.r_[primary[event], secondary],
        "position": np.r_[xyz, np.zeros((len(secondary), 3))].astype(np.float32),
        "tp": np.r_[p_after + np.float32(0.002), np.ones((len(secondary), 3))].astype(np.float32),
    }
    order = rng.permutation(len(hits["index"]))
    hits = {k: v[order] for k, v in hits.items()}
    gid = odd.decode_geometry_id(np.r_[h["geometry_id"], np.zeros(len(secondary), np.uint64)][order])
    columns = {
        "event_id": hits["event_id"],
        "geometry_id": odd.encode_geometry_id(gid["volume"], gid["layer"], gid["sensitive"]),
        **_identity(hits["barcode"], hits_form),
        **{f"t{c}": hits["position"][:, i] for i, c in enumerate("xyz")},
        "tt": np.zeros(len(order), np.float32),
        **{f"tp{c}": hits["tp"][:, i] for i, c in enumerate("xyz")},
        "te": np.linalg.norm(hits["tp"], axis=1).astype(np.float32),
        **{f"deltap{c}": np.full(len(order), -0.002, np.float32) for c in "xyz"},
        "deltae": np.zeros(len(order), np.float32),
        "index": hits["index"],
        **{f"{k}_id": gid[k].astype(np.uint32) for k in ("volume", "boundary", "layer", "approach")},
        "sensitive_id": gid["sensitive"].astype(np.uint32),
    }
    # particles: per ACTS event its primaries, one primary without hits, and the secondary (first three events)
    c = events.conditions
    rows = [(e, i) for e in range(n_acts) for i in [2 * e, 2 * e + 1, -1, -2] if i < n and (i != -2 or e < 3)]
    barcode = np.array([primary[i] if i >= 0 else [1, 0, 9, 0, 0] if i == -1 else secondary[0] for _, i in rows])
    pick = np.array([max(i, 0) for _, i in rows])
    counts = np.bincount([e for e, _ in rows], minlength=n_acts)
    vector = {"particle_type": c["pdg"][pick], "q": c["charge"][pick].astype(np.float32)}
    vector |= {f"v{k}": c["vertex"][pick, i] for i, k in enumerate("xyz")} | {f"p{k}": c["momentum"][pick, i] for i, k in enumerate("xyz")}
    particles = {"event_id": (FIRST_EVENT_ID + np.arange(n_acts)).astype(np.uint32)}
    particles |= {k: ak.unflatten(v, counts) for k, v in vector.items()} | _identity(barcode, particles_form, counts)
    folder.mkdir(exist_ok=True)
    with uproot.recreate(folder / "hits.root") as f:
        f.mktree("hits", {k: v for k, v in columns.items() if k != drop})
    with uproot.recreate(folder / "particles.root") as f:
        f.mktree("particles", {k: v for k, v in particles.items() if k != drop})
    return folder / "hits.root", folder / "particles.root"


def assert_same_events(imported: EventSet, original: EventSet) -> None:
    assert imported.detector == odd.NAME and imported.detector_spec == odd.INFO.spec()
    np.testing.assert_array_equal(imported.offsets, original.offsets)
    np.testing.assert_array_equal(imported.hits["geometry_id"], original.hits["geometry_id"])
    for name in ("local_u", "local_v"):
        np.testing.assert_allclose(imported.hits[name], original.hits[name], rtol=0, atol=1e-3)
    for name in ("px", "py", "pz"):
        np.testing.assert_allclose(imported.hits[name], original.hits[name], rtol=1e-6)
    for name, value in original.conditions.items():
        np.testing.assert_array_equal(imported.conditions[name], value)
        assert imported.conditions[name].dtype == value.dtype


@pytest.mark.geant4
@pytest.mark.parametrize("hits_form", ["particle_id", "barcode"])
@pytest.mark.parametrize("particles_form", ["particle_id", "barcode"])
def test_geant4_muons_come_back(muons, tmp_path, hits_form, particles_form):
    hits, particles = write_acts(muons, tmp_path, hits_form, particles_form)
    imported = read_acts(hits, particles)
    assert_same_events(imported, muons)
    assert imported.producer == "ACTS RootSimHitWriter import of hits.root"


def test_points_on_modules_map_to_their_modules():
    rng = np.random.default_rng(2)
    index = np.r_[np.arange(len(MODULES)), rng.integers(0, len(MODULES), 20000)]
    local = rng.uniform(-1, 1, (len(index), 3)) * np.stack([MODULES.half_u, MODULES.half_v, MODULES.thickness / 2], 1)[index]
    local[: len(MODULES)] = 0  # every module's centre
    module, found, _ = map_to_modules(MODULES, odd.to_global(MODULES, index, local))
    np.testing.assert_array_equal(module, index)
    np.testing.assert_allclose(found, local, atol=1e-9)


@pytest.mark.parametrize("drop, path", [("tz", "hits.root"), ("barcode", "hits.root"), ("q", "particles.root"), ("generation", "particles.root")])
def test_missing_branch(tmp_path, drop, path):
    hits, particles = write_acts(synthetic(), tmp_path, "barcode", "barcode", drop=drop)
    with pytest.raises(HitgenError, match=f"{path}: tree '[a-z]+' has no branch '{drop}'"):
        read_acts(hits, particles)


def test_hit_off_every_module(tmp_path):
    hits, particles = write_acts(synthetic(), tmp_path, shift_mm=20.0)
    with pytest.raises(HitgenError, match=f"event {FIRST_EVENT_ID}, hit 0 of particle \\(1, 0, 2, 0, 0\\)") as error:
        read_acts(hits, particles)
    assert "hitgen's odd-tracker layer" in str(error.value)


def test_bad_files(tmp_path):
    events = synthetic()
    hits, particles = write_acts(events, tmp_path)
    with pytest.raises(HitgenError, match="no such file"):
        read_acts(tmp_path / "missing.root", particles)
    (tmp_path / "text.root").write_text("not ROOT " * 100)
    with pytest.raises(HitgenError, match="not a readable ROOT file"):
        read_acts(hits, tmp_path / "text.root")
    with pytest.raises(HitgenError, match="no tree 'simhits' .*its trees: hits"):
        read_acts(hits, particles, hits_tree="simhits")
    other, _ = write_acts(synthetic(8), tmp_path / "more")  # ACTS event 10 is not in the 6-event particles file
    with pytest.raises(HitgenError, match=f"event {FIRST_EVENT_ID + 3}: particle \\(1, 0, 1, 0, 0\\) has hits in .* but is missing"):
        read_acts(other, particles)


def hitgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_cli_import(tmp_path):
    events = synthetic()
    hits, particles = write_acts(events, tmp_path, "barcode", "particle_id")
    out = tmp_path / "imported.h5"
    result = hitgen("import-acts", str(hits), "--particles", str(particles), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"6 events, 60 hits -> {out}"
    assert_same_events(EventSet.read(out), events)
    missing = hitgen("import-acts", str(tmp_path / "nope.root"), "--particles", str(particles), "--out", str(tmp_path / "x.h5"))
    assert missing.returncode != 0 and missing.stderr.strip() == f"error: {tmp_path / 'nope.root'}: no such file"
    assert not (tmp_path / "x.h5").exists()


def test_cli_refuses_non_finite_particle_momenta(tmp_path):
    events = synthetic()
    events.conditions["momentum"][2, 0] = np.nan
    hits, particles = write_acts(events, tmp_path)
    out = tmp_path / "imported.h5"
    result = hitgen("import-acts", str(hits), "--particles", str(particles), "--out", str(out))
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "conditions/momentum holds 1 non-finite value" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hits.root", "particles.root"]
