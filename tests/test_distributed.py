"""Runs cut into units: shares and merge, resuming a killed driver, and a real Dask cluster on this
machine (a scheduler and two workers on 127.0.0.1), with a worker killed mid-run. Every path must
write the file one machine's run writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.distributed import units
from hitgen.simulation.runner import simulate
from test_cli import assert_one_line_error, hitgen

pytestmark = pytest.mark.geant4

MUONS = dict(particle="mu-", energy_range=(1.0, 2.0))  # ild-ecal muons: about a millisecond each
N = 2500  # three units: 1000, 1000, 500


def same_file(a: Path, b: Path) -> None:
    x, y = EventSet.read(a), EventSet.read(b)
    assert (x.detector_spec, x.producer, x.seed, x.physics) == (y.detector_spec, y.producer, y.seed, y.physics)
    for part in ("conditions", "hits", "truth"):
        ga, gb = getattr(x, part), getattr(y, part)
        assert ga.keys() == gb.keys()
        for k in ga:
            assert np.array_equal(ga[k], gb[k]), (part, k)
    assert np.array_equal(x.offsets, y.offsets)


def test_units_plan_shares_and_parsing():
    plan = units.plan(N)
    assert [(u.start, u.stop) for u in plan] == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert units.share_of(plan, 1, 2) == plan[:1] and units.share_of(plan, 2, 2) == plan[1:]
    assert sum((units.share_of(plan, k, 3) for k in (1, 2, 3)), []) == plan
    assert units.parse_share(" 2/3 ") == (2, 3)
    for bad in ("0/2", "3/2", "a/b", "2", "-1/2"):
        with pytest.raises(HitgenError):
            units.parse_share(bad)
    with pytest.raises(HitgenError, match="only 3 units"):
        units.share_of(plan, 1, 4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One machine's run, the file every other path must reproduce."""
    d = tmp_path_factory.mktemp("one")
    return simulate("ild-ecal", N, d / "one.h5", seed=5, workers=2, **MUONS).path


def test_shares_and_merge_give_one_machines_file(reference, tmp_path):
    parts = [simulate("ild-ecal", N, tmp_path / f"part{k}.h5", seed=5, workers=1, unit_share=(k, 2), **MUONS).path for k in (1, 2)]
    assert EventSet.read(parts[0]).n_events == 1000 and EventSet.read(parts[1]).n_events == 1500
    merged, n, _ = units.merge(parts[::-1], tmp_path / "merged.h5", overwrite=False)
    assert n == N
    same_file(reference, merged)
    assert list(tmp_path.glob(".*")) == []  # no block left behind
    other = simulate("ild-ecal", N, tmp_path / "other.h5", seed=6, workers=1, unit_share=(2, 2), **MUONS).path
    for given, message in (([parts[0]], "missing"), ([parts[0], parts[0], parts[1]], "twice"), ([parts[0], other], "different runs")):
        with pytest.raises(HitgenError, match=message):
            units.merge(given, tmp_path / "bad.h5", overwrite=False)
    assert not (tmp_path / "bad.h5").exists()
    assert_one_line_error(hitgen("merge", str(parts[0]), "--out", str(tmp_path / "cli.h5")), "missing")
    assert_one_line_error(hitgen("merge", str(reference), "--out", str(tmp_path / "cli.h5")), "not a share")


