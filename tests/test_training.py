"""Training, exact resume after a kill, DDP equivalence, generation, model folders without pickle."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.families import SamplingOptions
from hitgen.families.clas12_gpt.generate import generate
from hitgen.generation.job import generate_file
from hitgen.models import io as io
from hitgen.training.trainer import train

pytestmark = pytest.mark.geant4  # the data are a real Geant4 sample

TINY = """
[model]
architecture = "clas12-gpt"
d_model = 32
n_blocks = 1
n_heads = 4
d_ff = 64
dropout = 0.1
[train]
batch_size = {batch}
micro_batch_size = {micro}
lr = 3e-3
warmup_steps = 3
max_steps = {steps}
val_fraction = 0.1
val_events = 24
eval_every = 5
checkpoint_every = {ckpt}
seed = 3
threads = 1
"""


def config(tmp_path: Path, name: str, steps: int = 20, ckpt: int = 5, batch: int = 16, micro: int = 8) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(steps=steps, ckpt=ckpt, batch=batch, micro=micro))
    return path


def log_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def hitgen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, g4_train_file):
    d = tmp_path_factory.mktemp("straight")
    return train(config(d, "cfg"), g4_train_file, d / "run"), d


def test_training_lowers_the_loss_and_writes_a_model_folder(straight):
    run, _ = straight
    rows = log_rows(run)
    assert [int(r["step"]) for r in rows] == list(range(20))

    def mean(key: str, part: list[dict[str, str]]) -> float:
        return float(np.mean([float(r[key]) for r in part]))

    # 20 steps of a tiny model: the cross-entropies fall from their uniform values (log V)
    assert mean("ce_strip", rows[-3:]) < mean("ce_strip", rows[:3]) - 0.7
    assert mean("ce_tdc", rows[-3:]) < mean("ce_tdc", rows[:3]) - 1.0
    assert mean("loss", rows[-3:]) < mean("loss", rows[:3]) - 4.0
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert len(vals) == 4 and all(b < a for a, b in zip(vals, vals[1:], strict=False))
    loaded = io.load_model(run)
    assert loaded.config["data"]["n_events"] == 240 and loaded.config["steps"] == 20 and loaded.config["finished"]


def test_resume_after_a_kill_continues_exactly(straight, g4_train_file):
    run, d = straight
    killed = d / "killed"
    cfg = config(d, "cfg")  # the same configuration
    proc = subprocess.Popen([sys.executable, "-m", "hitgen", "train", str(cfg), "--data", str(g4_train_file), "--out", str(killed)])
    deadline = time.time() + 240
    while not ((killed / "log.csv").exists() and len(log_rows(killed)) >= 10):  # two checkpoints written
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not io.load_model(killed).config["finished"]  # the model folder follows the last checkpoint
    done_before = len(log_rows(killed))
    assert 10 <= done_before < 20
    train(cfg, g4_train_file, killed)  # resumes from the last checkpoint
    a, b = log_rows(run), log_rows(killed)
    assert [r["step"] for r in b] == [r["step"] for r in a]
    for key in ("loss", "ce_strip", "length", "grad_norm", "val_loss", "lr"):
        assert [r[key] for r in b] == [r[key] for r in a], key
    wa, wb = weights(run), weights(killed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_processes_match_one_process(tmp_path, g4_train_file):
    # one process accumulating two micro-batches of 8 == two processes with 8 events each
    cfg = config(tmp_path, "ddp", steps=6, ckpt=6, batch=16, micro=8)
    single = train(cfg, g4_train_file, tmp_path / "single")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    cmd += ["-m", "hitgen", "train", str(cfg), "--data", str(g4_train_file), "--out", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ws, wd = weights(single), weights(tmp_path / "ddp")
    for k in ws:
        torch.testing.assert_close(wd[k], ws[k], rtol=1e-4, atol=1e-5)
    ls, ld = log_rows(single), log_rows(tmp_path / "ddp")
    np.testing.assert_allclose([float(r["loss"]) for r in ld], [float(r["loss"]) for r in ls], rtol=1e-4)


def structurally_valid(events: EventSet) -> None:
    layer = events.hits["layer"].astype(int)
    strip = events.hits["strip"].astype(int)
    event = events.event_index()
    strips = np.array([68, 62, 62, 36, 36, 36, 36, 36, 36])
    assert ((layer >= 0) & (layer < 9)).all() and ((strip >= 0) & (strip < strips[layer])).all()
    key = event * 1000 + layer * 100 + strip  # layers in order, strips rising within a layer
    assert (np.diff(key) > 0).all()
    counts = np.zeros((events.n_events, 9), int)
    np.add.at(counts, (event, layer), 1)
    assert counts.max() <= 20
    assert (events.hits["adc"] >= 1).all() and (events.hits["tdc"] >= 0).all()


def test_generation_is_reproducible_and_valid(straight, g4_train_file, tmp_path):
    run, _ = straight
    out = generate_file(str(run), tmp_path / "a.h5", conditions=g4_train_file, opts=SamplingOptions(batch_size=64, seed=5))
    again = generate_file(str(run), tmp_path / "b.h5", conditions=g4_train_file, opts=SamplingOptions(batch_size=64, seed=5))
    other = generate_file(str(run), tmp_path / "c.h5", conditions=g4_train_file, opts=SamplingOptions(batch_size=64, seed=6))
    a, b, c = (EventSet.read(s.path) for s in (out, again, other))
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for k in a.hits:
        np.testing.assert_array_equal(a.hits[k], b.hits[k])
    assert not np.array_equal(a.hits["strip"], c.hits["strip"]) or not np.array_equal(a.offsets, c.offsets)
    ref = EventSet.read(g4_train_file)
    np.testing.assert_array_equal(a.conditions["momentum"], ref.conditions["momentum"])
    assert a.producer.startswith("hitgen model run") and a.seed == 5
    sampling = {
        "temperature": 1.0,
        "top_k": 20,
        "value_top_k": 0,
        "batch_size": 64,
        "seed": 5,
        "decoder": "plain",
        "dtype": "fp32",
        "backend": "torch",
    }
    assert a.notes["sampling"] == sampling
    for e in (a, c):
        structurally_valid(e)


def test_structure_holds_even_for_an_untrained_model():
    from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT

    torch.manual_seed(0)
    model = HitGPT(GPTConfig(d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0))
    momentum = np.tile(np.array([[1.0, 0.0, 4.0]], np.float32), (40, 1))
    offsets, hits = generate(model, momentum, SamplingOptions(batch_size=16, top_k=0, seed=1))
    from hitgen.detectors.clas12_ecal import geometry as clas12_ecal

    events = EventSet("clas12-ecal", clas12_ecal.INFO.spec(), {"momentum": momentum, "pdg": np.full(40, 22, np.int32)}, offsets, hits, "x")
    structurally_valid(events)
    assert events.n_hits > 40 * 9  # random strip logits rarely pick a terminator: layers fill up


def test_model_folders_load_without_pickle(straight, monkeypatch, tmp_path):
    run, _ = straight

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = io.load_model(run)
    assert loaded.model.n_parameters() > 0
    # an altered weights file is refused
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "model.safetensors"):
        (copy / name).write_bytes((run / name).read_bytes())
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(HitgenError, match="checksum"):
        io.load_model(copy)
    (copy / "model.safetensors").unlink()
    with pytest.raises(HitgenError, match="missing model.safetensors"):
        io.load_model(copy)
    with pytest.raises(HitgenError, match="no model folder or shipped model named 'no-such-model'"):
        io.load_model("no-such-model")


def test_bad_inputs_give_one_line(straight, g4_train_file, toy_file, tmp_path, capsys):
    from test_bad_inputs import run_cli

    run, d = straight
    small = tmp_path / "small.h5"
    EventSet.read(g4_train_file).select(np.arange(30)).write(small)
    cases = [
        (
            ("generate", str(run), "--conditions", str(toy_file("toy-detector")), "--out", str(tmp_path / "o.h5")),
            "conditions of detector toy-detector",
        ),
        (("generate", str(run), "--conditions", str(g4_train_file), "--out", str(tmp_path / "o.h5"), "--device", "cuda"), "no CUDA GPU"),
        (("generate", "no-such-model", "--momentum-range", "1:2", "--events", "3", "--out", str(tmp_path / "o.h5")), "no-such-model"),
        (("generate", str(run), "--out", str(tmp_path / "o.h5")), "--momentum-range"),
        (("train", str(config(d, "cfg")), "--data", str(small), "--out", str(tmp_path / "r")), "training file too small"),
        (("train", str(tmp_path / "missing.toml"), "--data", str(small), "--out", str(tmp_path / "r")), "no such config file"),
    ]
    if torch.cuda.is_available():
        cases.pop(1)
    for args, fragment in cases:  # in this process, as tests/test_bad_inputs.py runs its table
        code, err = run_cli(list(args), capsys)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (args, err)
    assert not (tmp_path / "o.h5").exists()


def test_momenta_outside_the_training_range_are_flagged(straight, tmp_path):
    run, _ = straight
    r = hitgen("generate", str(run), "--momentum-range", "12:14", "--events", "8", "--out", str(tmp_path / "far.h5"))
    assert r.returncode == 0, r.stderr
    assert "warning: 8 of 8 events lie outside the training range (momentum" in r.stderr
    assert EventSet.read(tmp_path / "far.h5").notes["momentum_outside_training_range"] == 8


def test_ship_writes_a_model_card_from_the_records(straight, g4_train_file, tmp_path):
    from hitgen.evaluation import evaluate
    from hitgen.models.card import ship

    run, _ = straight
    gen = generate_file(str(run), tmp_path / "gen.h5", conditions=g4_train_file, opts=SamplingOptions(batch_size=128, seed=2))
    evaluate(g4_train_file, gen.path, tmp_path / "eval", plots=False)
    dest = ship(run, tmp_path / "models" / "tiny-gpt", tmp_path / "eval", notes="The ablation: measured.")
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "config.json", "metrics.json", "model.safetensors"]
    card = (dest / "README.md").read_text()
    cfg = io.load_model(dest).config
    assert cfg["weights_sha256"] in card and "--events 240 --seed 31" in card and "240 Geant4 events" in card
    assert "| energy scale, largest \\|ratio - 1\\| |" in card
    assert "| shower position W1 (strips) |" in card and "for the same conditions" in card
    assert "training_seconds" in cfg and cfg["machine"]["cores"] >= 1
    assert "## Notes\n\nThe ablation: measured." in card and "sampling {" in card
    assert f"hitgen train {cfg['training_config_file']} --data" in card


def test_init_from_a_trained_model_copies_its_weights_and_adds_new_modules(straight, g4_train_file, tmp_path):
    run, _ = straight
    path = tmp_path / "warm.toml"
    path.write_text(TINY.replace("dropout = 0.1", "dropout = 0.1\ndeposit_feature = true").format(steps=2, ckpt=1, batch=16, micro=8))
    warm = train(path, g4_train_file, tmp_path / "warm", stop_after=1, init_from=str(run))
    init = json.loads((warm / "init.json").read_text())
    assert init["parameters_new"] == ["deposit_mlp.0.bias", "deposit_mlp.0.weight", "deposit_mlp.2.bias", "deposit_mlp.2.weight"]
    assert json.loads((warm / "config.json").read_text())["init_from"]["weights_sha256"] == io.load_model(run).weights_sha256
    # its first loss is the trained model's (the new module starts at zero), far below a fresh start's
    fresh = train(path, g4_train_file, tmp_path / "fresh", stop_after=1)
    assert float(log_rows(warm)[0]["loss"]) < float(log_rows(fresh)[0]["loss"]) - 2
    # a model of another width is refused in one line
    wide = tmp_path / "wide.toml"
    wide.write_text(TINY.replace("d_model = 32", "d_model = 64").format(steps=2, ckpt=1, batch=16, micro=8))
    with pytest.raises(HitgenError, match="has shape"):
        train(wide, g4_train_file, tmp_path / "wide", stop_after=1, init_from=str(run))


def test_train_only_fine_tunes_the_named_modules_of_a_frozen_model(straight, g4_train_file, tmp_path):
    """train.train_only: the named modules (here new value heads that see their hit, and the TDC
    head) train; every other parameter keeps the warm-start value exactly. A prefix that names no
    parameter is refused in one line."""
    run, _ = straight
    heads = "value_heads_see_strip = true\ntdc_sees_hit = true\ntdc_threshold_rule = true"
    only = 'train_only = ["value_strip", "value_mlp", "tdc_", "head_tdc"]'
    path = tmp_path / "heads.toml"
    path.write_text(
        TINY.replace("dropout = 0.1", "dropout = 0.0\n" + heads)
        .replace("threads = 1", "threads = 1\n" + only)
        .format(steps=3, ckpt=3, batch=16, micro=8)
    )
    tuned = weights(train(path, g4_train_file, tmp_path / "heads", init_from=str(run)))
    before = weights(run)
    trained = [k for k in tuned if k.startswith(("value_strip", "value_mlp", "tdc_", "head_tdc"))]
    assert len(trained) == 18  # head_tdc, and the new tdc_strip, tdc_adc, tdc_mlp, value_strip, value_mlp
    assert not torch.equal(tuned["head_tdc.weight"], before["head_tdc.weight"])
    assert tuned["tdc_mlp.3.weight"].abs().max() > 0 and tuned["value_mlp.3.weight"].abs().max() > 0  # away from their zero start
    for k, v in before.items():
        if k not in trained:
            assert torch.equal(tuned[k], v), k
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('"head_tdc"]', '"head_time"]'))
    with pytest.raises(HitgenError, match="no parameter of this model starts with 'head_time'"):
        train(bad, g4_train_file, tmp_path / "bad", init_from=str(run))


@pytest.mark.parametrize("rescale,total_first", [(False, False), (True, False), (True, True)])
def test_energy_first_sampling_keeps_the_structure_and_its_layer_energies(rescale, total_first):
    """An untrained energy-first model: events are structurally valid, a layer drawn empty has no
    hit and every other at least one; with rescale_to_layer_energy each layer holds the drawn energy
    (the tokens' fraction of |p| within its bin), without it the hits' sums are the model's own.
    Total-first: the layers hold the drawn layer energies scaled to add up to the drawn total."""
    from hitgen.detectors.clas12_ecal import geometry as clas12_ecal
    from hitgen.families.clas12_gpt import tokenizer as tok
    from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT
    from hitgen.families.clas12_gpt.sampler import Budget, start_tokens
    from hitgen.nn import streams

    torch.manual_seed(0)
    cfg = GPTConfig(
        d_model=24, n_blocks=1, n_heads=2, d_ff=48, dropout=0.0, energy_first=True, rescale_to_layer_energy=rescale, energy_total_first=total_first
    )
    model = HitGPT(cfg).eval()
    with torch.no_grad():  # favour empty layers, so both cases occur
        model.head_energy.out.bias[0] = 1.0  # the empty layer's logit
    n = 60
    momentum = np.tile(np.array([[1.0, 0.0, 4.0]], np.float32), (n, 1))
    opts = SamplingOptions(batch_size=16, top_k=0, seed=1)
    offsets, hits = generate(model, momentum, opts)
    events = EventSet("clas12-ecal", clas12_ecal.INFO.spec(), {"momentum": momentum, "pdg": np.full(n, 22, np.int32)}, offsets, hits, "x")
    structurally_valid(events)
    # the drawn energies, again from the events' streams
    m = torch.as_tensor(momentum)
    budget = Budget(model, m)
    keys = torch.as_tensor(streams.event_keys(opts.seed, np.arange(n)))
    with torch.no_grad():
        _, _, _, layer_adc = start_tokens(model, m, keys, opts, None, budget)
    target = budget.target.numpy()
    counts = tok.layer_sums(offsets, hits["layer"], np.ones(len(hits["adc"])))
    assert 0 < (target == 0).mean() < 1
    np.testing.assert_array_equal(counts == 0, target == 0)
    sums = tok.layer_sums(offsets, hits["layer"], hits["adc"])
    scale = np.linalg.norm(momentum, axis=1)[:, None] * tok.ADC_PER_GEV
    if total_first:  # each event's total within the total token's bin (0.21%), the layers in the drawn proportions
        total = tok.total_fractions(budget.total.numpy())[:, None]
        assert 0 < (total == 0).mean() < 1
        np.testing.assert_array_equal(target.sum(axis=1) == 0, total[:, 0] == 0)  # an empty total, an empty event
        target = target.astype(np.float64)
        target = target / np.maximum(target.sum(axis=1, keepdims=True), 1e-300) * total
    width = 0.013 if total_first else 0.011  # the layer bin (1.04%), and the total bin and the layers' sum after scaling
    close = np.abs(sums / scale - target) <= width * target + 0.5 * counts / scale
    # an untrained model draws energies of a few ADC for a layer of many hits, which hold at least 1 each
    at_end = (hits["adc"] <= 1) | (hits["adc"] >= tok.ADC_BINNING.log.hi)
    reachable = tok.layer_sums(offsets, hits["layer"], at_end) == 0
    assert reachable.mean() > 0.5
    if rescale:
        assert layer_adc is not None and close[reachable].all()
    else:
        assert layer_adc is None and not close.all()


SHARED_SELECTION = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clas12-ecal" / "select5k_seed3001.h5"


@pytest.mark.skipif(not SHARED_SELECTION.exists(), reason="../shared/data/clas12-ecal is not beside this checkout")
def test_energy_first_training_from_the_shared_data_lowers_the_loss(tmp_path):
    """The shipped recipe's model (energy-first, layer-energy feature), tiny, on the shared Geant4
    selection sample read in place: 30 steps lower every cross-entropy, the layer energies' too."""
    cfg = TINY.format(steps=30, ckpt=10, batch=32, micro=32).replace(
        "dropout = 0.1", "dropout = 0.0\nenergy_first = true\nrescale_to_layer_energy = true"
    )
    cfg = cfg.replace("val_events = 24", "val_events = 64").replace("val_fraction = 0.1", "val_fraction = 0.02")
    (tmp_path / "cfg.toml").write_text(cfg + "\n[loss]\nsep_weight = 1.0\neos_weight = 1.0\noccupancy = 0.0\nlength = 0.0\ndistribution = 0.0\n")
    run = train(tmp_path / "cfg.toml", SHARED_SELECTION, tmp_path / "run")
    rows = log_rows(run)

    def mean(key: str, part: list[dict[str, str]]) -> float:
        return float(np.mean([float(r[key]) for r in part]))

    for key, drop in (("ce_energy", 0.5), ("ce_strip", 0.5), ("ce_adc", 0.5), ("loss", 3.0)):
        assert mean(key, rows[-3:]) < mean(key, rows[:3]) - drop, key
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    assert vals[-1] < vals[0] - 2.0
    assert io.load_model(run).config["data"]["n_events"] == 5000
