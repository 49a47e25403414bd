"""`hitgen validate calice-2006`: hitgen's Geant4 against the CALICE Si-W ECAL physics prototype's
electron test beam (CERN 2006; NIM A 608 (2009) 372, arXiv:0811.2354).

What runs (docs/detectors/calice-2006.md says why each choice):
- ild-ecal's calice-prototype layout, no field, the physics settings under test (default: ild-ecal's).
- Muons (10 GeV, normal incidence) calibrate the MIP: the most probable cell energy from a fit of a
  Moyal (Landau-like) shape to the peak of their hits, as the experiment calibrated its pads with muons.
- Electrons at each beam energy, normal incidence, entering uniformly within +-BEAM_HALF_MM of the
  prototype's centre in x and y (a 2 x 2 cm spot on the central wafer).
- The paper's reconstruction: cells above 0.6 MIP, E_w = sum over layers of w_l x (layer energy in
  MIPs) with w_l = 1, 2, 3 by absorber thickness (1.4, 2.8, 4.2 mm); per energy the mean and width of
  a Gaussian fitted to the central part of E_w (the mean +- 2 sigma, iterated); a straight line
  E_w = alpha E + beta through the means gives the calibration, the reconstructed energy is
  (E_w - beta) / alpha, the linearity its relative deviation from the beam energy, and the
  resolution sigma / alpha / E; sigma/E = a/sqrt(E) (+) b fitted with the statistical errors.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import LAYOUTS, N_LAYERS, PARTICLES

NAME = "calice-2006"
LAYOUT = LAYOUTS["calice-prototype"]
ENERGIES_GEV = (6.0, 10.0, 15.0, 20.0, 30.0, 45.0)  # the paper's beam energies
EVENTS_PER_ENERGY = 1500  # the default: 6 x 1500 electrons, about 9 minutes on 2 cores
MUON_EVENTS = 500
MUON_ENERGY_GEV = 10.0
BEAM_HALF_MM = 10.0
THRESHOLD_MIP = 0.6  # the paper's cell threshold
FIT_WINDOW_SIGMA = 2.0
# the paper's results: sigma/E = (16.6 +- 0.1)%/sqrt(E) (+) (1.1 +- 0.1)%, linear within about 1%
PAPER = {"stochastic_percent": (16.6, 0.1), "constant_percent": (1.1, 0.1), "linearity": 0.01}
# what hitgen's Geant4 must reproduce (the test-beam issue): stochastic within 10% of the paper's,
# constant within 1 percentage point, linear within 1.5% over the beam energies
TARGETS = {"stochastic_rel": 0.10, "constant_abs_percent": 1.0, "linearity_max_dev": 0.015}


def layer_weights() -> np.ndarray:
    """w_l = absorber thickness / the thinnest: the paper's 1, 2, 3 (rounded: 4.2 / 1.4 is not 3 in floating point)."""
    absorber = np.asarray(LAYOUT.absorber_mm)
    return np.round(absorber / absorber.min(), 6)


