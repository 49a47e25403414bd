"""`hitgen evaluate` for odd-tracker: the metrics.json contract, a second Geant4 sample inside the
noise floor, and damaged candidates caught by the hit-level and the tracking metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.detectors.odd_tracker.evaluation import rounded
from hitgen.evaluation import evaluate
from hitgen.simulation.runner import simulate

pytestmark = pytest.mark.geant4
KINEMATICS = dict(particle="mu+-", pt_range=(70.0, 90.0), eta_range=(0.05, 0.25), phi_range=None)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("oddeval")
    ref = simulate("odd-tracker", 400, d / "ref.h5", seed=31, workers=2, **KINEMATICS).path
    other = simulate("odd-tracker", 400, d / "other.h5", seed=32, workers=2, **KINEMATICS).path
    return d, ref, other


def test_contract_and_a_second_geant4_sample(samples):
    d, ref, other = samples
    result = evaluate(ref, other, d / "eval_other", plots=True)
    m = json.loads((d / "eval_other" / "metrics.json").read_text())
    assert m == result.metrics and (d / "eval_other" / "report.html").stat().st_size > 10_000
    for key in ("seeding_efficiency", "fitting_efficiency", "qop_pull_width", "phi_pull_width"):
        assert set(m["tracking"][key]) == {"reference", "reference_rounded", "candidate"}
    assert m["tracking"]["fitting_efficiency"]["candidate"] >= 0.98
    assert abs(m["tracking"]["qop_pull_width"]["candidate"] - m["tracking"]["qop_pull_width"]["reference"]) < 0.15
    # two Geant4 samples of the same size: every hit-level distance below about sqrt 2 x the floor of halves
    for key in ("hits_per_track_w1", "local_u_w1", "local_v_w1", "z_w1"):
        assert m[key] < 1.6 * m["noise_floor"][key], key


def test_damaged_candidates_are_caught(samples):
    d, ref, _ = samples
    events = EventSet.read(ref)
    # (a) every track loses its last hit: hits per track off by one
    keep = np.ones(events.n_hits, bool)
    keep[events.offsets[1:] - 1] = False
    short = EventSet(
        events.detector,
        events.detector_spec,
        events.conditions,
        np.concatenate([[0], np.cumsum(events.hits_per_event() - 1)]).astype(np.int64),
        {k: v[keep] for k, v in events.hits.items()},
        "damaged: last hit dropped",
    )
    m = evaluate(ref, short.write(d / "short.h5", overwrite=True), d / "eval_short", plots=False).metrics
    assert m["hits_per_track_w1"] > 0.9 and m["hits_per_track_w1"] > 10 * m["noise_floor"]["hits_per_track_w1"]
    # (b) the hits of one strip layer shifted by 0.3 mm along u: a realistic-looking hit cloud, broken tracks
    hits = dict(events.hits)
    layer = (hits["geometry_id"] >> np.uint64(36)) & np.uint64(0xFFF)
    volume = hits["geometry_id"] >> np.uint64(56)
    shifted = (volume == 24) & (layer == 4)
    hits["local_u"] = np.where(shifted, hits["local_u"] + np.float32(0.3), hits["local_u"]).astype(np.float32)
    bad = EventSet(events.detector, events.detector_spec, events.conditions, events.offsets, hits, "damaged: one layer shifted")
    m = evaluate(ref, bad.write(d / "shifted.h5", overwrite=True), d / "eval_shifted", plots=False).metrics
    assert m["tracking"]["fitting_efficiency"]["candidate"] < 0.5 <= m["tracking"]["fitting_efficiency"]["reference"]
    assert m["conditions_matched"]
    assert m["validity"]["hits_off_their_module"]["reference"] == 0.0  # Geant4's hits lie on their modules
    # (c) the first track's hits in reverse order (it steps inwards) and one hit 1 mm beyond its module's edge;
    # counted per event and per hit, on the first 100 events (validity needs no statistics)
    events = events.select(np.arange(100))
    ref = events.write(d / "ref100.h5", overwrite=True)
    hits = dict(events.hits)
    first = slice(0, int(events.offsets[1]))
    hits = {k: v.copy() for k, v in hits.items()}
    for k in hits:
        hits[k][first] = hits[k][first][::-1]
    from hitgen.detectors.odd_tracker import geometry as odd

    modules = odd.build_modules()
    j = int(events.offsets[5])
    hits["local_u"][j] = modules.half_u[odd.module_index(modules, hits["geometry_id"][j : j + 1])[0]] + 1.0
    bad = EventSet(events.detector, events.detector_spec, events.conditions, events.offsets, hits, "damaged: reversed, off module")
    m = evaluate(ref, bad.write(d / "reversed.h5", overwrite=True), d / "eval_reversed", plots=False).metrics
    v = m["validity"]
    from hitgen.detectors.odd_tracker.evaluation import summary_tables

    assert summary_tables(m)[-1][2][0] == ["hits off their module", "0.00%", f"{1 / events.n_hits:.2%}"]
    assert v["tracks_stepping_inwards"] == {"reference": 0.0, "candidate": 1 / events.n_events}
    assert v["hits_off_their_module"] == {"reference": 0.0, "candidate": 1 / events.n_hits}


def test_validity_counts_tracks_with_empty_ones_anywhere(samples):
    """An empty track (the model ended it at once) first and last: no error, never counted as stepping inwards."""
    from hitgen.detectors.odd_tracker import geometry as odd
    from hitgen.detectors.odd_tracker.evaluation import TrackerObservables

    events = EventSet.read(samples[1]).select(np.arange(4))
    counts = np.concatenate([[0], events.hits_per_event(), [0]])
    hits = {k: v.copy() for k, v in events.hits.items()}
    last = slice(int(events.offsets[3]), int(events.offsets[4]))  # the fourth track runs backwards
    for k in hits:
        hits[k][last] = hits[k][last][::-1]
    conditions = {k: np.concatenate([v[:1], v, v[:1]]) for k, v in events.conditions.items()}
    padded = EventSet(events.detector, events.detector_spec, conditions, np.concatenate([[0], np.cumsum(counts)]), hits, "empty ends")
    obs = TrackerObservables.of(padded, odd.build_modules())
    assert obs.inward.tolist() == [False, False, False, False, True, False] and not obs.off_module.any()


def test_rounding_is_two_decimals(samples):
    _, ref, _ = samples
    r = rounded(EventSet.read(ref))
    for name in ("local_u", "local_v", "px", "py", "pz"):
        v = r.hits[name].astype(np.float64)
        assert np.allclose(v * 100, np.round(v * 100), atol=1e-3)
    assert np.array_equal(r.hits["geometry_id"], EventSet.read(ref).hits["geometry_id"])
