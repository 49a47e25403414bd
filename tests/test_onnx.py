"""ONNX export and the onnxruntime backend: the trunk graph computes what the PyTorch trunk computes
(prefill, decode over a partly filled cache, other batch sizes than the exported example), every
family draws the same events through ONNX Runtime as through PyTorch (the sameness guarantee of
tests/sameness.py: float32 kernels of two libraries sum in other orders), the shipped models export
from the command line and generate there, and every bad input gets one line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hitgen.core.events import EventSet
from hitgen.detectors.clas12_ecal import geometry as clas12_ecal
from hitgen.families import SamplingOptions
from hitgen.families.clas12_gpt.generate import generate
from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT
from hitgen.families.siliconai.data import SiliconAIData
from hitgen.families.siliconai.model import SiliconAI, SiliconAIConfig
from hitgen.families.siliconai.sampler import generate_siliconai
from hitgen.families.track_gpt.sampler import generate_tracks
from hitgen.models.io import load_model
from hitgen.nn.blocks import KVCache
from hitgen.nn.onnx import OrtTrunk, export_trunk
from sameness import assert_same_events

SMALL = GPTConfig(d_model=48, n_blocks=2, n_heads=4, d_ff=96, dropout=0.0, energy_first=True, rescale_to_layer_energy=True)


def on_onnxruntime(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    graph = export_trunk(model, folder / "trunk.onnx")
    model.trunk_backend = OrtTrunk(folder / "trunk.onnx", graph["sizes"])
    return model


def small_clas12() -> HitGPT:
    torch.manual_seed(1)
    model = HitGPT(SMALL).eval()
    with torch.no_grad():  # the layer-energy feature away from its zero initialisation
        torch.nn.init.normal_(model.layer_energy_mlp[-1].weight, std=0.5)
    return model


def test_trunk_graph_computes_the_torch_trunk(tmp_path):
    model = small_clas12()
    graph = export_trunk(model, tmp_path / "trunk.onnx")
    onnx.checker.check_model(str(tmp_path / "trunk.onnx"), full_check=True)
    assert graph["sizes"] == {"L": 2, "H": 4, "hd": 12, "d": 48}
    backend = OrtTrunk(tmp_path / "trunk.onnx", graph["sizes"])
    x = torch.randn(7, 21, 48)  # another batch and length than the exported example (2, 3)
    with torch.no_grad():
        full = model.trunk(x)  # no cache: causal attention over all 21 positions
        cache, ort_cache = KVCache(2), backend.new_cache()
        torch.testing.assert_close(backend.trunk(x), full, atol=1e-5, rtol=0)
        # a prefill of 11, then one position at a time: the cache grows past a chunk of 16 slots
        steps = [(0, 11)] + [(i, i + 1) for i in range(11, 21)]
        for lo, hi in steps:
            ref = model.trunk(x[:, lo:hi], cache)
            got = backend.trunk(x[:, lo:hi], ort_cache)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(ref, full[:, lo:hi], atol=1e-5, rtol=0)
        assert ort_cache.length == 21 and ort_cache.buffers[0].shape[2] == 32
        np.testing.assert_allclose(ort_cache.buffers[0][:, :, :21], cache.k[0][:, :, :21].numpy(), atol=1e-5)
        # rows dropped from the cache (finished events) keep their keys
        keep = torch.tensor([True, False, True, True, False, False, True])
        ort_cache.keep(keep)
        cache.keep(keep)
        nxt = torch.randn(4, 1, 48)
        torch.testing.assert_close(backend.trunk(nxt, ort_cache), model.trunk(nxt, cache), atol=1e-5, rtol=0)


@pytest.mark.parametrize("option", ["paper", "energy_first_rescaled"])
def test_clas12_gpt_draws_the_same_events_through_onnxruntime(tmp_path, option):
    model = small_clas12() if option != "paper" else HitGPT(dataclasses.replace(SMALL, energy_first=False, rescale_to_layer_energy=False)).eval()
    momentum = clas12_ecal.sample_conditions(40, np.random.default_rng(3))["momentum"]
    ref = generate(model, momentum, SamplingOptions(batch_size=16, seed=2))
    on_onnxruntime(model, tmp_path)
    assert_same_events(generate(model, momentum, SamplingOptions(batch_size=16, seed=2)), ref, "onnxruntime plain")
    assert_same_events(generate(model, momentum, SamplingOptions(batch_size=40, seed=2, decoder="naive")), ref, "onnxruntime naive")
    assert ref[0][-1] > 40 * 9  # long events: the equality is not trivial


@pytest.mark.geant4
def test_siliconai_and_the_track_gpt_draw_the_same_tracks_through_onnxruntime(tmp_path, odd_muons):
    muons = EventSet.read(odd_muons)
    cond = {k: v[:24] for k, v in muons.conditions.items()}
    data = SiliconAIData.from_events(muons)
    torch.manual_seed(0)
    silicon = SiliconAI(SiliconAIConfig(vocabulary=data.vocab.to_dict(), d_model=32, n_blocks=2, n_heads=4, d_ff=64, dropout=0.0)).eval()
    ref = generate_siliconai(silicon, cond, seed=3, batch_size=24)
    (tmp_path / "si").mkdir()
    on_onnxruntime(silicon, tmp_path / "si")
    assert_same_events(generate_siliconai(silicon, cond, seed=3, batch_size=24), ref, "siliconai onnxruntime")
    track = load_model("odd-tracker-gpt").model
    ref = generate_tracks(track, cond, seed=5, batch_size=24)
    (tmp_path / "trk").mkdir()
    on_onnxruntime(track, tmp_path / "trk")
    assert_same_events(generate_tracks(track, cond, seed=5, batch_size=24), ref, "track GPT onnxruntime", atol=1e-5)
    assert ref[0][-1] > 24 * 5


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    for name in ("clas12-ecal-gpt", "odd-tracker-gpt"):
        r = cli("export", name, "--format", "onnx", "--out", str(d / name))
        assert r.returncode == 0, r.stderr
    return d


def test_the_shipped_model_exports_and_generates_the_same_events(exported, tmp_path):
    d = exported / "clas12-ecal-gpt"
    manifest = json.loads((d / "manifest.json").read_text())
    loaded = load_model("clas12-ecal-gpt")
    assert manifest["weights_sha256"] == loaded.weights_sha256 and manifest["architecture"] == "clas12-gpt"
    assert [c["name"] for c in manifest["conditions"]] == ["momentum", "pdg"] and manifest["tokenizer"] == loaded.family.tokenizer
    trunk = manifest["graphs"]["trunk"]
    graph = onnx.load(str(d / trunk["file"]))
    onnx.checker.check_model(graph, full_check=True)
    assert [i.name for i in graph.graph.input] == list(trunk["inputs"]) and [o.name for o in graph.graph.output] == list(trunk["outputs"])
    assert len(trunk["inputs"]) == 2 + 2 * loaded.model.cfg.n_blocks
    out = {}
    for backend in ("torch", "onnxruntime"):
        extra = ("--onnx", str(d)) if backend == "onnxruntime" else ()
        r = cli(
            "generate",
            "clas12-ecal-gpt",
            "--events",
            "64",
            "--momentum-range",
            "0.5:10",
            "--seed",
            "4",
            "--out",
            str(tmp_path / f"{backend}.h5"),
            "--backend",
            backend,
            *extra,
        )
        assert r.returncode == 0, r.stderr
        out[backend] = EventSet.read(tmp_path / f"{backend}.h5")
    a, b = out["torch"], out["onnxruntime"]
    for k, v in a.conditions.items():
        np.testing.assert_array_equal(b.conditions[k], v)
    assert_same_events((b.offsets, b.hits), (a.offsets, a.hits), "shipped model, onnxruntime vs torch")
    assert b.notes["sampling"]["backend"] == "onnxruntime" and a.notes["sampling"]["backend"] == "torch"


def test_bad_exports_and_backends_give_one_line(exported, tmp_path, capsys):
    from test_bad_inputs import run_cli

    altered = tmp_path / "altered"
    altered.mkdir()
    for f in (exported / "clas12-ecal-gpt").iterdir():
        (altered / f.name).write_bytes(f.read_bytes())
    with open(altered / "trunk.onnx", "ab") as f:
        f.write(b"\0")
    out = tmp_path / "gen.h5"
    gen = ("generate", "clas12-ecal-gpt", "--events", "8", "--momentum-range", "1:2", "--out", str(out))
    cases = [
        ((*gen, "--backend", "onnxruntime", "--onnx", str(exported / "odd-tracker-gpt")), "exported from another model"),
        ((*gen, "--backend", "onnxruntime", "--onnx", str(altered)), "checksum differs from manifest.json"),
        ((*gen, "--backend", "onnxruntime", "--onnx", str(tmp_path)), "no manifest.json"),
        ((*gen, "--backend", "onnxruntime", "--dtype", "bf16"), "runs fp32 on the CPU"),
        ((*gen, "--backend", "onnxruntime", "--decoder", "static"), "plain or naive decoder"),
        ((*gen, "--backend", "tensorrt"), "--backend must be one of"),
        ((*gen, "--onnx", str(exported / "clas12-ecal-gpt")), "--onnx applies to --backend onnxruntime"),
        (("export", "clas12-ecal-gpt", "--format", "torchscript", "--out", str(tmp_path / "x")), "--format must be onnx"),
        (("export", "clas12-ecal-gpt", "--out", str(exported / "clas12-ecal-gpt")), "exists"),
    ]
    for args, fragment in cases:  # in this process (hitgen.cli.main), as tests/test_bad_inputs.py runs its table
        code, err = run_cli(list(args), capsys)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (args, err)
        assert not out.exists() and not (tmp_path / "x").exists()
    # onnxruntime not installed: a Python where importing it fails
    code = "import sys; sys.modules['onnxruntime'] = None; from hitgen.cli import main; sys.argv = ['hitgen', *sys.argv[1:]]; main()"
    r = subprocess.run([sys.executable, "-c", code, *gen, "--backend", "onnxruntime"], capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "pip install 'hitgen[onnx]'" in lines[0], r.stderr
    assert not out.exists()
