"""`hitgen bench`: naive decoding samples what the KV cache samples, FLOPs by hand, the JSON
contract, bad inputs in one line, and a GPU run where a GPU exists. No timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hitgen.benchmark.roofline import matmul_peak_flops
from hitgen.benchmark.run import bench
from hitgen.cli import app
from hitgen.core.errors import HitgenError
from hitgen.detectors.clas12_ecal import geometry as clas12_ecal
from hitgen.families.clas12_gpt.flops import flops_per_event
from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT
from hitgen.models.io import save_model_dir

SMALL = GPTConfig(d_model=24, n_blocks=2, n_heads=2, d_ff=48, dropout=0.0)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """An untrained small model in a model folder: random strips fill the layers, long sequences."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bench") / "model"
    record = {"detector_spec": clas12_ecal.INFO.spec(), "data": {"momentum_range_gev": [0.5, 10.0]}}
    return save_model_dir(folder, HitGPT(SMALL), "clas12-gpt", record)


def test_flops_per_event_by_hand():
    cfg = GPTConfig(d_model=6, n_blocks=1, n_heads=1, d_ff=12, n_prefix=2, strip_vocab=5, adc_vocab=7, tdc_vocab=3)
    # T = 4 (SOS, two hits, EOS): trunk positions 2 + 1 + 2 = 5; context 1+2+3+4+5 = 15; heads at 3 positions
    per_position = 2 * (4 * 36 + 2 * 6 * 12)
    expected = 5 * per_position + 3 * (2 * 36 + 2 * 6 * (5 + 7 + 3)) + 15 * 2 * 2 * 6
    assert flops_per_event(cfg, np.array([4])) == pytest.approx(expected)
    assert flops_per_event(cfg, np.array([4, 4])) == pytest.approx(expected)


def test_matmul_peak_is_a_measured_rate():
    peak = matmul_peak_flops("cpu", "fp32", size=128, repeats=3)
    assert np.isfinite(peak) and peak > 0


@pytest.mark.geant4
def test_bench_writes_the_json_contract(model_folder, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", str(model_folder), "--events", "8", "--batch-sizes", "2,4", "--repeats", "1", "--geant4-events", "6", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    for key in ("geant4_events_per_s", "model_events_per_s", "speedup_vs_geant4", "naive_events_per_s", "speedup_vs_naive", "flops_per_event"):
        assert r[key] > 0, key
    assert 0 < r["roofline_fraction"] < 1
    assert [b["batch_size"] for b in r["per_batch"]] == [2, 4] and all(b["events"] == 8 for b in r["per_batch"])
    assert r["machine"]["cores"] >= 1 and r["machine"]["torch"] == torch.__version__
    assert r["model_events_per_s"] == max(b["events_per_s"] for b in r["per_batch"])
    assert r["speedup_vs_geant4"] == pytest.approx(r["model_events_per_s"] / r["geant4_events_per_s"])
    assert r["geant4"]["workers"] >= 1 and r["geant4"]["events"] == 6


def test_bad_inputs_give_one_line(model_folder, capsys):
    from test_bad_inputs import run_cli

    cases = [
        (["--geant4-events", "0", "--dtype", "fp16"], "--dtype must be one of"),
        (["--geant4-events", "0", "--batch-sizes", "4,x"], "malformed --batch-sizes"),
        (["--geant4-events", "0", "--batch-sizes", "0"], "must be positive"),
        (["--backend", "onnxruntime", "--processes", "2"], "--processes applies to the torch backend"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA GPU"))
    for args, words in cases:  # in this process, as tests/test_bad_inputs.py runs its table
        code, err = run_cli(["bench", str(model_folder), *args], capsys)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, err)
    with pytest.raises(HitgenError, match="no model folder"):
        bench("no-such-model")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_on_the_gpu(model_folder):
    r = bench(str(model_folder), events=64, batch_sizes=(16, 64), device="cuda", dtype="bf16", repeats=1, geant4_events=0)
    assert r["machine"]["gpu"] and r["model_events_per_s"] > 0 and r["per_batch"][0]["peak_memory_bytes"] > 0
