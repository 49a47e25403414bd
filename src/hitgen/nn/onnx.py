"""The transformer trunk as an ONNX graph, and the trunk backend that runs it in ONNX Runtime.

Every hitgen GPT has the same trunk: pre-norm causal blocks (hitgen.nn.blocks.Block) and a final
LayerNorm, called through `trunk_forward`. `TrunkGraph` is that trunk with the key-value cache as
explicit inputs and outputs, one graph for the prefill and for the one-step decode:

    inputs   x            (B, t, d)      float32  embeddings of the t new positions
             past_mask    (C,)           bool     true where a buffer slot is not (yet) a position
             past_k_i     (B, H, C, hd)  float32  keys of block i for the positions before them (C >= 0)
             past_v_i     (B, H, C, hd)  float32  values of block i
    outputs  h            (B, t, d)      float32  hidden states after the final LayerNorm
             new_k_i      (B, H, t, hd)  float32  keys of block i of the new positions, to append to the cache
             new_v_i      (B, H, t, hd)  float32

A prefill is a call with C = 0; a decode step one with t = 1. The past is a buffer that the caller
owns and appends to (here OrtCache, growing by KVCache.CHUNK slots): the graph never copies the
cache, it reads it: one input per block and kind (a single (L, B, H, C, hd) input was split into
its blocks by a copy of the whole cache at every step, 40 of 77 ms per step at batch 1024), and the
attention of the new queries is computed over the past and over the new keys separately and joined
in one softmax, with no concatenation of the cache (which in PyTorch cost 46% of generation time
when the cache was concatenated every step; docs/performance.md).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hitgen.nn.blocks import KVCache


def input_names(n_blocks: int) -> list[str]:
    return ["x", "past_mask", *(f"past_{kind}_{i}" for i in range(n_blocks) for kind in "kv")]


def output_names(n_blocks: int) -> list[str]:
    return ["h", *(f"new_{kind}_{i}" for i in range(n_blocks) for kind in "kv")]


def trunk_shape(model: nn.Module) -> dict[str, int]:
    """Blocks, heads, head size and width of a model's trunk."""
    block = model.blocks[0]
    d = block.qkv.in_features
    return {"n_blocks": len(model.blocks), "n_heads": block.n_heads, "head_dim": d // block.n_heads, "d_model": d}


def cached_attention(q, k, v, past_k, past_v, past_mask, future) -> torch.Tensor:
    """Attention of the new queries over the past (without its masked slots) and over the new keys
    (causally), joined in one softmax without concatenating the cache (module docstring)."""
    c = past_k.shape[2]
    scale = q.shape[-1] ** -0.5
    old = (torch.matmul(q, past_k.transpose(-1, -2)) * scale).masked_fill(past_mask, float("-inf"))
    own = (torch.matmul(q, k.transpose(-1, -2)) * scale).masked_fill(future, float("-inf"))
    w = torch.softmax(torch.cat([old, own], dim=-1), dim=-1)
    return torch.matmul(w[..., :c], past_v) + torch.matmul(w[..., c:], v)


class TrunkGraph(nn.Module):
    """The trunk of `model` (its `blocks` and `ln_f`) with the cache as explicit inputs and outputs
    (module docstring); the same function as trunk_forward with a KVCache, in eval mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.blocks, self.ln_f = model.blocks, model.ln_f

    def forward(self, x: torch.Tensor, past_mask: torch.Tensor, *past: torch.Tensor):
        b, t, d = x.shape
        future = ~torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        new = []
        for i, block in enumerate(self.blocks):
            past_k, past_v = past[2 * i], past[2 * i + 1]
            hd = d // block.n_heads
            q, k, v = block.qkv(block.ln1(x)).view(b, t, 3, block.n_heads, hd).permute(2, 0, 3, 1, 4)
            new += [k, v]
            y = cached_attention(q, k, v, past_k, past_v, past_mask, future)
            x = x + block.proj(y.transpose(1, 2).reshape(b, t, d))
            x = x + block.ff(block.ln2(x))
        return (self.ln_f(x), *new)


def export_cached_graph(graph: nn.Module, path: Path, s: dict[str, int], opset: int = 18) -> dict[str, Any]:
    """Write `graph` (eval mode, float32), a module with the signature of TrunkGraph (x, past_mask,
    past_k_0, past_v_0, ...) -> (h, new_k_0, new_v_0, ...), for a trunk of the sizes `s` (trunk_shape)
    to `path`, checked by onnx.checker; returns the graph's input and output description."""
    import onnx

    n = s["n_blocks"]
    b, t, c = 2, 3, 4
    x = torch.randn(b, t, s["d_model"])
    mask = torch.arange(c) >= 2
    past = [torch.randn(b, s["n_heads"], c, s["head_dim"]) for _ in range(2 * n)]
    names_in, names_out = input_names(n), output_names(n)
    axes = {"x": {0: "B", 1: "t"}, "past_mask": {0: "C"}, "h": {0: "B", 1: "t"}}
    axes |= {name: {0: "B", 2: "C"} for name in names_in[2:]} | {name: {0: "B", 2: "t"} for name in names_out[1:]}
    # the TorchScript exporter: 1.2 s for the shipped CLAS12 trunk where torch.export (dynamo=True)
    # took 15-23 s for the same graph, and as fast in ONNX Runtime (37.8 vs 35.8 ms per step in
    # PyTorch, batch 1024, 64 cached positions, AVX2-only AMD EPYC); its warnings are about the
    # shapes it traces, which are dynamic here (checked against PyTorch at other shapes by tests/test_onnx.py)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph.eval().float(), (x, mask, *past), str(path), dynamo=False, input_names=names_in, output_names=names_out,
            dynamic_axes=axes, opset_version=opset,
        )  # fmt: skip
    onnx.checker.check_model(str(path), full_check=True)
    inputs = {"x": {"shape": ["B", "t", "d"], "dtype": "float32"}, "past_mask": {"shape": ["C"], "dtype": "bool"}}
    outputs = {"h": {"shape": ["B", "t", "d"], "dtype": "float32"}}
    for i in range(n):
        for kind in "kv":
            inputs[f"past_{kind}_{i}"] = {"shape": ["B", "H", "C", "hd"], "dtype": "float32"}
            outputs[f"new_{kind}_{i}"] = {"shape": ["B", "H", "t", "hd"], "dtype": "float32"}
    sizes = {"L": n, "H": s["n_heads"], "hd": s["head_dim"], "d": s["d_model"]}
    return {"inputs": inputs, "outputs": outputs, "sizes": sizes, "opset": opset}


