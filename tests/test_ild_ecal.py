"""ild-ecal without Geant4: conditions, digitisation, the two views on hand-made showers, info,
evaluation (at its floor and against a distorted copy) and bad command lines."""

from __future__ import annotations

import numpy as np
import pytest

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors import get_detector
from hitgen.detectors.ild_ecal import geometry as ild
from hitgen.detectors.ild_ecal.evaluation import evaluate, summary_tables
from hitgen.detectors.ild_ecal.info import info_tables
from hitgen.detectors.ild_ecal.views import HALF_WINDOW, WINDOW, points, voxels
from test_bad_inputs import run_cli

C = ild.CENTRE_CELL


def events_of(showers: list[list[tuple[int, int, int, float]]], entry: list[tuple[float, float]] | None = None, energy=None) -> EventSet:
    """Hand-made ild-ecal events: per event a list of hits (layer, cell_x, cell_y, MeV)."""
    n = len(showers)
    cond = ild.sample_conditions(n, np.random.default_rng(0))
    if entry is not None:
        cond["entry_point"][:, :2] = np.array(entry, np.float32)
    if energy is not None:
        cond["energy"][:] = energy
    offsets, hits = hits_of(showers)
    return EventSet(ild.NAME, ild.INFO.spec(), cond, offsets, hits, "test", seed=1)