def test_a_killed_driver_resumes_from_its_finished_units(reference, tmp_path):
    out = tmp_path / "resumed.h5"
    cmd = [sys.executable, "-m", "hitgen", "simulate", "ild-ecal", "--events", str(N), "--seed", "5", "--workers", "1", "--out", str(out)]
    cmd += ["--particle", "mu-", "--energy-range", "1:2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not list(tmp_path.glob(".resumed.h5.*-*.h5")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Geant4 workers, as a lost node
    proc.wait()
    finished = len(list(tmp_path.glob(".resumed.h5.*-*.h5")))
    assert 1 <= finished < 3 and not out.exists()
    again = hitgen(*cmd[3:])
    assert again.returncode != 0 and "--resume" in again.stderr  # blocks are never silently reused or lost
    result = hitgen(*cmd[3:], "--resume")
    assert result.returncode == 0, result.stderr
    assert f"{3 - finished} run, {finished} reused" in result.stdout
    same_file(reference, out)
    assert list(tmp_path.glob(".*")) == []


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and two one-thread `dask worker` processes on 127.0.0.1; yields (scheduler file, workers)."""
    pytest.importorskip("distributed")
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "GEANT4_DATA_DIR": os.environ.get("GEANT4_DATA_DIR", "")}
    sched = tmp_path / "scheduler.json"
    procs = [_start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched)], env)]
    deadline = time.time() + 60
    while not sched.exists() and time.time() < deadline:
        time.sleep(0.1)
    workers = [
        _start([dask, "worker", "--scheduler-file", str(sched), "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}"], env)
        for i in range(2)
    ]
    procs += workers
    try:
        yield sched, workers
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_a_dask_cluster_writes_one_machines_file_even_when_a_worker_dies(reference, cluster, tmp_path):
    sched, workers = cluster
    out = tmp_path / "dask.h5"
    summary = simulate("ild-ecal", N, out, seed=5, executor="dask", scheduler=str(sched), **MUONS)
    assert summary.units_run == 3 and summary.workers >= 1
    same_file(reference, out)
    # a worker killed mid-run: its unit runs again on the other worker, the file is the same
    killed = tmp_path / "killed.h5"

    def kill_after_first_unit(done: int) -> None:
        if done >= 1000 and workers[0].poll() is None:
            os.killpg(workers[0].pid, signal.SIGKILL)

    simulate("ild-ecal", N, killed, seed=5, executor="dask", scheduler=str(sched), progress=kill_after_first_unit, **MUONS)
    assert workers[0].poll() is not None
    same_file(reference, killed)


def test_generation_in_units_on_dask_and_in_shares_draws_the_same_events(cluster, tmp_path):
    """The shipped CLAS12 model: one process, a Dask cluster of two workers, and two shares merged
    give the same conditions and the same events (up to the last-bit flips of tests/sameness.py:
    units change the batches events are decoded in). Photons of 0.5-1.5 GeV in units of 100 events
    (--unit-events), so that three units take seconds; the last one is short."""
    from hitgen.families import SamplingOptions
    from hitgen.generation.job import generate_file
    from sameness import assert_same_events

    sched, _ = cluster
    kw = dict(options={"momentum_range": (0.5, 1.5)}, n_events=250, opts=SamplingOptions(seed=3, batch_size=64))
    one = generate_file("clas12-ecal-gpt", tmp_path / "one.h5", **kw).path
    on_dask = generate_file("clas12-ecal-gpt", tmp_path / "dask.h5", executor="dask", scheduler=str(sched), unit_events=100, **kw)
    assert on_dask.units_run == 3
    parts = [generate_file("clas12-ecal-gpt", tmp_path / f"p{k}.h5", unit_share=(k, 2), unit_events=100, **kw).path for k in (1, 2)]
    assert [EventSet.read(p).n_events for p in parts] == [100, 150]
    merged, _, _ = units.merge(parts, tmp_path / "merged.h5", overwrite=False)
    ref = EventSet.read(one)
    for path in (on_dask.path, merged):
        other = EventSet.read(path)
        assert (other.producer, other.seed, other.detector_spec) == (ref.producer, ref.seed, ref.detector_spec)
        for k in ref.conditions:
            assert np.array_equal(ref.conditions[k], other.conditions[k])
        assert_same_events((ref.offsets, ref.hits), (other.offsets, other.hits), str(path))
    assert not [p for p in tmp_path.glob(".*")]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--executor", "cloud"], ["unknown --executor 'cloud'"]),
        (["--scheduler", "tcp://127.0.0.1:1"], ["--scheduler goes with --executor dask"]),
        (["--executor", "dask"], ["--scheduler"]),
        (["--executor", "dask", "--scheduler", "nowhere"], ["neither a scheduler file nor an address"]),
        (["--units", "3/2"], ["need 1 <= K <= N"]),
        (["--units", "x"], ["malformed --units"]),
        (["--units", "1/9"], ["only 1 units"]),
    ],
)
def test_bad_distribution_options(tmp_path, args, fragments):
    result = hitgen("simulate", "ild-ecal", "--events", "20", "--out", str(tmp_path / "x.h5"), *args)
    assert_one_line_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    env = {**os.environ, "HITGEN_DASK_TIMEOUT": "3"}
    args = ("simulate", "ild-ecal", "--events", "20", "--out", str(tmp_path / "x.h5"), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9")
    result = hitgen(*args, env=env)
    assert_one_line_error(result, "no Dask scheduler answered")
    assert list(tmp_path.iterdir()) == []
