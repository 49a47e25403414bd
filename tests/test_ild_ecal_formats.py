"""ild-ecal's foreign formats: ShowerData (read back with showerdata's own loader, and files showerdata
itself wrote imported), CaloChallenge-style voxels (layout and round trip), the real ddsim EDM4hep
event and the CaloClouds sample in shared/realdata, and bad input for every reader and writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors import get_detector, reader_of, writer_of
from hitgen.detectors.ild_ecal import formats
from hitgen.detectors.ild_ecal import geometry as ild
from test_ild_ecal import hits_of

showerdata = pytest.importorskip("showerdata")

C = ild.CENTRE_CELL
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
EDM4HEP = REALDATA / "single_event_example.edm4hep.root"
CALOCLOUDS = REALDATA / "mini_data_sample.hdf5"


def events_of(showers: list[list[tuple[int, int, int, float]]], absorber: str = "W") -> EventSet:
    """Hand-made ild-ecal events, per event a list of hits (layer, cell_x, cell_y, MeV), hits sorted."""
    n = len(showers)
    cond = ild.sample_conditions(n, np.random.default_rng(5), energy_range=(2.0, 50.0), max_angle=20.0)
    offsets, hits = hits_of([sorted(s) for s in showers])
    spec = ild.INFO.spec() | {"absorber": absorber}
    return EventSet(ild.NAME, spec, cond, offsets, hits, "test", seed=1)


SHOWERS = [
    [(0, C, C, 1.5), (3, C + 1, C - 2, 0.25), (29, C - 14, C + 14, 7.0)],
    [],
    [(12, C, C, 40.0), (12, C, C + 1, 3.0), (20, C + 5, C, 0.5)],
]


def assert_same_events(a: EventSet, b: EventSet) -> None:
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for k in ("layer", "cell_x", "cell_y"):
        np.testing.assert_array_equal(a.hits[k], b.hits[k])
    np.testing.assert_allclose(a.hits["energy"], b.hits["energy"], rtol=1e-6)
    for k in ("energy", "direction", "entry_point"):
        np.testing.assert_allclose(a.conditions[k], b.conditions[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(a.conditions["pdg"], b.conditions["pdg"])


# --- ShowerData ---------------------------------------------------------------------------------------
def test_showerdata_export_reads_with_showerdata(tmp_path):
    ev = events_of(SHOWERS)
    out = tmp_path / "sd.h5"
    formats.write_showerdata(ev, out)
    s = showerdata.load(out)
    assert len(s) == 3 and s.points.shape == (3, 3, 4)
    np.testing.assert_array_equal(s.energies[:, 0], ev.conditions["energy"])  # GeV
    np.testing.assert_array_equal(s.directions, ev.conditions["direction"])
    np.testing.assert_array_equal(s.pdg, ev.conditions["pdg"])
    first = s.points[0]  # x, y mm at the cell centres, z the layer, energy GeV
    np.testing.assert_allclose(first[:, 0], [0.0, 5.0, -70.0])
    np.testing.assert_allclose(first[:, 1], [0.0, -10.0, 70.0])
    np.testing.assert_array_equal(first[:, 2], [0, 3, 29])
    np.testing.assert_allclose(first[:, 3], [1.5e-3, 0.25e-3, 7.0e-3], rtol=1e-6)
    assert (s.points[1] == 0).all()  # an event without hits: all padding
    # showerdata's own observables see the same energy per layer (GeV)
    per_layer = showerdata.observables.calc_energy_per_layer(s, num_layers=30)
    np.testing.assert_allclose(per_layer[2, 12], 43.0e-3, rtol=1e-6)


def test_showerdata_round_trip_keeps_entry_and_absorber(tmp_path):
    ev = events_of(SHOWERS, absorber="Pb")
    formats.write_showerdata(ev, tmp_path / "sd.h5")
    back = formats.read_showerdata(tmp_path / "sd.h5")
    assert_same_events(ev, back)
    assert back.detector_spec["absorber"] == "Pb"


def test_showerdata_written_by_showerdata_imports(tmp_path):
    """A file showerdata itself wrote: two points in one cell are summed, padding ignored, the
    missing entry points default to the slab's axis."""
    pts = np.zeros((2, 4, 4), np.float32)
    pts[0, :3] = [[1.0, -1.0, 0.0, 0.002], [2.0, 2.0, 0.0, 0.001], [-12.6, 30.0, 7.0, 0.004]]
    pts[1, :1] = [[300.0, -300.0, 29.0, 0.0005]]
    path = tmp_path / "by_showerdata.h5"
    showerdata.Showers(points=pts, energies=[[10.0], [20.0]], pdg=[22, 11], directions=[[0, 0, 1], [0.6, 0, 0.8]]).save(path)
    ev = formats.read_showerdata(path)
    assert ev.n_events == 2 and ev.hits_per_event().tolist() == [2, 1]
    assert ev.hits["layer"].tolist() == [0, 7, 29]
    assert ev.hits["cell_x"].tolist() == [C, C - 3, C + 60] and ev.hits["cell_y"].tolist() == [C, C + 6, C - 60]
    np.testing.assert_allclose(ev.hits["energy"], [3.0, 4.0, 0.5], rtol=1e-6)
    assert ev.conditions["pdg"].tolist() == [22, 11] and ev.conditions["energy"].tolist() == [10.0, 20.0]
    assert (ev.conditions["entry_point"] == 0).all()
    assert any("entry points" in n for n in ev.notes["import"]) and any("summed" in n for n in ev.notes["import"])