def hits_of(showers: list[list[tuple[int, int, int, float]]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """CSR offsets and typed hit arrays of hand-made showers (per event a list of (layer, cell_x, cell_y, MeV))."""
    flat = [h for s in showers for h in s]
    hits = {
        "layer": np.array([h[0] for h in flat], np.int8),
        "cell_x": np.array([h[1] for h in flat], np.int16),
        "cell_y": np.array([h[2] for h in flat], np.int16),
        "energy": np.array([h[3] for h in flat], np.float32),
    }
    return np.concatenate([[0], np.cumsum([len(s) for s in showers])]).astype(np.int64), hits


def test_layer_stack_and_cells():
    assert len(ild.ABSORBER_MM) == 30 and (ild.ABSORBER_MM[:20] == 2.1).all() and (ild.ABSORBER_MM[20:] == 4.2).all()
    assert ild.TOTAL_DEPTH_MM == pytest.approx(20 * (2.1 + 0.525 + 1.7) + 10 * (4.2 + 0.525 + 1.7))
    assert ild.SILICON_Z_MM[0] == pytest.approx(2.1 + 0.525 / 2)
    # the central cell is centred on the axis; cell_of and cell_centre_mm invert each other
    assert ild.cell_centre_mm(C) == 0.0
    idx = np.arange(ild.N_CELLS)
    assert (ild.cell_of(ild.cell_centre_mm(idx)) == idx).all()
    assert ild.cell_of(np.array([2.49, -2.49, 2.5, -2.51])).tolist() == [C, C, C + 1, C - 1]
    # W, Ta, Pb at equal thickness: Pb has the longest radiation length, so the fewest X0
    assert ild.depth_x0("W")[-1] > ild.depth_x0("Ta")[-1] > ild.depth_x0("Pb")[-1]


def test_sample_conditions():
    rng = np.random.default_rng(3)
    c = ild.sample_conditions(4000, rng, particle="e+", energy_range=(10.0, 100.0), energy_spectrum="log-uniform", max_angle=30.0)
    assert c["energy"].dtype == np.float32 and c["direction"].shape == (4000, 3) and c["pdg"].dtype == np.int32
    assert (c["pdg"] == -11).all() and 10 <= c["energy"].min() and c["energy"].max() <= 100
    # log-uniform: the median sits at the geometric mean
    assert np.median(c["energy"]) == pytest.approx(np.sqrt(1000), rel=0.05)
    assert np.allclose(np.linalg.norm(c["direction"], axis=1), 1, atol=1e-6)
    theta = np.degrees(np.arccos(c["direction"][:, 2]))
    assert theta.max() <= 30.0 + 1e-3 and theta.max() > 28
    assert (np.abs(c["entry_point"][:, :2]) <= 2.5).all() and (c["entry_point"][:, 2] == 0).all()
    assert ild.check_conditions(c) == []
    normal = ild.sample_conditions(10, rng)
    assert (normal["direction"] == [0, 0, 1]).all() and (normal["pdg"] == 22).all()
    assert 1 <= normal["energy"].min() and normal["energy"].max() <= 10
    # the primaries: momentum from kinetic energy and mass, starting at the entry point
    mu = ild.sample_conditions(5, rng, particle="mu-")
    pdg, p, v = ild.primaries(mu)
    t = mu["energy"].astype(float)
    assert np.allclose(np.linalg.norm(p, axis=1), np.sqrt(t * (t + 2 * 0.1056584))) and (v == mu["entry_point"]).all()


@pytest.mark.parametrize(
    "kwargs",
    [dict(particle="pi+"), dict(energy_range=(0.01, 1.0)), dict(energy_range=(10.0, 200.0)), dict(energy_spectrum="flat"), dict(max_angle=60.0)],
)
def test_bad_conditions_are_refused(kwargs):
    with pytest.raises(HitgenError):
        ild.sample_conditions(3, np.random.default_rng(0), **kwargs)


def test_options_parse():
    options = {o.name: o for o in get_detector("ild-ecal").options}
    assert options["max_angle"].parse("12.5") == 12.5
    assert options["absorber"].setting and options["field"].setting and not options["particle"].setting
    bad = (("max_angle", "50"), ("max_angle", "abc"), ("max_angle", "nan"), ("absorber", "U"), ("field", "maybe"), ("energy_range", "5:1"))
    for name, text in bad:
        with pytest.raises(HitgenError):
            options[name].parse(text)


def test_digitize_threshold_order_and_truth():
    # event 0: three cells (one below threshold), given out of order; event 1: none; event 2: one
    layer, cell_x, cell_y = np.array([3, 0, 3, 29]), np.array([5, 60, 5, 0]), np.array([7, 61, 6, 120])
    edep = np.array([0.5, 2.0, 0.05, 0.2])
    offsets, hits, truth = ild.digitize(np.array([0, 3, 3, 4]), layer, cell_x, cell_y, edep, edep >= ild.THRESHOLD_MEV)
    assert offsets.tolist() == [0, 2, 2, 3]
    assert hits["layer"].tolist() == [0, 3, 29] and hits["cell_x"].tolist() == [60, 5, 0] and hits["cell_y"].tolist() == [61, 7, 120]
    assert hits["energy"].dtype == np.float32 and hits["energy"].tolist() == pytest.approx([2.0, 0.5, 0.2])
    assert truth["visible_energy_layer"].shape == (3, 30)
    assert truth["visible_energy_layer"][0, 3] == pytest.approx(0.55)  # the truth keeps the cell below threshold


def test_points_view():
    ev = events_of([[(0, C, C, 1.0), (5, C + 2, C - 1, 3.0)], [], [(29, 0, 120, 0.5)]])
    p = points(ev)
    assert p.offsets.tolist() == [0, 2, 2, 3]
    assert p.event(0).tolist() == [[0.0, 0.0, 0.0, 1.0], [10.0, -5.0, 5.0, 3.0]]
    assert p.event(1).shape == (0, 4)
    assert p.event(2).tolist() == [[-300.0, 300.0, 29.0, 0.5]]


def test_voxel_view_centres_the_window_on_the_entry_cell_and_counts_what_falls_outside():
    showers = [
        [(0, C, C, 1.0), (3, C + 14, C - 15, 2.0), (3, C + 15, C, 4.0)],  # the last one is just outside
        [(10, C + 18, C, 1.5), (10, C - 12, C, 0.5)],  # entry 4 cells over: the window moves with it
    ]
    ev = events_of(showers, entry=[(0.0, 0.0), (20.0, 0.0)])
    v = voxels(ev)
    assert v.grid.shape == (2, 30, WINDOW, WINDOW) and v.grid.dtype == np.float32
    assert v.grid[0, 0, HALF_WINDOW, HALF_WINDOW] == 1.0
    assert v.grid[0, 3, HALF_WINDOW + 14, 0] == 2.0
    assert v.outside_hits.tolist() == [1, 1] and v.outside_energy.tolist() == pytest.approx([4.0, 0.5])
    assert v.origin_x.tolist() == [C - HALF_WINDOW, C + 4 - HALF_WINDOW]
    assert v.grid[1, 10, WINDOW - 1, HALF_WINDOW] == 1.5
    # nothing is lost: inside + outside = all hit energy
    assert v.grid.sum() + v.outside_energy.sum() == pytest.approx(ev.hits["energy"].sum())
    assert v.outside_fraction == pytest.approx(4.5 / 9.0)


def synthetic_showers(n: int, seed: int, scale: float = 1.0) -> EventSet:
    """Toy showers: hits in layers 0-29 around the centre, total energy ~ 25 MeV per GeV."""
    rng = np.random.default_rng(seed)
    cond = ild.sample_conditions(n, np.random.default_rng(seed + 100), energy_range=(1.0, 10.0))
    showers = []
    for e in cond["energy"]:
        k = rng.poisson(20 * e) + 1
        layer = np.clip(rng.normal(10, 5, k), 0, 29).astype(int)
        x = C + np.round(rng.normal(0, 2, k)).astype(int)
        y = C + np.round(rng.normal(0, 2, k)).astype(int)
        energy = rng.exponential(1.25 * scale, k) + 0.1
        showers.append(list(zip(layer, x, y, energy, strict=True)))
    ev = events_of(showers)
    ev.conditions["energy"][:] = cond["energy"]
    return ev


def test_evaluation_at_the_floor_and_against_a_distorted_copy(tmp_path):
    ref, same, hot = synthetic_showers(400, 1), synthetic_showers(400, 2), synthetic_showers(400, 2, scale=1.3)
    m_same, figures = evaluate(ref, same, tmp_path, plots=True)
    m_hot, _ = evaluate(ref, hot, tmp_path / "hot", plots=False)
    floor = m_same["noise_floor"]
    assert floor["kind"] == "halves" and len(figures) == 3 and all(p.is_file() for _, p in figures)
    # the same process: within a few times the floor; hotter cells: the response is 30% off
    assert m_same["cell_log10_energy_w1"] < 3 * floor["cell_log10_energy_w1"] + 0.01
    assert abs(m_same["response_ratio_mean"] - 1) < 0.05
    assert m_hot["response_ratio_mean"] == pytest.approx((1.25 * 1.3 + 0.1) / (1.25 + 0.1), rel=0.05)
    assert m_hot["cell_log10_energy_w1"] > 5 * floor["cell_log10_energy_w1"]
    assert m_hot["hits_per_event_w1"] < 3 * floor["hits_per_event_w1"] + 1  # hit counts were not distorted
    rows = summary_tables(m_hot)[0][2]
    groups = m_hot["classifier_auc_by_group"]
    assert len(rows) == 9 + len(groups) == 16 and rows[0][0] == "hits per event W1" and rows[-1][0] == "high-level AUC, sparsity per layer alone"
    assert groups["total energy, response"] > 0.5 + 5 * m_hot["classifier_auc_error"]  # 30% hotter: the total gives it away
    # with a replica the floor is reference vs replica (the first 200 showers of each: the kind of floor is checked here)
    first = np.arange(200)
    m_rep, _ = evaluate(ref.select(first), hot.select(first), tmp_path / "rep", plots=False, replica=same.select(first))
    assert m_rep["noise_floor"]["kind"] == "replica" and m_rep["noise_floor"]["n"] == 200


def test_info_tables_and_plots(tmp_path):
    ev = synthetic_showers(60, 5)
    tables = info_tables(ev)
    titles = [t[0] for t in tables]
    assert titles[0] == "per layer" and len(tables[0][2]) == 30
    assert titles[1].startswith("totals (absorber W, field on)")
    binned = tables[2]
    assert sum(int(r[1]) for r in binned[2]) == 60
    from hitgen.detectors.ild_ecal.info import info_plots

    names = [p.name for p in info_plots(ev, tmp_path)]
    assert names == ["occupancy.png", "hits_per_event.png", "longitudinal_profile.png", "cell_energy.png"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--absorber", "U"], "unknown absorber 'U'"),
        (["--energy-range", "20:10"], "malformed --energy-range"),
        (["--energy-range", "1:500"], "outside what the detector takes"),
        (["--max-angle", "80"], "outside what the detector takes"),
        (["--field", "2T"], "unknown field"),
        (["--particle", "proton"], "unknown particle"),
        (["--conditions", "CLAS12"], "conditions of detector clas12-ecal"),
    ],
)
def test_bad_simulate_input_gives_one_line_and_writes_nothing(args, fragment, tmp_path, capsys, monkeypatch, toy_file):
    monkeypatch.setenv("GEANT4_DATA_DIR", str(tmp_path))  # never reached: the input is refused first
    args = [str(toy_file("clas12-ecal")) if a == "CLAS12" else a for a in args]
    out = tmp_path / "out.h5"
    extra = [] if "--conditions" in args else ["-n", "5"]
    code, err = run_cli(["simulate", "ild-ecal", "-o", str(out), *extra, *args], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))
