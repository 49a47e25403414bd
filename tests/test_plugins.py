"""The two plug-in axes are real: a toy detector and a toy model family, defined and registered in
this module without any edit under src/, go through the shared machinery end to end: an event
file, `train`, `generate` (from a file's conditions and from the detector's generation options),
`evaluate`, `bench` (no Geant4), `info` and `ship`.

docs/adding-a-detector.md and docs/adding-a-family.md walk through these two toys.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from pydantic import Field
from typer.testing import CliRunner

from hitgen.core.atomic import write_text_atomic
from hitgen.core.config import FamilyConfig, NoLoss, Strict
from hitgen.core.events import EventSet
from hitgen.core.fields import DetectorInfo, FieldSpec
from hitgen.detectors import REGISTRY as DETECTORS
from hitgen.detectors.base import Geant4Setup, Option, Table
from hitgen.evaluation.info import per_layer_counts, per_layer_table, save_info_plots
from hitgen.evaluation.report import fmt_value
from hitgen.evaluation.stats import halves, w1
from hitgen.families import REGISTRY as FAMILIES
from hitgen.families import SamplingOptions
from hitgen.nn.draw import inverse_cdf_sample
from hitgen.nn.streams import event_keys, uniforms
from sameness import assert_same_events

# --- a toy detector: one row of 8 cells, a particle of energy E makes about E hits -----------------

N_CELLS, MAX_HITS = 8, 15


class ToyRow:
    name = "toy-row"
    info = DetectorInfo(
        name="toy-row",
        version=1,
        hit_fields=(FieldSpec("cell", "int16", doc="cell index 0-7"), FieldSpec("amplitude", "float32", unit="MeV")),
        condition_fields=(FieldSpec("energy", "float32", unit="GeV"),),
        extra={"readout_layers": [f"cell {i}" for i in range(N_CELLS)]},
    )
    options = (Option("energy_range", "positive-range", "energy range in GeV, LO:HI (default 1:10)"),)
    generation_options = ("energy_range",)
    bench_options: dict[str, Any] = {}

    def sample_conditions(self, n: int, rng: np.random.Generator, energy_range=(1.0, 10.0)) -> dict[str, np.ndarray]:
        return {"energy": rng.uniform(*energy_range, n).astype(np.float32)}

    def geant4(self) -> Geant4Setup:
        raise NotImplementedError("the toy has no Geant4 description")

    def truth(self, n: int, seed: int) -> EventSet:
        """The toy's 'simulation': hits ~ Poisson(E), cells peaked at the centre, amplitudes log-normal."""
        rng = np.random.default_rng(seed)
        cond = self.sample_conditions(n, rng)
        counts = np.minimum(rng.poisson(cond["energy"]), MAX_HITS)
        h = int(counts.sum())
        cell = np.clip(np.rint(rng.normal(3.5, 1.5, h)), 0, N_CELLS - 1).astype(np.int16)
        amplitude = np.exp(rng.normal(0.5 + 0.1 * cell, 0.3)).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return EventSet(self.name, self.info.spec(), cond, offsets, {"cell": cell, "amplitude": amplitude}, "toy truth", seed=seed)

    def _layers(self, events: EventSet) -> tuple[list[str], np.ndarray]:
        return self.info.extra["readout_layers"], per_layer_counts(events, N_CELLS, events.hits["cell"])

    def info_tables(self, events: EventSet) -> list[Table]:
        return [per_layer_table(*self._layers(events))]

    def info_plots(self, events: EventSet, folder: Path) -> list[Path]:
        return save_info_plots(events, *self._layers(events), folder)

    @staticmethod
    def _distances(a: EventSet, b: EventSet) -> dict[str, float]:
        return {"hits_per_event_w1": w1(a.hits_per_event(), b.hits_per_event()), "amplitude_w1": w1(a.hits["amplitude"], b.hits["amplitude"])}

    def evaluate(self, ref: EventSet, cand: EventSet, out: Path, plots: bool, replica: EventSet | None = None):
        if replica is not None:
            floor = {**self._distances(ref, replica), "kind": "replica", "n": replica.n_events}
        else:
            first, second = halves(ref.n_events)
            floor = {**self._distances(ref.select(first), ref.select(second)), "kind": "halves", "n_per_half": len(first)}
        return {**self._distances(ref, cand), "noise_floor": floor}, []

    def summary_tables(self, m: dict[str, Any]) -> list[Table]:
        keys = ("hits_per_event_w1", "amplitude_w1")
        return [
            (
                "summary",
                ["metric", "candidate", "noise floor"],
                [[k, fmt_value("{:.3f}", m[k]), fmt_value("{:.3f}", m["noise_floor"][k])] for k in keys],
            )
        ]

    def render_report(self, metrics: dict[str, Any], figures, path: Path) -> Path:
        rows = "".join(f"<tr><td>{' </td><td>'.join(r)}</td></tr>" for _, _, rs in self.summary_tables(metrics) for r in rs)
        return write_text_atomic(path, f"<html><body><h1>{self.name}</h1><table>{rows}</table></body></html>")