# --- CaloChallenge-style voxels ----------------------------------------------------------------------------
def test_calochallenge_layout_and_round_trip(tmp_path):
    ev = events_of(SHOWERS)
    ev.conditions["entry_point"][:] = [[0.0, 0.0, 0.0], [6.0, -1.0, 0.0], [-7.4, 2.4, 0.0]]  # entry cells (C, C), (C+1, C), (C-1, C)
    out = tmp_path / "cc.h5"
    message = formats.write_calochallenge(ev, out)
    assert "27000 voxels" in message
    with h5py.File(out) as f:
        showers, incident = f["showers"][()], f["incident_energies"][()]
        outside = f["energy_outside_window"][()]
    assert showers.shape == (3, 27000) and incident.shape == (3, 1)
    np.testing.assert_allclose(incident[:, 0], ev.conditions["energy"] * 1e3, rtol=1e-6)  # MeV
    # layer-major, then x, then y: event 0's hit (3, C+1, C-2) sits at window (16, 13) of layer 3
    assert showers[0, 3 * 900 + 16 * 30 + 13] == np.float32(0.25)
    # event 2's entry cell is (C-1, C), so its window starts at (C-16, C-15): (12, C, C+1) -> window (16, 16)
    assert showers[2, 12 * 900 + 16 * 30 + 16] == np.float32(3.0)
    assert outside.tolist() == [0.0, 0.0, 0.0]
    assert_same_events(ev, formats.read_calochallenge(out))


def test_calochallenge_counts_what_the_window_leaves_out(tmp_path):
    ev = events_of([[(0, C, C, 2.0), (1, C + 20, C, 1.0)]])
    ev.conditions["entry_point"][:] = 0.0
    out = tmp_path / "cc.h5"
    assert "outside the 30x30 window" in formats.write_calochallenge(ev, out)
    with h5py.File(out) as f:
        assert f["energy_outside_window"][()].tolist() == [1.0]
    back = formats.read_calochallenge(out)
    assert back.n_hits == 1 and any("outside the window" in n for n in back.notes["import"])


