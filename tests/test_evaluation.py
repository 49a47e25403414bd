"""hitgen evaluate: statistics by hand, Geant4 vs Geant4 at the noise floor, distorted copies."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hitgen.core.events import EventSet
from hitgen.evaluation import evaluate
from hitgen.evaluation.stats import UnitHistogram, ratio, w1
from hitgen.simulation.runner import simulate

N_EVENTS = 1200


def test_w1_by_hand():
    assert w1(np.array([0, 1, 3]), np.array([5, 6, 8])) == pytest.approx(5.0)  # a pure shift
    assert w1(np.array([0.0]), np.array([1.0, 3.0])) == pytest.approx(2.0)  # move 1/2 by 1 and 1/2 by 3
    assert w1(np.array([0, 0, 1]), np.array([1, 1, 1])) == pytest.approx(2 / 3)
    assert math.isnan(w1(np.array([]), np.array([1.0])))


def test_ratio_panel_by_hand():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    ref = UnitHistogram.of(np.array([0.5, 0.5, 1.5, 2.5]), edges)  # counts 2, 1, 1 of 4
    cand = UnitHistogram.of(np.array([0.5, 1.5, 1.5, 1.5]), edges)  # counts 1, 3, 0 of 4
    np.testing.assert_allclose(ref.density, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(ref.error, [math.sqrt(2) / 4, 0.25, 0.25])
    r, err = ratio(cand, ref)
    np.testing.assert_allclose(r, [0.5, 3.0, 0.0])
    # bin 0: 0.5 * sqrt((1/1) + (1/2)) (relative errors 1/sqrt(count)); bin 1: 3 * sqrt(1/3 + 1)
    np.testing.assert_allclose(err[:2], [0.5 * math.sqrt(1.5), 3 * math.sqrt(1 / 3 + 1)])
    assert err[2] == pytest.approx(0.25 / 0.25)  # empty candidate bin: one count (0.25) over the reference
    r, err = ratio(ref, UnitHistogram.of(np.array([0.5]), edges))
    assert np.isnan(r[1:]).all() and np.isnan(err[1:]).all()  # nothing to compare with where the reference is empty


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "clas12-ecal"
SHARED_PAIR = (SHARED / "eval20k_seed2001.h5", SHARED / "select5k_seed3001.h5")


@pytest.fixture(scope="module")
def g4_pair(tmp_path_factory):
    """Two independent Geant4 samples of N_EVENTS photons: the first events of two of ../shared/data's
    samples (made by hitgen simulate, two workers) where they are beside the checkout, else simulated here."""
    d = tmp_path_factory.mktemp("eval")
    if all(p.exists() for p in SHARED_PAIR):
        a, b = (EventSet.read(p).select(np.arange(N_EVENTS)).write(d / f"{x}.h5") for p, x in zip(SHARED_PAIR, "ab", strict=True))
        return d, a, b
    a = simulate("clas12-ecal", N_EVENTS, d / "a.h5", seed=21, workers=2).path
    b = simulate("clas12-ecal", N_EVENTS, d / "b.h5", seed=22, workers=2).path
    return d, a, b


@pytest.mark.geant4
def test_geant4_vs_geant4_sits_at_the_noise_floor(g4_pair):
    d, a, b = g4_pair
    m = evaluate(a, b, d / "ab").metrics
    floor = m["noise_floor"]
    assert not m["conditions_matched"] and "conditions differ" in m["conditions_note"]
    for key in ("shower_position_w1_strips", "hits_per_event_w1", "per_hit_log10_adc_w1"):
        value, noise = m["table2"][key], floor["table2"][key]
        # statistics only: full samples (N vs N) fluctuate about 1/sqrt(2) as much as halves
        assert value < 1.5 * noise, (key, value, noise)
    assert abs(m["table2"]["energy_scale_ratio"] - 1) < 0.01
    assert m["table2"]["energy_scale_max_dev"] < max(2 * floor["table2"]["energy_scale_max_dev"], 0.03)
    assert m["occupancy_max_abs_diff"] < 0.02
    assert abs(m["classifier_auc"] - 0.5) < 0.05
    assert abs(floor["classifier_auc"] - 0.5) < 0.06
    assert abs(m["classifier_auc_low_level"] - 0.5) < 0.05 and abs(floor["classifier_auc_low_level"] - 0.5) < 0.06
    for group in ("hits", "energy", "position", "spread"):
        assert abs(m["classifier_auc_by_group"][group] - 0.5) < 0.05, group
        assert abs(floor["classifier_auc_by_group"][group] - 0.5) < 0.06, group
    # the files on disk: strict JSON with the contract's keys, a report that embeds its plots
    on_disk = json.loads((d / "ab" / "metrics.json").read_text())
    assert on_disk["n_reference"] == on_disk["n_candidate"] == N_EVENTS and on_disk["detector"] == "clas12-ecal"
    assert set(on_disk["table2"]) >= {"shower_position_w1_strips", "hits_per_event_w1", "per_hit_log10_adc_w1", "energy_scale_ratio"}
    html = (d / "ab" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list((d / "ab" / "plots").glob("*.png"))) == 9
    assert "0.017" in html and "noise floor" in html


@pytest.mark.geant4
def test_cli_evaluate_with_max_events(g4_pair):
    d, a, b = g4_pair
    r = cli("evaluate", str(a), str(b), "--out", str(d / "cli"), "--max-events", "300")
    assert r.returncode == 0, r.stderr
    assert "warning: The conditions differ" in r.stderr and "classifier ROC AUC" in r.stdout and "noise floor" in r.stdout
    m = json.loads((d / "cli" / "metrics.json").read_text())
    assert m["n_reference"] == m["n_candidate"] == 300 and m["noise_floor"]["n_per_half"] == 150
    assert (d / "cli" / "report.html").stat().st_size > 100_000
    # both files were made by hitgen simulate: their timing notes reach the table, the report and metrics.json
    timing = m["reference"]["timing"]
    assert timing == EventSet.read(a).notes["timing"]
    assert timing["events"] >= N_EVENTS and timing["workers"] == 2 and timing["events_per_s"] > 0 and timing["machine"]["cores"] >= 1
    assert "reference made in" in r.stdout and "candidate made in" in r.stdout
    assert f"{timing['events_per_s']:.1f} events/s (2 workers" in (d / "cli" / "report.html").read_text()


def distorted(events: EventSet, what: str) -> EventSet:
    hits = dict(events.hits)
    offsets = events.offsets
    if what == "adc":
        hits["adc"] = np.rint(hits["adc"] * 1.1).astype(np.int32)
    elif what == "strip":
        limit = np.array(events.detector_spec["strips_per_layer"])[hits["layer"].astype(int)] - 1
        hits["strip"] = np.minimum(hits["strip"] + 1, limit).astype(np.int16)
    elif what == "smear":  # every event's ADC scaled by its own factor 1 + 0.1 N(0, 1): a wider resolution
        factor = 1 + 0.1 * np.random.default_rng(9).normal(size=events.n_events)
        hits["adc"] = np.clip(np.rint(hits["adc"] * factor[events.event_index()]), 1, 94920).astype(np.int32)
    elif what == "drop":
        keep = hits["layer"] != 4
        hits = {k: v[keep] for k, v in hits.items()}
        counts = np.bincount(events.event_index()[keep], minlength=events.n_events)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return dataclasses.replace(events, hits=hits, offsets=offsets, producer=f"distorted ({what})")


@pytest.mark.geant4
@pytest.mark.parametrize("what", ["adc", "drop", "strip", "smear"])
def test_distortions_move_their_metric(g4_pair, what):
    """The candidate's metrics as evaluate computes them (metrics.compare and low_level_auc), without
    the noise floor and the files, which the tests above check."""
    from hitgen.detectors.clas12_ecal import metrics as mt
    from hitgen.detectors.clas12_ecal.observables import calo_observables

    _, a, _ = g4_pair
    ref = EventSet.read(a)
    cand = distorted(ref, what)
    obs_ref, obs_cand = calo_observables(ref), calo_observables(cand)
    assert mt.paired(obs_ref, obs_cand)
    m = t = mt.compare(obs_ref, obs_cand)
    m["classifier_auc_low_level"] = mt.low_level_auc(ref, cand, obs_ref, obs_cand)
    if what == "smear":
        assert abs(t["energy_scale_ratio"] - 1) < 0.01 and t["shower_position_w1_strips"] == 0
        assert t["energy_resolution_ratio"] > 1.5 and t["energy_resolution_max_dev"] > 0.5
    elif what == "adc":
        assert t["energy_resolution_ratio"] == pytest.approx(1.0, abs=0.01)  # a common scale leaves std / mean alone
        assert t["per_hit_log10_adc_w1"] == pytest.approx(math.log10(1.1), abs=0.002)
        assert t["energy_scale_ratio"] == pytest.approx(1.1, abs=0.002)
        assert t["shower_position_w1_strips"] == 0 and t["hits_per_event_w1"] == 0
    elif what == "drop":
        layer4 = (ref.hits["layer"] == 4).sum() / ref.n_events
        assert t["hits_per_event_w1"] == pytest.approx(layer4, rel=1e-9)  # every event loses its ECIN V hits
        occupancy4 = np.mean([np.any(ref.event(i)["layer"] == 4) for i in range(ref.n_events)])
        assert m["occupancy_max_abs_diff"] == pytest.approx(occupancy4)
        assert t["energy_scale_ratio"] < 0.9
    else:
        assert 0.95 < t["shower_position_w1_strips"] <= 1.0
        assert t["hits_per_event_w1"] == 0 and t["per_hit_log10_adc_w1"] == 0
    assert m["classifier_auc"] > 0.65
    if what in ("drop", "strip"):  # a layer gone or strips moved: the event itself shows it
        assert m["classifier_auc_low_level"] > 0.6
    # a 10% scale or smear of every ADC moves each of the 816 strip features by a fraction of its spread:
    # measured 0.56 and 0.51 at 1200 events; the gradient-boosted trees do not add them up as a network would
    # the breakdown by feature group names what was distorted: a group whose features the distortion
    # leaves exactly as they were cannot tell the samples apart (every candidate event is a copy of a
    # reference event, and the paired split keeps each copy in its original's half: 0.5 exactly)
    by_group = m["classifier_auc_by_group"]
    moved = {"adc": "energy", "drop": "hits", "strip": "position", "smear": "energy"}[what]
    assert by_group[moved] > 0.65, by_group
    untouched = {"adc": ("hits", "position", "spread"), "drop": (), "strip": ("hits", "energy"), "smear": ("hits", "position", "spread")}[what]
    for group in untouched:
        assert by_group[group] == pytest.approx(0.5, abs=1e-9), (group, by_group)


def test_feature_groups_cover_every_event_feature_once():
    from conftest import toy_events
    from hitgen.detectors.clas12_ecal.observables import calo_observables

    obs = calo_observables(toy_events("toy-detector"))
    groups = obs.event_feature_groups()
    assert list(groups) == ["conditions", "hits", "energy", "position", "spread"]
    assert sorted(c for cols in groups.values() for c in cols) == list(range(obs.event_features().shape[1]))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, timeout=120)


def test_bad_inputs_give_one_line(tmp_path, toy_file):
    toy, other = toy_file("toy-detector"), toy_file("other-detector")
    text = tmp_path / "text.h5"
    text.write_text("no")
    cases = [
        ((str(toy), str(other)), "different detectors"),
        ((str(toy), str(toy)), "unknown detector 'toy-detector'"),
        ((str(toy), str(text)), "not an HDF5 file"),
        ((str(tmp_path / "missing.h5"), str(toy)), "no such file"),
    ]
    for files, fragment in cases:
        r = cli("evaluate", *files, "--out", str(tmp_path / "out"))
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and fragment in lines[0], r.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_paired_classifier_sits_at_one_half_for_a_copy_and_a_shuffle_among_equal_conditions():
    """With the conditions among the features, a candidate made for the reference's own conditions
    must be split in pairs: an exact copy and a copy whose events are swapped between events of
    equal conditions are indistinguishable, so their AUC is 0.5 within its statistical error."""
    from hitgen.evaluation.classifier import auc_standard_error, classifier_auc

    rng = np.random.default_rng(4)
    n = 4000
    c = np.repeat(rng.uniform(0.5, 10, n // 2), 2)  # every condition twice
    x = np.column_stack([c, c * (1 + 0.1 * rng.normal(size=n)), rng.normal(size=n)])
    swapped = x.reshape(n // 2, 2, 3)[:, ::-1].reshape(n, 3)  # twins exchanged: the same conditions, other showers
    se = auc_standard_error(n // 2)
    assert classifier_auc(x, x.copy(), c) == pytest.approx(0.5, abs=1e-9)
    assert abs(classifier_auc(x, swapped, c) - 0.5) < 3 * se
    # and a real difference is seen through the same split: showers 5% larger
    larger = x.copy()
    larger[:, 1] *= 1.05
    assert classifier_auc(x, larger, c) > 0.5 + 6 * se


@pytest.mark.geant4
def test_replica_at_the_reference_conditions_is_the_noise_floor(tmp_path, g4_pair):
    """simulate --conditions REF --seed OTHER makes Geant4 again at the reference's own conditions;
    evaluate --replica uses it as the noise floor (same conditions, same size) and says so."""
    d, a, b = g4_pair
    ref = EventSet.read(a).select(np.arange(300)).write(tmp_path / "ref.h5")
    r = cli("simulate", "clas12-ecal", "--conditions", str(ref), "--seed", "77", "--out", str(tmp_path / "rep.h5"))
    assert r.returncode == 0, r.stderr
    rep, reference = EventSet.read(tmp_path / "rep.h5"), EventSet.read(ref)
    for k, v in reference.conditions.items():
        np.testing.assert_array_equal(rep.conditions[k], v)
    assert rep.seed == 77 and not np.array_equal(rep.offsets, reference.offsets)  # the same photons, other showers
    cand = distorted(reference, "adc").write(tmp_path / "cand.h5")
    m = evaluate(ref, cand, tmp_path / "ev", plots=False, replica=tmp_path / "rep.h5").metrics
    floor = m["noise_floor"]
    assert floor["kind"] == "replica" and floor["n"] == 300 and m["replica"]["seed"] == 77
    assert abs(floor["classifier_auc"] - 0.5) < 0.1 and floor["table2"]["hits_per_event_w1"] > 0
    assert m["table2"]["energy_scale_ratio"] == pytest.approx(1.1, abs=0.003)
    # a replica of other conditions, or of the reference's own seed, is refused in one line
    for bad, fragment in ((b, "not the reference's"), (ref, "another seed")):
        out = cli("evaluate", str(ref), str(cand), "--out", str(tmp_path / "ev2"), "--replica", str(bad))
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0 and len(lines) == 1 and fragment in lines[0], out.stderr
        assert not (tmp_path / "ev2").exists()
    clash = cli("simulate", "clas12-ecal", "--conditions", str(ref), "--momentum-range", "1:2", "--out", str(tmp_path / "x.h5"))
    assert clash.returncode != 0 and "does not apply" in clash.stderr and not (tmp_path / "x.h5").exists()
