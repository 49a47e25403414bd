"""AllShowers in ONNX: the two velocity fields as graphs, and the backend that runs the same sampler
over them in ONNX Runtime.

- count_velocity.onnx: x (B, K), t (B,), cond (B, C) -> v (B, K)
- point_velocity.onnx: x (B, P, 3), t (B,), layer (B, P) int64, valid (B, P) bool, cond (B, C),
  stage (B, K) -> v (B, P, 3); the band mask is built inside the graph from layer and valid.

A C++ caller integrates exactly as hitgen.families.allshowers.sampler does: the first stage from
standard normals over t in [0, 1], then the points of each layer from standard normals, with the
model's standardisation (config.json "model" "stats") to go back to counts, mm and MeV; with a
"core_scale_mm" s > 0 the points' x, y are the standardised s asinh((x - entry) / s) ("core_stats":
their mean x, y and std x, y), so x = entry + s sinh(u / s); with "energy_reference" "layer" the
points' log E is standardised ("energy_stats": mean, std) log E - log((E_l + 0.01) / (n_l + 0.5)), E_l
and n_l the first stage's energy and count of the point's layer before rounding
(hitgen.families.allshowers.model)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hitgen.families.allshowers.model import N_COND, AllShowers, BandAttention

USAGE = (
    "integrate count_velocity from t = 0 to 1 starting at standard normals (K numbers), then point_velocity for the "
    "points of each layer (counts from the first stage), as hitgen.families.allshowers.sampler does"
)


class _Counts(nn.Module):
    def __init__(self, model: AllShowers) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, t, cond):
        return self.model.count_velocity(x, t, cond)


class _Points(nn.Module):
    def __init__(self, model: AllShowers) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, t, layer, valid, cond, stage):
        return self.model.point_velocity(x, t, layer, BandAttention(layer, valid, self.model.cfg.band), cond, stage)


def export_graphs(model: AllShowers, folder: Path, opset: int = 18) -> dict[str, dict[str, Any]]:
    """Write both graphs into folder, checked by onnx.checker; their descriptions by name."""
    import onnx

    model = model.eval().float()
    k, b, p = model.cfg.n_stage, 2, 5
    layer = torch.tensor([[0, 0, 1, 3, 3], [2, 2, 2, 2, 2]])
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    count_args = (torch.randn(b, k), torch.rand(b), torch.randn(b, N_COND))
    point_args = (torch.randn(b, p, 3), torch.rand(b), layer, valid, torch.randn(b, N_COND), torch.randn(b, k))
    point_names = ["x", "t", "layer", "valid", "cond", "stage"]
    point_axes = {n: {0: "B", 1: "P"} for n in ("x", "layer", "valid", "v")} | {n: {0: "B"} for n in ("t", "cond", "stage")}
    examples = {
        "count_velocity": (_Counts(model), count_args, ["x", "t", "cond"], {n: {0: "B"} for n in ("x", "t", "cond", "v")}),
        "point_velocity": (_Points(model), point_args, point_names, point_axes),
    }
    point_shapes = {"x": ["B", "P", 3], "t": ["B"], "layer": ["B", "P"], "valid": ["B", "P"], "cond": ["B", "C"], "stage": ["B", "K"]}
    shapes = {
        "count_velocity": ({"x": ["B", "K"], "t": ["B"], "cond": ["B", "C"]}, ["B", "K"]),
        "point_velocity": (point_shapes, ["B", "P", 3]),
    }
    out = {}
    for name, (module, args, names, axes) in examples.items():
        path = folder / f"{name}.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=["v"], dynamic_axes=axes, opset_version=opset)
        onnx.checker.check_model(str(path), full_check=True)
        dtypes = {"layer": "int64", "valid": "bool"}
        inputs, output = shapes[name]
        out[name] = {
            "file": path.name,
            "inputs": {n: {"shape": s, "dtype": dtypes.get(n, "float32")} for n, s in inputs.items()},
            "outputs": {"v": {"shape": output, "dtype": "float32"}},
            "sizes": {"K": k, "C": N_COND},
            "opset": opset,
        }
    return out


class OrtVelocities:
    """The two velocity fields in ONNX Runtime, with the model's own call signatures (the sampler
    calls model.backend's methods when one is attached)."""

    def __init__(self, files: dict[str, Path], threads: int | None = None) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.counts = ort.InferenceSession(str(files["count_velocity"]), so, providers=["CPUExecutionProvider"])
        self.points = ort.InferenceSession(str(files["point_velocity"]), so, providers=["CPUExecutionProvider"])

    @staticmethod
    def _np(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy())

    def count_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        feed = {"x": self._np(x.float()), "t": self._np(t.float()), "cond": self._np(cond.float())}
        return torch.from_numpy(self.counts.run(["v"], feed)[0])

    def point_velocity(self, x, t, layer, attention: BandAttention, cond, stage) -> torch.Tensor:
        feed = {
            "x": self._np(x.float()),
            "t": self._np(t.float()),
            "layer": self._np(layer.long()),
            "valid": self._np(attention.valid),
            "cond": self._np(cond.float()),
            "stage": self._np(stage.float()),
        }
        return torch.from_numpy(self.points.run(["v"], feed)[0])