# --- real files: EDM4hep (ddsim, ILD) and CaloClouds ---------------------------------------------------------
@pytest.mark.skipif(not EDM4HEP.is_file(), reason="shared/realdata not present")
def test_edm4hep_ild_photon():
    ev = formats.read_edm4hep(EDM4HEP)
    assert ev.n_events == 1 and ev.conditions["pdg"].tolist() == [22]
    assert ev.conditions["energy"][0] == pytest.approx(43.71, abs=0.01)
    assert ev.conditions["direction"][0, 2] > 0.9999  # the gun points along the stave normal
    assert ev.n_hits == 802 and set(ev.hits["layer"].tolist()) == set(range(1, 30))  # ILD's layer 0 has no hit here
    assert ev.hits["energy"].sum() == pytest.approx(1008.8, abs=0.1)  # MeV, above 0.1 MeV per cell
    w = ev.hits["energy"]
    assert abs(np.average(ev.hits["cell_x"], weights=w) - C) < 1 and abs(np.average(ev.hits["cell_y"], weights=w) - C) < 1
    assert any("other barrel staves" in n for n in ev.notes["import"])


@pytest.mark.skipif(not CALOCLOUDS.is_file(), reason="shared/realdata not present")
def test_caloclouds_sample():
    ev = formats.read_caloclouds(CALOCLOUDS)
    assert ev.n_events == 2 and ev.conditions["energy"].tolist() == pytest.approx([15.62006, 41.92682])
    assert (ev.hits["energy"] >= ild.THRESHOLD_MEV).all() and ev.hits["layer"].max() <= 29


def test_cell_id_decoding():
    ids = np.array([(3 << 8) | (7 << 16) | ((-2 & 0xFFFF) << 32) | (5 << 48)], np.uint64)
    d = formats.decode_cell_ids(ids, "system:0:5,module:5:3,stave:8:4,tower:12:4,layer:16:6,wafer:22:6,slice:28:4,cellX:32:-16,cellY:48:-16")
    assert (d["stave"][0], d["layer"][0], d["cellX"][0], d["cellY"][0]) == (3, 7, -2, 5)
    with pytest.raises(HitgenError, match="malformed cell id encoding"):
        formats.decode_cell_ids(ids, "system:0:5,layer=3")


