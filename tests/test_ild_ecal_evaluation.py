"""ild-ecal evaluation on real Geant4 showers (300 photons of 1-3 GeV, a replica and a second replica
for the floor): Geant4 against Geant4 at its floor, distorted candidates caught, per-particle blocks,
refused settings; and the quantile-binned KL."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal import metrics as mt
from hitgen.detectors.ild_ecal.evaluation import evaluate, render_report, summary_tables
from hitgen.detectors.ild_ecal.observables import shower_observables
from hitgen.evaluation import evaluate as evaluate_files
from hitgen.evaluation.stats import quantile_kl
from hitgen.simulation.runner import simulate

N = 300


@pytest.fixture(scope="module")
def g4(tmp_path_factory):
    """Reference (seed 21), its replica (seed 22, the candidate) and a second replica (seed 23, the floor)."""
    d = tmp_path_factory.mktemp("ild_eval")
    ref = simulate("ild-ecal", N, d / "ref.h5", seed=21, workers=2, particle="gamma", energy_range=(1.0, 3.0)).path
    paths = {"ref": ref}
    for name, seed in (("rep", 22), ("rep2", 23)):
        paths[name] = simulate("ild-ecal", None, d / f"{name}.h5", seed=seed, workers=2, conditions_file=ref).path
    return paths, {k: EventSet.read(p) for k, p in paths.items()}


def changed(e: EventSet, conditions=None, offsets=None, hits=None, spec=None) -> EventSet:
    return EventSet(
        e.detector,
        spec or e.detector_spec,
        conditions or e.conditions,
        e.offsets if offsets is None else offsets,
        hits or e.hits,
        "distorted " + e.producer,
        seed=e.seed,
    )


def scaled(e: EventSet, factor: float) -> EventSet:
    return changed(e, hits={**e.hits, "energy": (e.hits["energy"] * factor).astype(np.float32)})


def one_layer_deeper(e: EventSet) -> EventSet:
    """Every hit one layer further back (what falls behind layer 29 is lost)."""
    keep = e.hits["layer"] < 29
    hits = {k: v[keep] for k, v in e.hits.items()}
    hits["layer"] = (hits["layer"] + 1).astype(np.int8)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(e.event_index()[keep], minlength=e.n_events))])
    return changed(e, offsets=offsets, hits=hits)


@pytest.fixture(scope="module")
def spread(g4) -> dict[str, tuple[float, float]]:
    """Per observable, mean and std of its W1 between random N + N splits of the reference and the
    second replica pooled (what Geant4 against Geant4 gives at this size, and how much it varies)."""
    _, ev = g4
    pooled = shower_observables(EventSet.concatenate([ev["ref"], ev["rep2"]]))
    rng = np.random.default_rng(5)
    values: dict[str, list[float]] = {key: [] for key, *_ in mt.OBSERVABLES}
    for _ in range(30):
        order = rng.permutation(2 * N)
        d = mt.distances(pooled.select(np.sort(order[:N])), pooled.select(np.sort(order[N:])))
        for key in values:
            values[key].append(d[f"{key}_w1"])
    return {key: (float(np.mean(v)), float(np.std(v))) for key, v in values.items()}


def sigmas(m: dict, key: str) -> float:
    return (m[key] - 0.5) / m["classifier_auc_error"]


def test_geant4_against_its_replica_is_at_the_floor(g4, spread, tmp_path):
    paths, _ = g4
    m = evaluate_files(paths["ref"], paths["rep"], tmp_path / "ev", replica=paths["rep2"]).metrics
    floor = m["noise_floor"]
    assert m["conditions_matched"] and m["classifier"]["split"] == "paired" and floor["kind"] == "replica"
    assert m["particles"] == ["gamma"] and (tmp_path / "ev" / "report.html").stat().st_size > 50_000
    for key, *_ in mt.OBSERVABLES:
        # at the floor: within 4 standard deviations of what Geant4 against Geant4 gives at this size
        mean, std = spread[key]
        assert m[f"{key}_w1"] < mean + 4 * std and floor[f"{key}_w1"] < mean + 4 * std, key
    for key in ("classifier_auc", "classifier_auc_low_level"):
        assert abs(sigmas(m, key)) < 3 and abs(sigmas(floor, key)) < 3, key
    assert abs(m["response_ratio_mean"] - 1) < 0.02 and abs(m["resolution_ratio_mean"] - 1) < 0.2


def test_distorted_candidates_are_caught(g4, spread, tmp_path):
    _, ev = g4

    def away(m: dict, key: str) -> float:
        mean, std = spread[key]
        return (m[f"{key}_w1"] - mean) / std

    hot, _ = evaluate(ev["ref"], scaled(ev["rep"], 1.05), tmp_path, False, ev["rep2"])
    assert hot["response_ratio_mean"] == pytest.approx(1.05, abs=0.015)
    assert away(hot, "response") > 4 and away(hot, "cell_log10_energy") > 4
    assert away(hot, "longitudinal_profile") < 4  # the shape was not touched

    deep, _ = evaluate(ev["ref"], one_layer_deeper(ev["rep"]), tmp_path, False, ev["rep2"])
    assert away(deep, "longitudinal_profile") > 5 and away(deep, "cog_depth") > 5 and away(deep, "start_layer") > 5
    assert sigmas(deep, "classifier_auc") > 5 and sigmas(deep, "classifier_auc_low_level") > 3
    assert away(deep, "radial_profile") < 4
    # which features tell it apart: the energy per layer does, the total alone cannot (the same hits)
    groups, err = deep["classifier_auc_by_group"], deep["classifier_auc_error"]
    assert groups["layer energy"] > 0.5 + 4 * err
    assert abs(groups["total energy, response"] - 0.5) < 3 * err
    assert set(groups) == set(deep["noise_floor"]["classifier_auc_by_group"])


def test_particles_are_compared_one_by_one(g4, tmp_path):
    _, ev = g4
    electron = np.arange(N) % 3 == 0

    def relabel(e: EventSet, mask) -> EventSet:
        return changed(e, conditions={**e.conditions, "pdg": np.where(mask, 11, 22).astype(np.int32)})

    m, figures = evaluate(relabel(ev["ref"], electron), relabel(ev["rep"], electron), tmp_path, True)
    assert m["particles"] == ["e-", "gamma"] and "classifier_auc" not in m
    assert [m["by_particle"][p]["n_reference"] for p in ("gamma", "e-")] == [N - electron.sum(), electron.sum()]
    assert m["by_particle"]["e-"]["noise_floor"]["kind"] == "halves"
    titles = [t[0] for t in summary_tables(m)]
    assert titles == ["summary (e-)", "observables (e-)", "summary (gamma)", "observables (gamma)"]
    assert len(figures) == 6
    m.update(reference={"path": "r", "producer": "p", "seed": 1, "timing": None}, candidate={"path": "c", "producer": "p", "seed": 2, "timing": None})
    m.update(detector="ild-ecal", n_reference=N, n_candidate=N, conditions_matched=True, conditions_note="", replica=None)
    m.update(hitgen_version="x", created="now", seconds=1.0)
    html = render_report(m, figures, tmp_path / "report.html").read_text()
    assert "Particle: e-" in html and "Particle: gamma" in html
    with pytest.raises(HitgenError, match="the candidate gamma"):
        evaluate(relabel(ev["ref"], electron), ev["rep"], tmp_path, False)


def test_other_absorber_or_field_is_refused(g4, tmp_path):
    _, ev = g4
    for setting in ({"absorber": "Pb"}, {"field": "off"}):
        other = changed(ev["rep"], spec={**ev["rep"].detector_spec, **setting})
        with pytest.raises(HitgenError, match="one absorber and field only"):
            evaluate(ev["ref"], other, tmp_path, False)
        with pytest.raises(HitgenError, match="the replica absorber"):
            evaluate(ev["ref"], ev["rep"], tmp_path, False, other)


def test_quantile_kl():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 20000), rng.normal(0, 1, 20000)
    assert quantile_kl(a, a) == pytest.approx(0.0, abs=1e-12)
    assert quantile_kl(a, b) < 0.003
    # a shift of 0.3 standard deviations: KL of two Gaussians is 0.045, the binned one a little less
    assert 0.03 < quantile_kl(a, b + 0.3) < 0.05
    # integers with ties at the edges, and energy weights (a weighted sample against its resampling)
    k = rng.poisson(3, 5000)
    assert quantile_kl(k, rng.poisson(3, 5000)) < 0.005 and quantile_kl(k, rng.poisson(4, 5000)) > 0.05
    w = rng.exponential(1, 20000)
    assert quantile_kl(a, rng.choice(a, 20000, p=w / w.sum()), w) < 0.005
    assert np.isnan(quantile_kl(a, np.zeros(0)))


def test_rms90_is_the_resolution_of_the_core():
    from hitgen.detectors.ild_ecal.observables import rms90

    rng = np.random.default_rng(1)
    x = rng.normal(25.0, 2.5, 200_000)  # 10% resolution
    assert rms90(x) == pytest.approx(0.0789 * 1.0, rel=0.02)  # a normal's narrowest 90%: 0.789 of its std
    # 3% of the showers far below: the std / mean grows by 40%, the core's barely moves
    tail = np.concatenate([x, rng.uniform(5.0, 15.0, 6000)])
    assert tail.std() / tail.mean() > 1.4 * x.std() / x.mean() and rms90(tail) / rms90(x) < 1.1
    assert rms90(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0])) == pytest.approx(np.std(np.arange(1, 10)) / 5.0)