# --- a toy family: the hit count and each hit's cell and amplitude, given the energy -----------------


@dataclass
class ToyConfig:
    hidden: int = 16

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ToyConfig:
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ToyModel(torch.nn.Module):
    def __init__(self, cfg: ToyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.count = torch.nn.Sequential(torch.nn.Linear(1, cfg.hidden), torch.nn.GELU(), torch.nn.Linear(cfg.hidden, MAX_HITS + 1))
        self.cell = torch.nn.Parameter(torch.zeros(N_CELLS))
        self.amp_mean = torch.nn.Parameter(torch.zeros(N_CELLS))
        self.amp_log_sigma = torch.nn.Parameter(torch.zeros(N_CELLS))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def count_logits(self, energy: torch.Tensor) -> torch.Tensor:
        return self.count(torch.log(energy)[:, None])


@dataclass
class ToyData:
    energy: np.ndarray
    length: np.ndarray
    cells: np.ndarray  # (N, MAX_HITS), -1 past the hits
    log_amp: np.ndarray

    def __len__(self) -> int:
        return len(self.length)

    @classmethod
    def from_events(cls, events: EventSet) -> ToyData:
        n, counts = events.n_events, events.hits_per_event()
        cells, log_amp = np.full((n, MAX_HITS), -1, np.int64), np.zeros((n, MAX_HITS), np.float32)
        rank = np.arange(events.n_hits) - np.repeat(events.offsets[:-1], counts)
        cells[events.event_index(), rank] = events.hits["cell"]
        log_amp[events.event_index(), rank] = np.log(events.hits["amplitude"])
        return cls(events.conditions["energy"], counts, cells, log_amp)

    def subset(self, idx: np.ndarray) -> ToyData:
        return ToyData(self.energy[idx], self.length[idx], self.cells[idx], self.log_amp[idx])

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {
            "energy": torch.from_numpy(self.energy[idx]),
            "count": torch.from_numpy(self.length[idx].astype(np.int64)),
            "cells": torch.from_numpy(self.cells[idx]),
            "log_amp": torch.from_numpy(self.log_amp[idx]),
        }


def toy_loss(model: ToyModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    ce_count = F.cross_entropy(model.count_logits(batch["energy"]), batch["count"])
    real = batch["cells"] >= 0
    cells = batch["cells"][real]
    ce_cell = F.cross_entropy(model.cell.expand(len(cells), -1), cells)
    sigma = model.amp_log_sigma[cells].exp()
    nll_amp = (((batch["log_amp"][real] - model.amp_mean[cells]) / sigma) ** 2 / 2 + sigma.log()).mean()
    loss = ce_count + ce_cell + nll_amp
    parts = {"loss": loss, "ce_count": ce_count, "ce_cell": ce_cell, "nll_amp": nll_amp}
    return loss, {k: float(v.detach()) for k, v in parts.items()}


class ToyModelSection(Strict):
    architecture: Literal["toy-counts"]
    hidden: int = Field(16, gt=0)


class ToyTrainConfig(FamilyConfig):
    model: ToyModelSection
    loss: NoLoss = NoLoss()


class ToyCounts:
    name = "toy-counts"
    detector = "toy-row"
    tokenizer = "toy-row hit counts, cells and log amplitudes (tests/test_plugins.py)"
    config_type = ToyTrainConfig
    sampling_options = ("batch_size", "seed")
    decoders: tuple[str, ...] = ()
    has_kv_cache = False

    def build(self, cfg: ToyTrainConfig, data: ToyData) -> ToyModel:
        return ToyModel(ToyConfig(hidden=cfg.model.hidden))

    def model_from_config(self, model_config: dict[str, Any]) -> ToyModel:
        return ToyModel(ToyConfig.from_dict(model_config))

    def training_data(self, events: EventSet) -> ToyData:
        return ToyData.from_events(events)

    def loss(self, cfg):
        return toy_loss

    def loss_fields(self, cfg) -> tuple[str, ...]:
        return ("loss", "ce_count", "ce_cell", "nll_amp")

    @torch.no_grad()
    def generate(self, model: ToyModel, conditions, opts: SamplingOptions, device: str, progress, first_event: int):
        """Per-event random streams: draw 0 is the count, draws 1 + 2k and 2 + 2k the k-th hit's cell and amplitude."""
        energy = torch.as_tensor(conditions["energy"], device=device)
        n = len(energy)
        keys = torch.as_tensor(event_keys(opts.seed, first_event + np.arange(n)), device=device)
        counts = inverse_cdf_sample(torch.softmax(model.count_logits(energy), -1), uniforms(keys, torch.tensor(0))).cpu().numpy()
        cells, amps = [], []
        probs = torch.softmax(model.cell, -1).expand(n, -1)
        for k in range(int(counts.max(initial=0))):
            cell = inverse_cdf_sample(probs, uniforms(keys, torch.tensor(1 + 2 * k)))
            u = uniforms(keys, torch.tensor(2 + 2 * k)).clamp(1e-12, 1 - 1e-12)
            z = math.sqrt(2) * torch.erfinv(2 * u - 1)
            cells.append(cell)
            amps.append(torch.exp(model.amp_mean[cell] + model.amp_log_sigma[cell].exp() * z.float()))
        live = np.arange(len(cells))[None, :] < counts[:, None]  # (N, K): hit k of event i exists
        cell = torch.stack(cells, 1).cpu().numpy()[live] if cells else np.zeros(0)
        amp = torch.stack(amps, 1).cpu().numpy()[live] if amps else np.zeros(0)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if progress:
            progress(n)
        return offsets, {"cell": cell.astype(np.int16), "amplitude": amp.astype(np.float32)}

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        return events.hits_per_event() + 1

    def flops_per_event(self, model_config: ToyConfig, lengths: np.ndarray, decoder: str = "plain") -> float:
        return float(2 * model_config.hidden * (2 + MAX_HITS + 1))


TOY_CONFIG = """
[model]
architecture = "toy-counts"
hidden = 16

[train]
batch_size = 64
micro_batch_size = 32
lr = 0.05
warmup_steps = 5
max_steps = 150
val_fraction = 0.1
val_events = 100
eval_every = 50
checkpoint_every = 50
seed = 0
"""


@pytest.fixture(scope="module")
def toys():
    detector, family = DETECTORS.register(ToyRow()), FAMILIES.register(ToyCounts())
    yield detector, family
    DETECTORS.unregister(detector.name)
    FAMILIES.unregister(family.name)


@pytest.fixture(scope="module")
def trained(toys, tmp_path_factory):
    from hitgen.training.trainer import train

    d = tmp_path_factory.mktemp("toy")
    detector, _ = toys
    train_file = detector.truth(2000, seed=1).write(d / "train.h5")
    (d / "toy.toml").write_text(TOY_CONFIG)
    return train(d / "toy.toml", train_file, d / "run"), d


def test_toy_detector_and_family_go_through_train_generate_evaluate(toys, trained, tmp_path):
    from hitgen.evaluation import evaluate
    from hitgen.generation.job import generate_file

    detector, _ = toys
    run, d = trained
    config = json.loads((run / "config.json").read_text())
    assert config["architecture"] == "toy-counts" and config["finished"] and config["detector_spec"]["name"] == "toy-row"
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].split(",")[2:6] == ["loss", "ce_count", "ce_cell", "nll_amp"]

    fresh = detector.truth(1000, seed=2).write(tmp_path / "fresh.h5")  # a seed never used in training
    gen = generate_file(str(run), tmp_path / "gen.h5", conditions=fresh, opts=SamplingOptions(batch_size=100, seed=3))
    events = EventSet.read(gen.path)
    assert events.detector == "toy-row" and events.n_events == 1000 and gen.wrote_output
    assert events.notes["sampling"] == {"batch_size": 100, "seed": 3, "dtype": "fp32", "backend": "torch"}
    # the per-event streams: another batch size gives the same events
    again = EventSet.read(generate_file(str(run), tmp_path / "again.h5", conditions=fresh, opts=SamplingOptions(batch_size=37, seed=3)).path)
    assert_same_events((again.offsets, again.hits), (events.offsets, events.hits), "batch 37 vs 100")

    result = evaluate(fresh, gen.path, tmp_path / "eval")
    m = result.metrics
    assert m["conditions_matched"] and (tmp_path / "eval" / "report.html").is_file()
    # the trained toy learns the energy dependence of the count: within a few noise floors
    assert m["hits_per_event_w1"] < 4 * m["noise_floor"]["hits_per_event_w1"] + 0.1
    # and a wrong candidate is caught: the truth at twice the energy
    wrong = detector.truth(1000, seed=2)
    wrong.conditions["energy"] = wrong.conditions["energy"] * 2
    far = evaluate(fresh, generate_file(str(run), tmp_path / "far.h5", conditions=wrong.write(tmp_path / "w.h5")).path, tmp_path / "ev2")
    assert far.metrics["hits_per_event_w1"] > 10 * far.metrics["noise_floor"]["hits_per_event_w1"]

    # conditions sampled by the detector's own generation option
    sampled = generate_file(str(run), tmp_path / "s.h5", options={"energy_range": (2.0, 3.0)}, n_events=50)
    assert 2.0 <= EventSet.read(sampled.path).conditions["energy"].min() <= EventSet.read(sampled.path).conditions["energy"].max() <= 3.0


def test_toy_bench_info_and_ship(toys, trained, tmp_path):
    from hitgen.benchmark.run import bench
    from hitgen.cli import app
    from hitgen.models.card import ship

    run, d = trained
    r = bench(str(run), events=64, batch_sizes=(16,), repeats=1, geant4_events=0)
    assert r["detector"] == "toy-row" and r["geant4_events_per_s"] is None and r["kv_cache"] is False
    assert r["per_batch"][0]["events"] == 64 and r["flops_per_event"] == 2 * 16 * (2 + MAX_HITS + 1)

    runner = CliRunner()
    res = runner.invoke(app, ["info", str(d / "train.h5"), "--plots", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    assert "2000 events of toy-row" in res.output and "cell 3" in res.output and (tmp_path / "plots" / "occupancy.png").is_file()

    from hitgen.evaluation import evaluate

    fresh = toys[0].truth(200, seed=4).write(tmp_path / "fresh.h5")
    gen = runner.invoke(app, ["generate", str(run), "--conditions", str(fresh), "--out", str(tmp_path / "g.h5")])
    assert gen.exit_code == 0, gen.output
    evaluate(fresh, tmp_path / "g.h5", tmp_path / "eval", plots=False)
    dest = ship(run, tmp_path / "models" / "toy", tmp_path / "eval")
    card = (dest / "README.md").read_text()
    assert "toy-counts" in card and "hits_per_event_w1" in card


def test_generation_streams_in_blocks_with_the_same_events(toys, trained, tmp_path, monkeypatch):
    """Blocks of 7 events (conditions read, generated, written one block at a time) give the file
    that one block gives: the same conditions and hits (every event has its own stream)."""
    from hitgen.generation import job

    detector, _ = toys
    run, _ = trained
    fresh = detector.truth(50, seed=5).write(tmp_path / "fresh.h5")
    whole = EventSet.read(job.generate_file(str(run), tmp_path / "whole.h5", conditions=fresh).path)
    monkeypatch.setattr(job, "BLOCK_EVENTS", 7)
    blocks = EventSet.read(job.generate_file(str(run), tmp_path / "blocks.h5", conditions=fresh).path)
    assert_same_events((blocks.offsets, blocks.hits), (whole.offsets, whole.hits), "blocks of 7 vs one block")
    np.testing.assert_array_equal(blocks.conditions["energy"], EventSet.read(fresh).conditions["energy"])
    # sampled conditions: block 0 is one draw of all of them, later blocks their own streams
    source = job.ConditionSource(20, detector=detector, options={"energy_range": (1.0, 2.0)}, seed=3)
    got = np.concatenate([c["energy"] for _, c in source.blocks()])
    np.testing.assert_array_equal(got[:7], detector.sample_conditions(7, np.random.default_rng([3, 0]), energy_range=(1.0, 2.0))["energy"])
    assert len(got) == 20 and len(np.unique(got)) == 20


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(toys, tmp_path, monkeypatch):
    from hitgen.core.errors import HitgenError
    from hitgen.training.trainer import train

    detector, family = toys
    data = detector.truth(500, seed=6).write(tmp_path / "train.h5")
    (tmp_path / "toy.toml").write_text(TOY_CONFIG.replace("checkpoint_every = 50", "checkpoint_every = 5"))
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, parts = toy_loss(model, batch)
        if calls["n"] > 16:  # micro-batches of 32 in batches of 64: two per step, so step 9 goes NaN
            loss = loss * float("nan")
        return loss, parts | {"loss": float(loss.detach())}

    monkeypatch.setattr(family, "loss", lambda cfg: poisoned)
    with pytest.raises(HitgenError, match="not finite"):
        train(tmp_path / "toy.toml", data, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["steps"] == 5  # the checkpoint before the NaN, and its model folder
    from safetensors.torch import load_file

    assert all(bool(torch.isfinite(v).all()) for v in load_file(str(tmp_path / "run" / "model.safetensors")).values())


def test_a_killed_evaluation_leaves_no_folder(toys, tmp_path, monkeypatch):
    """evaluate writes into a hidden folder that takes --out's place only when complete."""
    from hitgen.evaluation import evaluate

    detector, _ = toys
    ref, cand = detector.truth(100, seed=7).write(tmp_path / "r.h5"), detector.truth(100, seed=8).write(tmp_path / "c.h5")
    evaluate(ref, cand, tmp_path / "ev")
    first = (tmp_path / "ev" / "metrics.json").read_text()

    def killed(ref, cand, out, plots, replica=None):
        (out / "plots").mkdir()
        (out / "plots" / "half.png").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(detector, "evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate(ref, cand, tmp_path / "ev", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "ev", "r.h5"]  # no partial folder
    assert (tmp_path / "ev" / "metrics.json").read_text() == first and not (tmp_path / "ev" / "plots").exists()