def beam_conditions(n: int, energy_gev: float, particle: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n particles of one energy at normal incidence, entering uniformly within the beam spot."""
    entry = np.zeros((n, 3), np.float32)
    entry[:, :2] = rng.uniform(-BEAM_HALF_MM, BEAM_HALF_MM, (n, 2))
    direction = np.zeros((n, 3), np.float32)
    direction[:, 2] = 1.0
    return {
        "energy": np.full(n, energy_gev, np.float32),
        "direction": direction,
        "entry_point": entry,
        "pdg": np.full(n, PARTICLES[particle][0], np.int32),
    }


def _conditions_file(conditions: dict[str, np.ndarray], path: Path) -> Path:
    """An ild-ecal file (calice-prototype layout, no hits) holding only these conditions, to simulate."""
    from hitgen.detectors.ild_ecal import DETECTOR

    spec = DETECTOR.configure_spec({**DETECTOR.info.spec(), "layout": LAYOUT.name}, {"layout": LAYOUT.name})
    n = len(conditions["energy"])
    hits = {name: np.zeros(0, np.dtype(f["dtype"])) for name, f in spec["hit_fields"].items()}
    EventSet(DETECTOR.name, spec, conditions, np.zeros(n + 1, np.int64), hits, producer="hitgen validate (beam conditions)").write(
        path, overwrite=True
    )
    return path


# --- reconstruction ---------------------------------------------------------------------------------
def mip_mev(cell_energy_mev: np.ndarray) -> tuple[float, float]:
    """(MPV, its error) in MeV of the muons' cell energies: a Moyal shape fitted to the peak region."""
    e = np.asarray(cell_energy_mev, dtype=np.float64)
    if len(e) < 100:
        raise HitgenError(f"MIP calibration: only {len(e)} muon hits")
    median = float(np.median(e))
    lo, hi = 0.5 * median, 1.6 * median
    counts, edges = np.histogram(e, bins=40, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2

    def shape(x, amplitude, loc, scale):
        return amplitude * stats.moyal.pdf(x, loc, scale)

    p0 = (counts.sum() * (edges[1] - edges[0]), centres[np.argmax(counts)], 0.1 * median)
    popt, cov = optimize.curve_fit(shape, centres, counts, p0=p0, sigma=np.sqrt(np.maximum(counts, 1.0)), absolute_sigma=True)
    return float(popt[1]), float(math.sqrt(cov[1, 1]))


def weighted_energy(events: EventSet, mip: float) -> np.ndarray:
    """(N,) E_w in MIPs: the cells above THRESHOLD_MIP, each layer weighted by its absorber."""
    e = events.hits["energy"].astype(np.float64) / mip
    keep = e >= THRESHOLD_MIP
    event = events.event_index()[keep]
    layer = events.hits["layer"].astype(np.int64)[keep]
    per_layer = np.zeros((events.n_events, N_LAYERS))
    np.add.at(per_layer, (event, layer), e[keep])
    return per_layer @ layer_weights()


def gaussian_core(values: np.ndarray, window: float = FIT_WINDOW_SIGMA) -> dict[str, float]:
    """Mean and sigma (with errors) of a Gaussian fitted to values within mean +- window sigma, iterated
    from the median and the normalised median absolute deviation until the window stops moving."""
    mean = float(np.median(values))
    sigma = float(stats.median_abs_deviation(values, scale="normal"))
    if not sigma > 0:
        raise HitgenError("the energy distribution has no width")
    err = (float("nan"), float("nan"))
    for _ in range(10):
        lo, hi = mean - window * sigma, mean + window * sigma
        inside = values[(values >= lo) & (values <= hi)]
        counts, edges = np.histogram(inside, bins=max(10, min(40, len(inside) // 25)), range=(lo, hi))
        centres = (edges[:-1] + edges[1:]) / 2

        def gauss(x, amplitude, mu, s):
            return amplitude * np.exp(-0.5 * ((x - mu) / s) ** 2)

        popt, cov = optimize.curve_fit(
            gauss, centres, counts, p0=(counts.max(), mean, sigma), sigma=np.sqrt(np.maximum(counts, 1.0)), absolute_sigma=True
        )
        moved = abs(popt[1] - mean) < 1e-3 * sigma and abs(abs(popt[2]) - sigma) < 1e-3 * sigma
        mean, sigma = float(popt[1]), abs(float(popt[2]))
        err = (float(math.sqrt(cov[1, 1])), float(math.sqrt(cov[2, 2])))
        if moved:
            break
    return {"mean": mean, "mean_err": err[0], "sigma": sigma, "sigma_err": err[1], "events": int(len(values)), "in_fit": int(len(inside))}


def resolution_curve(energy: np.ndarray, a: float, b: float) -> np.ndarray:
    """sigma/E in percent: a/sqrt(E) (+) b (a, b in percent)."""
    return np.sqrt(a**2 / energy + b**2)


def fit_resolution(energy: np.ndarray, res: np.ndarray, res_err: np.ndarray) -> tuple[float, float, float, float, float]:
    """(a, its error, b, its error, chi2) of sigma/E = a/sqrt(E) (+) b (percent), fitted as the straight
    line (sigma/E)^2 = a^2 / E + b^2 (weighted least squares, linear in a^2 and b^2: no starting values,
    no local minima). A negative b^2 gives b = 0 with the error sqrt(its error), an upper scale."""
    y, y_err = res**2, 2.0 * res * res_err
    design = np.column_stack([1.0 / energy, np.ones_like(energy)]) / y_err[:, None]
    coef, *_ = np.linalg.lstsq(design, y / y_err, rcond=None)
    cov = np.linalg.inv(design.T @ design)
    a2, b2 = coef
    a = math.sqrt(max(a2, 0.0))
    b = math.sqrt(max(b2, 0.0))
    a_err = math.sqrt(cov[0, 0]) / (2 * a) if a > 0 else math.sqrt(math.sqrt(cov[0, 0]))
    b_err = math.sqrt(cov[1, 1]) / (2 * b) if b > 0 else math.sqrt(math.sqrt(cov[1, 1]))
    chi2 = float((((res - resolution_curve(energy, a, b)) / res_err) ** 2).sum())
    return a, a_err, b, b_err, chi2


def analyse(per_energy: dict[float, np.ndarray]) -> dict[str, Any]:
    """Response, linearity and resolution from E_w (MIPs) per beam energy (see the module docstring)."""
    energies = np.array(sorted(per_energy))
    cores = [gaussian_core(per_energy[e]) for e in energies]
    mean = np.array([c["mean"] for c in cores])
    mean_err = np.array([c["mean_err"] for c in cores])
    (alpha, beta), cov = np.polyfit(energies, mean, 1, w=1.0 / mean_err, cov="unscaled")
    reco = (mean - beta) / alpha
    sigma_e = np.array([c["sigma"] for c in cores]) / alpha
    res = 100.0 * sigma_e / energies
    res_err = 100.0 * np.array([c["sigma_err"] for c in cores]) / alpha / energies
    a, a_err, b, b_err, chi2 = fit_resolution(energies, res, res_err)
    rows = []
    for e, c, r, s, s_err in zip(energies, cores, reco, res, res_err, strict=True):
        rows.append(
            {
                "energy_gev": float(e),
                "events": c["events"],
                "mean_mip": c["mean"],
                "mean_mip_err": c["mean_err"],
                "response_mip_per_gev": c["mean"] / e,
                "linearity_dev": float(r / e - 1.0),
                "linearity_dev_err": float(c["mean_err"] / alpha / e),
                "sigma_over_e_percent": float(s),
                "sigma_over_e_percent_err": float(s_err),
                "paper_fit_percent": float(resolution_curve(np.array(e), *(v[0] for v in (PAPER["stochastic_percent"], PAPER["constant_percent"])))),
            }
        )
    return {
        "stochastic_percent": [a, a_err],
        "constant_percent": [b, b_err],
        "fit_chi2": chi2,
        "fit_ndf": len(energies) - 2,
        "calibration": {
            "alpha_mip_per_gev": float(alpha),
            "beta_mip": float(beta),
            "alpha_err": float(math.sqrt(cov[0, 0])),
            "beta_err": float(math.sqrt(cov[1, 1])),
        },
        "linearity_max_dev": float(max(abs(r["linearity_dev"]) for r in rows)),
        "rows": rows,
    }


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    a, b = result["stochastic_percent"][0], result["constant_percent"][0]
    return {
        "stochastic": bool(abs(a / PAPER["stochastic_percent"][0] - 1.0) <= TARGETS["stochastic_rel"]),
        "constant": bool(abs(b - PAPER["constant_percent"][0]) <= TARGETS["constant_abs_percent"]),
        "linearity": bool(result["linearity_max_dev"] <= TARGETS["linearity_max_dev"]),
    }


# --- the run ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What `hitgen validate calice-2006` simulates."""

    events: int = EVENTS_PER_ENERGY
    energies: tuple[float, ...] = ENERGIES_GEV
    seed: int = 2006
    workers: int | None = None
    physics: dict[str, Any] | None = None  # changes to ild-ecal's default physics settings
    keep: Path | None = None  # a folder to keep the simulated event files in


def check(cfg: Run) -> None:
    """One clear error for a bad configuration, before any simulation."""
    from hitgen.detectors.ild_ecal import PHYSICS

    PHYSICS.with_changes(cfg.physics or {})
    if cfg.events < 20:
        raise HitgenError(f"--events {cfg.events}: need at least 20 electrons per energy for a Gaussian fit")
    if not cfg.energies or any(not (0.5 <= e <= 100.0) for e in cfg.energies) or len(set(cfg.energies)) != len(cfg.energies):
        raise HitgenError(f"--energies {','.join(f'{e:g}' for e in cfg.energies)}: need distinct energies from 0.5 to 100 GeV")
    if len(cfg.energies) < 3:
        raise HitgenError("--energies: need at least three energies to fit a/sqrt(E) (+) b and a line")


def simulate_beam(
    simulate: Callable,
    particle: str,
    energy: float,
    n: int,
    rng: np.random.Generator,
    seed: int,
    out: Path,
    workers: int | None = None,
    physics: dict[str, Any] | None = None,
) -> tuple[EventSet, float]:
    """n particles of the beam (beam_conditions) through the calice-prototype layout with Geant4,
    written to `out`; (the events, Geant4 CPU seconds per event). `simulate` is
    hitgen.simulation.runner.simulate, given by the caller (detectors do not import the simulation layer)."""
    cond = _conditions_file(beam_conditions(n, energy, particle, rng), out.parent / f".beam-{out.name}")
    try:
        summary = simulate("ild-ecal", None, out, seed=seed, workers=workers, conditions_file=cond, physics=physics, overwrite=True)
    finally:
        cond.unlink(missing_ok=True)
    return EventSet.read(summary.path), summary.busy_s / n


def run(cfg: Run, simulate: Callable, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Simulate (with hitgen.simulation.runner.simulate) and analyse; returns the JSON-able result
    (see analyse) with the physics and timing."""
    check(cfg)
    rng = np.random.default_rng([cfg.seed, 0])
    jobs = [("mu-", MUON_ENERGY_GEV, MUON_EVENTS)] + [("e-", float(e), cfg.events) for e in sorted(cfg.energies)]
    work = Path(tempfile.mkdtemp(prefix="hitgen-validate-")) if cfg.keep is None else cfg.keep
    work.mkdir(parents=True, exist_ok=True)
    per_energy: dict[float, np.ndarray] = {}
    timing: dict[str, float] = {}
    physics: dict[str, Any] = {}
    mip = (float("nan"), float("nan"))
    t0 = time.perf_counter()
    try:
        for k, (particle, energy, n) in enumerate(jobs):
            if progress:
                progress(f"{n} {particle} at {energy:g} GeV")
            out = work / f"{particle}_{energy:g}GeV.h5"
            events, cpu_s = simulate_beam(simulate, particle, energy, n, rng, cfg.seed + k, out, cfg.workers, cfg.physics)
            physics = events.physics
            timing[f"{particle} {energy:g} GeV"] = 1000.0 * cpu_s
            if particle == "mu-":
                mip = mip_mev(events.hits["energy"])
            else:
                per_energy[energy] = weighted_energy(events, mip[0])
            if cfg.keep is None:
                out.unlink()
    finally:
        if cfg.keep is None:
            for p in work.iterdir():
                p.unlink()
            work.rmdir()
    result = analyse(per_energy)
    result["verdicts"] = verdicts(result)
    result["mip_mev"] = list(mip)
    result["physics"] = physics
    result["cpu_ms_per_event"] = timing
    result["events_per_energy"] = cfg.events
    result["seed"] = cfg.seed
    result["wall_s"] = time.perf_counter() - t0
    result["paper"] = {
        "stochastic_percent": list(PAPER["stochastic_percent"]),
        "constant_percent": list(PAPER["constant_percent"]),
        "linearity": PAPER["linearity"],
    }
    result["targets"] = TARGETS
    from hitgen.core.machine import machine_description

    result["machine"] = machine_description()
    return result


def quick_check(
    simulate: Callable, electrons: int, muons: int, seed: int, work: Path, energy: float = 10.0, physics: dict[str, Any] | None = None
) -> dict[str, float]:
    """The small version for CI: `muons` calibrate the MIP, `electrons` at `energy` give the mean weighted
    response (MIPs per GeV) and the resolution (std / mean of E_w), with their statistical errors."""
    rng = np.random.default_rng([seed, 0])
    mu, _ = simulate_beam(simulate, "mu-", MUON_ENERGY_GEV, muons, rng, seed, work / "muons.h5", physics=physics)
    el, _ = simulate_beam(simulate, "e-", energy, electrons, rng, seed + 1, work / "electrons.h5", physics=physics)
    mip = mip_mev(mu.hits["energy"])[0]
    ew = weighted_energy(el, mip)
    mean, std = float(ew.mean()), float(ew.std(ddof=1))
    return {
        "mip_mev": mip,
        "response_mip_per_gev": mean / energy,
        "response_err": std / math.sqrt(len(ew)) / energy,
        "resolution": std / mean,
        "resolution_err": std / mean / math.sqrt(2 * (len(ew) - 1)),
        "events": len(ew),
    }


# --- what the CLI shows ---------------------------------------------------------------------------------
def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    rows = [
        [
            f"{r['energy_gev']:g}",
            str(r["events"]),
            f"{r['response_mip_per_gev']:.2f}",
            f"{100 * r['linearity_dev']:+.2f} +- {100 * r['linearity_dev_err']:.2f}",
            f"{r['sigma_over_e_percent']:.2f} +- {r['sigma_over_e_percent_err']:.2f}",
            f"{r['paper_fit_percent']:.2f}",
        ]
        for r in result["rows"]
    ]
    a, b = result["stochastic_percent"], result["constant_percent"]
    pa, pb = result["paper"]["stochastic_percent"], result["paper"]["constant_percent"]
    v = result["verdicts"]
    ok = {True: "met", False: "NOT met"}
    fit = [
        [
            "stochastic term (%)",
            f"{a[0]:.2f} +- {a[1]:.2f}",
            f"{pa[0]} +- {pa[1]}",
            f"within {100 * TARGETS['stochastic_rel']:.0f}%: {ok[v['stochastic']]}",
        ],
        [
            "constant term (%)",
            f"{b[0]:.2f} +- {b[1]:.2f}",
            f"{pb[0]} +- {pb[1]}",
            f"within {TARGETS['constant_abs_percent']:g} pp: {ok[v['constant']]}",
        ],
        [
            "linearity, max |dev| (%)",
            f"{100 * result['linearity_max_dev']:.2f}",
            f"about {100 * result['paper']['linearity']:.0f}",
            f"within {100 * TARGETS['linearity_max_dev']:.1f}%: {ok[v['linearity']]}",
        ],
        ["fit chi2 / ndf", f"{result['fit_chi2']:.1f} / {result['fit_ndf']}", "", ""],
        ["MIP (MeV, muon MPV)", f"{result['mip_mev'][0]:.4f} +- {result['mip_mev'][1]:.4f}", "", ""],
    ]
    return [
        (
            "CALICE 2006 electrons, hitgen's Geant4 (E_w in MIPs; paper: its fit at E)",
            ["E (GeV)", "events", "E_w/E", "E_reco/E-1 (%)", "sigma/E (%)", "paper (%)"],
            rows,
        ),
        ("fit sigma/E = a/sqrt(E) (+) b and linearity", ["", "hitgen Geant4", "paper", "target"], fit),
    ]


def plots(result: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = np.array([r["energy_gev"] for r in result["rows"]])
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    dev = np.array([100 * r["linearity_dev"] for r in result["rows"]])
    err = np.array([100 * r["linearity_dev_err"] for r in result["rows"]])
    ax.errorbar(e, dev, yerr=err, fmt="o", label="hitgen Geant4")
    ax.axhspan(-100 * result["paper"]["linearity"], 100 * result["paper"]["linearity"], color="0.85", label="paper: linear within about 1%")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("beam energy (GeV)")
    ax.set_ylabel("(E_reco - E) / E (%)")
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "linearity.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    res = np.array([r["sigma_over_e_percent"] for r in result["rows"]])
    res_err = np.array([r["sigma_over_e_percent_err"] for r in result["rows"]])
    grid = np.linspace(e.min() * 0.9, e.max() * 1.1, 200)
    a, b = result["stochastic_percent"][0], result["constant_percent"][0]
    pa, pb = result["paper"]["stochastic_percent"][0], result["paper"]["constant_percent"][0]
    ax.errorbar(e, res, yerr=res_err, fmt="o", label="hitgen Geant4")
    ax.plot(grid, resolution_curve(grid, a, b), label=f"fit: {a:.1f}%/$\\sqrt{{E}}$ $\\oplus$ {b:.1f}%")
    ax.plot(grid, resolution_curve(grid, pa, pb), "--", label=f"paper: {pa}%/$\\sqrt{{E}}$ $\\oplus$ {pb}%")
    ax.set_xlabel("beam energy (GeV)")
    ax.set_ylabel("sigma / E (%)")
    ax.legend()
    fig.tight_layout()
    paths.append(folder / "resolution.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
