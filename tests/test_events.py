"""The hitgen-events file: exact round trips, chunking, atomic writes, validation of damaged files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitgen.core import events as ev
from hitgen.core.errors import EventFileError, HitgenError
from hitgen.core.events import EventSet, EventWriter
from hitgen.detectors import get_detector

SPEC = get_detector("clas12-ecal").info.spec()


def make_events(counts: list[int], seed: int = 0, truth: bool = True) -> EventSet:
    rng = np.random.default_rng(seed)
    n, h = len(counts), int(sum(counts))
    return EventSet(
        detector="clas12-ecal",
        detector_spec=SPEC,
        conditions={
            "momentum": rng.normal(size=(n, 3)).astype(np.float32),
            "pdg": rng.integers(-3000, 3000, n).astype(np.int32),
        },
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        hits={
            "layer": rng.integers(0, 9, h).astype(np.int8),
            "strip": rng.integers(0, 68, h).astype(np.int16),
            "adc": rng.integers(0, 2**31 - 1, h).astype(np.int32),
            "tdc": rng.integers(0, 2**31 - 1, h).astype(np.int32),
        },
        producer="test",
        seed=seed,
        truth={"visible_energy_layer": rng.random((n, 9)).astype(np.float32)} if truth else {},
    )


def assert_same(a: EventSet, b: EventSet) -> None:
    assert a.detector == b.detector and a.producer == b.producer and a.seed == b.seed
    assert a.detector_spec == b.detector_spec
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for group in ("conditions", "hits", "truth"):
        da, db = getattr(a, group), getattr(b, group)
        assert set(da) == set(db)
        for k in da:
            assert da[k].dtype == db[k].dtype
            np.testing.assert_array_equal(da[k], db[k])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.lists(st.integers(0, 40), min_size=0, max_size=30), seed=st.integers(0, 2**31), truth=st.booleans())
def test_round_trip_is_exact(tmp_path, counts, seed, truth):
    original = make_events(counts, seed, truth)
    path = tmp_path / "rt.h5"
    original.write(path, overwrite=True)
    assert_same(original, EventSet.read(path))


def test_chunked_write_across_several_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK_EVENTS", 7)
    original = make_events(list(range(30)), seed=3)
    path = original.write(tmp_path / "chunks.h5")
    with h5py.File(path) as f:
        assert f["hits/adc"].chunks == (7,)
        # stored compressed (gzip + shuffle), read back exactly
        assert all(f[k].compression == "gzip" and f[k].shuffle for k in ("hits/adc", "hits/offsets", "conditions/momentum"))
    assert_same(original, EventSet.read(path))


def test_select_picks_events_and_their_hits():
    e = make_events([2, 0, 3, 1], seed=1)
    s = e.select(np.array([2, 0, 2]))
    np.testing.assert_array_equal(s.hits_per_event(), [3, 2, 3])
    np.testing.assert_array_equal(s.event(0)["adc"], e.event(2)["adc"])
    np.testing.assert_array_equal(s.event(1)["adc"], e.event(0)["adc"])
    np.testing.assert_array_equal(s.conditions["pdg"], e.conditions["pdg"][[2, 0, 2]])


def test_eventset_rejects_inconsistent_arrays():
    good = make_events([1, 2])
    with pytest.raises(ValueError, match="hits/adc has shape"):
        EventSet(good.detector, SPEC, good.conditions, good.offsets, {**good.hits, "adc": good.hits["adc"][:-1]}, "x")
    with pytest.raises(ValueError, match="hits/strip has dtype int64"):
        EventSet(good.detector, SPEC, good.conditions, good.offsets, {**good.hits, "strip": good.hits["strip"].astype(np.int64)}, "x")
    with pytest.raises(ValueError, match="decrease"):
        EventSet(good.detector, SPEC, good.conditions, np.array([0, 3, 2, 3]), good.hits, "x")


def test_writer_interrupted_leaves_nothing_and_keeps_old_file(tmp_path):
    path = tmp_path / "out.h5"
    old = make_events([1], seed=9)
    old.write(path)
    with pytest.raises(KeyboardInterrupt):
        with EventWriter(path, SPEC, "new", 1, overwrite=True) as w:
            e = make_events([3, 4])
            w.append(e.conditions, e.offsets, e.hits, e.truth)
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    assert_same(old, EventSet.read(path))


@pytest.mark.parametrize("calls_before", [0, 1, 3])
def test_writer_interrupted_while_opening_leaves_nothing(tmp_path, monkeypatch, calls_before):
    """A signal while the writer creates its file (before the caller's `with` can clean up) leaves no
    partial file: the race a SIGINT sent as soon as the partial file appears can hit."""
    calls = {"n": 0}
    real = h5py.Group.create_dataset

    def create_dataset(self, *args, **kwargs):
        if calls["n"] == calls_before:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    with pytest.raises(KeyboardInterrupt):
        EventWriter(tmp_path / "out.h5", SPEC, "new", 1)
    assert list(tmp_path.iterdir()) == []


def test_unfinished_writer_file_does_not_look_complete(tmp_path):
    w = EventWriter(tmp_path / "out.h5", SPEC, "p", 1)
    e = make_events([3])
    w.append(e.conditions, e.offsets, e.hits, e.truth)
    w.file.flush()  # as if the process were killed now
    assert not (tmp_path / "out.h5").exists()
    with pytest.raises(EventFileError, match="not a hitgen-events file"):
        EventSet.read(w.tmp)
    w.abort()


def test_existing_output_needs_overwrite(tmp_path):
    path = make_events([1]).write(tmp_path / "a.h5")
    with pytest.raises(HitgenError, match="already exists"):
        make_events([2]).write(path)


@pytest.fixture
def good_file(tmp_path):
    return make_events([2, 0, 5, 1], seed=4).write(tmp_path / "good.h5")


def damage(path, action):
    with h5py.File(path, "r+") as f:
        action(f)
    return path


@pytest.mark.parametrize(
    "action, message",
    [
        (lambda f: f.attrs.__setitem__("format", "something-else"), "not a hitgen-events file"),
        (lambda f: f.attrs.__delitem__("producer"), "missing attribute"),
        (lambda f: f.attrs.__setitem__("format_version", 99), "format_version 99 is not supported"),
        (lambda f: f.attrs.__setitem__("detector_spec", "{not json"), "not valid JSON"),
        (lambda f: f.attrs.__setitem__("detector", "other"), "does not describe detector"),
        (lambda f: f.__delitem__("hits/offsets"), "missing /hits/offsets"),
        (lambda f: f["hits/offsets"].__setitem__(0, 1), r"offsets\[0\] is 1"),
        (lambda f: f["hits/offsets"].__setitem__(1, 5), "decrease"),
        (lambda f: f["hits/adc"].resize((3,)), "hits/adc has shape"),
        (lambda f: f.__delitem__("hits/tdc"), "hit fields"),
        (lambda f: f["conditions/momentum"].resize((3, 3)), "conditions/momentum has shape"),
        (lambda f: (f.__delitem__("conditions/pdg"), f.create_dataset("conditions/pdg", data=np.zeros(4))), "conditions/pdg has dtype"),
        (lambda f: f["truth/visible_energy_layer"].resize((2, 9)), "truth/visible_energy_layer"),
    ],
)
def test_damaged_files_are_rejected_precisely(good_file, action, message):
    with pytest.raises(EventFileError, match=message):
        EventSet.read(damage(good_file, action))


def test_missing_foreign_and_truncated_files(tmp_path, good_file):
    with pytest.raises(EventFileError, match="no such file"):
        EventSet.read(tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(EventFileError, match="not an HDF5 file"):
        EventSet.read(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(EventFileError, match="not a hitgen-events file"):
        EventSet.read(foreign)
    data = good_file.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFileError, match="damaged or truncated"):
        EventSet.read(cut)