# --- the generic hooks and bad input ------------------------------------------------------------------------
def test_registry_hooks():
    assert reader_of("showerdata")[0].name == ild.NAME
    with pytest.raises(HitgenError, match="unknown import --format 'root'"):
        reader_of("root")
    with pytest.raises(HitgenError, match="cannot be exported as 'showerdata'"):
        writer_of(get_detector("clas12-ecal"), "showerdata")
    with pytest.raises(HitgenError, match="cannot be exported as 'edm4hep'"):
        writer_of(get_detector(ild.NAME), "edm4hep")


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def _showerdata_raw(path: Path, pts: np.ndarray, energies) -> Path:
    """A ShowerData file written without showerdata (it refuses negative energies itself)."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("showers", (len(pts),), dtype=h5py.vlen_dtype(np.dtype("float32")))
        ds[...] = [p.reshape(-1) for p in pts]
        f.create_dataset("energies", data=np.asarray(energies, np.float32).reshape(-1, 1))
        f.create_dataset("directions", data=np.tile([0, 0, 1], (len(pts), 1)).astype(np.float32))
        f.create_dataset("pdg", data=np.full(len(pts), 22, np.int32))
        f.create_dataset("shape", data=np.array([len(pts), pts.shape[1], 4], np.int32))
    return path


def _bad_files(d: Path) -> list[tuple[str, Path, str]]:
    text = d / "notes.txt"
    text.write_text("not a shower\n")
    one = np.array([[[0.0, 0.0, 3.0, 0.002]]], np.float32)
    return [
        ("showerdata", text, "not an HDF5 file"),
        ("showerdata", _h5(d / "foreign.h5", x=np.zeros(3)), "not a ShowerData file (no /showers"),
        ("showerdata", _showerdata_raw(d / "neg.h5", np.array([[[0.0, 0.0, 3.0, -0.002]]], np.float32), [10.0]), "negative energy"),
        ("showerdata", _showerdata_raw(d / "mev.h5", one * [1, 1, 1, 1e4], [10.0]), "wrong units"),
        ("showerdata", _showerdata_raw(d / "far.h5", one + [400.0, 0, 0, 0], [10.0]), "outside the slab"),
        ("showerdata", _showerdata_raw(d / "deep.h5", one + [0, 0, 27.0, 0], [10.0]), "outside the slab"),
        ("calochallenge", _h5(d / "ds2.h5", incident_energies=np.ones((2, 1)), showers=np.zeros((2, 6480))), "expected (N, 27000)"),
        ("calochallenge", _h5(d / "inc.h5", incident_energies=np.ones(2), showers=np.zeros((2, 27000))), "expected (2, 1)"),
        ("calochallenge", _h5(d / "cneg.h5", incident_energies=np.ones((1, 1)), showers=-np.ones((1, 27000))), "negative energies"),
        ("calochallenge", _h5(d / "cgev.h5", incident_energies=np.full((1, 1), 10.0), showers=np.full((1, 27000), 0.01)), "wrong units"),
        (
            "calochallenge",
            _h5(d / "edge.h5", incident_energies=np.full((1, 1), 1e4), showers=np.full((1, 27000), 1e-3), entry_points=[[300.0, 0, 0]]),
            "outside the slab",
        ),
        ("caloclouds", _h5(d / "cc3.h5", events=np.zeros((2, 10, 3)), energy=np.ones((2, 1))), "expected (N, points, 4)"),
        ("edm4hep", text, "not a ROOT file"),
        ("edm4hep", d / "foreign.h5", "not a ROOT file"),
    ]


def test_bad_input_is_one_clear_error(tmp_path):
    for name, path, fragment in _bad_files(tmp_path):
        with pytest.raises(HitgenError) as e:
            reader_of(name)[1].read(path)
        assert fragment in str(e.value) and "\n" not in str(e.value), (name, path.name, str(e.value))


# --- the command line --------------------------------------------------------------------------------------
def hitgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_cli_export_import_and_errors(tmp_path):
    src = events_of(SHOWERS).write(tmp_path / "ev.h5")
    r = hitgen("export", str(src), "--format", "showerdata", "--out", str(tmp_path / "sd.h5"))
    assert r.returncode == 0, r.stderr
    r = hitgen("import", str(tmp_path / "sd.h5"), "--format", "showerdata", "--out", str(tmp_path / "back.h5"))
    assert r.returncode == 0 and "3 events, 6 hits of ild-ecal" in r.stdout, r.stderr
    assert_same_events(EventSet.read(src), EventSet.read(tmp_path / "back.h5"))
    bad = [
        (("export", str(src), "--format", "onnx", "--out", str(tmp_path / "x")), "cannot be exported as 'onnx'"),
        (("import", str(tmp_path / "ev.h5"), "--format", "showerdata", "--out", str(tmp_path / "x.h5")), "not a ShowerData file"),
        (("import", str(tmp_path / "sd.h5"), "--format", "root", "--out", str(tmp_path / "x.h5")), "unknown import --format"),
    ]
    for args, fragment in bad:
        r = hitgen(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and fragment in lines[0], (args, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.h5", "ev.h5", "sd.h5"]  # nothing else, no partial file


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    """A writer that fails half-way leaves neither the output nor its temporary file."""
    from typer.testing import CliRunner

    from hitgen.cli import app

    def broken(events, path):
        Path(path).write_bytes(b"half")
        raise HitgenError("disk full")

    monkeypatch.setattr(formats, "write_showerdata", broken)
    src = events_of(SHOWERS).write(tmp_path / "ev.h5")
    result = CliRunner().invoke(app, ["export", str(src), "--format", "showerdata", "--out", str(tmp_path / "sd.h5")])
    assert isinstance(result.exception, HitgenError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev.h5"]


def test_export_records_spec(tmp_path):
    ev = events_of(SHOWERS, absorber="Ta")
    formats.write_calochallenge(ev, tmp_path / "cc.h5")
    with h5py.File(tmp_path / "cc.h5") as f:
        assert json.loads(f.attrs[formats.SPEC_ATTR])["absorber"] == "Ta"
