"""The hitgen command: bad input gives one clear line and a non-zero exit, nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from hitgen.core.errors import EventFileError
from hitgen.core.events import EventSet


def hitgen(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, env=env or os.environ.copy(), cwd=cwd, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["simulate", "no-such-detector", "--events", "5"], ["unknown detector 'no-such-detector'", "clas12-ecal"]),
        (["simulate", "clas12-ecal", "--events", "0"], ["--events must be positive"]),
        (["simulate", "clas12-ecal", "--events", "-3"], ["--events must be positive"]),
        (["simulate", "clas12-ecal", "--events", "ten"], ["--events"]),
        (["simulate", "clas12-ecal", "--events", "5", "--momentum-range", "5"], ["malformed --momentum-range '5'"]),
        (["simulate", "clas12-ecal", "--events", "5", "--momentum-range", "a:b"], ["malformed --momentum-range"]),
        (["simulate", "clas12-ecal", "--events", "5", "--momentum-range", "3:1"], ["0 < LO < HI"]),
        (["simulate", "clas12-ecal", "--events", "5", "--momentum-range", "-1:2"], ["0 < LO < HI"]),
        (["simulate", "clas12-ecal", "--events", "5", "--momentum-range", "1:inf"], ["0 < LO < HI"]),
        (["simulate", "clas12-ecal", "--events", "5", "--workers", "-1"], ["--workers must be positive"]),
        (["simulate", "clas12-ecal", "--events", "5", "--physics", "FTFP_BERT"], ["unknown EM physics 'FTFP_BERT'"]),
    ],
)
def test_bad_simulate_options(tmp_path, args, fragments):
    out = tmp_path / "out.h5"
    result = hitgen(*args, "--out", str(out))
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_without_overwrite(tmp_path):
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    assert_one_line_error(hitgen("simulate", "clas12-ecal", "--events", "5", "--out", str(out)), "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("where", ["missing-folder/out.h5", "/proc/out.h5"])
def test_unwritable_output(tmp_path, where):
    out = tmp_path / where if not where.startswith("/") else Path(where)
    result = hitgen("simulate", "clas12-ecal", "--events", "5", "--out", str(out))
    assert_one_line_error(result, str(out))
    assert not out.exists()


@pytest.mark.parametrize("value", ["", "/nonexistent/g4data", "EMPTY"])
def test_geant4_data_missing(tmp_path, value):
    env = os.environ.copy()
    env["GEANT4_DATA_DIR"] = str(tmp_path / "empty") if value == "EMPTY" else value
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.h5"
    result = hitgen("simulate", "clas12-ecal", "--events", "5", "--out", str(out), env=env)
    assert_one_line_error(result, "Geant4 data not found", "GEANT4_DATA_DIR")
    assert not out.exists()


def test_info_on_bad_files(tmp_path):
    assert_one_line_error(hitgen("info", str(tmp_path / "missing.h5")), "no such file")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert_one_line_error(hitgen("info", str(text)), "not an HDF5 file")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(10)
    assert_one_line_error(hitgen("info", str(foreign)), "not a hitgen-events file")


@pytest.mark.geant4
def test_simulate_then_info_then_truncated(tmp_path):
    out = tmp_path / "ok.h5"
    result = hitgen("simulate", "clas12-ecal", "--events", "30", "--out", str(out), "--seed", "3", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "30 events" in result.stdout and "events/s" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.h5"]
    info = hitgen("info", str(out), "--plots", str(tmp_path / "plots"))
    assert info.returncode == 0, info.stderr
    assert "30 events of clas12-ecal" in info.stdout and "PCAL_U" in info.stdout and "E_vis/|p|" in info.stdout
    assert (tmp_path / "plots" / "occupancy.png").stat().st_size > 1000
    data = out.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert_one_line_error(hitgen("info", str(cut)), "damaged or truncated")


def _start_long_simulation(out: Path) -> subprocess.Popen:
    """A long run, returned once its first unit's block is written (work has begun, and an interrupt
    now has finished work to keep and unfinished work to throw away). Photons of 0.5-1 GeV: the
    smallest showers of the default range, so that the first unit is done in seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hitgen", "simulate", "clas12-ecal", "--events", "100000", "--momentum-range", "0.5:1", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 150
    try:
        while not _blocks(out):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "no block written in 150 s"
            time.sleep(0.2)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        raise
    time.sleep(2)  # let the workers simulate for a while
    return proc


def _blocks(out: Path) -> list[Path]:
    """The finished units' blocks of a run writing `out`: hidden, named .OUT.<run>.<start>-<stop>.h5."""
    return [p for p in out.parent.glob(f".{out.name}.*-*.h5")]


def _check_left_behind(out: Path) -> None:
    """What an interrupted or killed run may leave: no output, nothing that is not hidden, and hidden
    files that are either whole blocks of finished units (kept for --resume) or unreadable partials."""
    assert not out.exists()
    left = list(out.parent.iterdir())
    assert all(p.name.startswith(".") for p in left), left
    for block in _blocks(out):
        events = EventSet.read(block)
        assert events.n_events == 1000  # one whole unit
    for partial in set(left) - set(_blocks(out)):
        assert ".partial-" in partial.name, partial
        with pytest.raises(EventFileError):
            EventSet.read(partial)


@pytest.mark.geant4
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_simulation_leaves_nothing(tmp_path, sig):
    out = tmp_path / "big.h5"
    proc = _start_long_simulation(out)
    try:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        code, word = (130, "interrupted") if sig == signal.SIGINT else (143, "terminated")
        assert proc.returncode == code
        assert stderr.strip().splitlines()[-1] == f"error: {word}; no output written"
        _check_left_behind(out)
        assert not list(tmp_path.glob("*.partial-*"))  # a clean stop removes what it was writing
        assert _blocks(out)  # and keeps the finished units
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None


@pytest.mark.geant4
def test_killed_simulation_leaves_no_complete_looking_file(tmp_path):
    out = tmp_path / "big.h5"
    proc = _start_long_simulation(out)
    proc.kill()  # SIGKILL: no clean-up code runs
    proc.wait(timeout=30)
    _check_left_behind(out)
    # the workers notice that their parent is gone and stop by themselves
    deadline = time.time() + 20
    while time.time() < deadline:
        alive = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, f"workers still running: {alive}"