def export_trunk(model: nn.Module, path: Path, opset: int = 18) -> dict[str, Any]:
    """Write the trunk graph of `model` to `path` (export_cached_graph)."""
    return export_cached_graph(TrunkGraph(model), path, trunk_shape(model), opset)


class OrtTrunk:
    """The trunk backend of a model whose trunk runs in ONNX Runtime (set as model.trunk_backend;
    trunk_forward dispatches to it). float32 only; the CPU execution provider with torch's thread count."""

    def __init__(self, path: Path, sizes: dict[str, int], threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:  # ONNX Runtime's threads spin after each run by default, on the cores PyTorch's heads and sampler need next
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.sizes = sizes
        self.inputs, self.outputs = input_names(sizes["L"]), output_names(sizes["L"])

    def run(self, x: torch.Tensor, past_mask: np.ndarray, past: list[np.ndarray]) -> list[np.ndarray]:
        """h and the new keys and values of every block (output_names' order)."""
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise RuntimeError(f"the onnxruntime backend runs float32 on the CPU (got {x.dtype} on {x.device})")
        feed = {"x": np.ascontiguousarray(x.detach().numpy()), "past_mask": past_mask}
        feed |= dict(zip(self.inputs[2:], past, strict=True))
        return self.session.run(self.outputs, feed)

    def empty_past(self, rows: int) -> list[np.ndarray]:
        s = self.sizes
        empty = np.zeros((rows, s["H"], 0, s["hd"]), dtype=np.float32)
        return [empty] * (2 * s["L"])

    def trunk(self, x: torch.Tensor, cache: Any = None) -> torch.Tensor:
        """Hidden states (B, t, d) of x: without a cache, the causal trunk over x alone."""
        if cache is not None:
            return cache.step(x)
        return torch.from_numpy(self.run(x, np.zeros(0, dtype=bool), self.empty_past(len(x)))[0])

    def new_cache(self) -> OrtCache:
        return OrtCache(self)


class OrtCache:
    """The key-value cache of the ONNX Runtime trunk: a buffer per block and kind (B, H, capacity,
    hd) grown by KVCache.CHUNK slots, the slots from `length` on masked. The calls the samplers make
    of a KVCache: the trunk step (through trunk_forward), keep and cast."""

    def __init__(self, backend: OrtTrunk) -> None:
        self.backend = backend
        self.buffers: list[np.ndarray] | None = None  # past_k_0, past_v_0, past_k_1, ...
        self.length = 0

    @staticmethod
    def _grown(buffer: np.ndarray, needed: int) -> np.ndarray:
        if buffer.shape[2] >= needed:
            return buffer
        capacity = -(-needed // KVCache.CHUNK) * KVCache.CHUNK
        out = np.zeros((*buffer.shape[:2], capacity, buffer.shape[3]), dtype=np.float32)
        out[:, :, : buffer.shape[2]] = buffer
        return out

    def step(self, x: torch.Tensor) -> torch.Tensor:
        rows, t = x.shape[0], x.shape[1]
        past = self.buffers or self.backend.empty_past(rows)
        h, *new = self.backend.run(x, np.arange(past[0].shape[2]) >= self.length, past)
        end = self.length + t
        self.buffers = [self._grown(buffer, end) for buffer in past]
        for buffer, values in zip(self.buffers, new, strict=True):
            buffer[:, :, self.length : end] = values
        self.length = end
        return torch.from_numpy(h)

    def keep(self, rows: torch.Tensor) -> None:
        index = rows.cpu().numpy()
        if self.buffers is not None:
            self.buffers = [buffer[index] for buffer in self.buffers]

    def cast(self, dtype: torch.dtype) -> None:
        if dtype != torch.float32:
            raise RuntimeError("the onnxruntime backend runs float32 only")
