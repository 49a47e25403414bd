"""The foundation model's trunk as ONNX graphs, one per route, and the backend that runs them.

Routing is fixed by the condition, so each (particle, material) the model serves is one plain
transformer: the shared attention (with that particle's LoRA adapter merged into the projections,
W + scale B A, where it has one) and that route's expert feed-forward. `hitgen export MODEL --format
onnx` writes one graph per route, `trunk_<particle>-<material>.onnx`, with the key-value cache as
explicit inputs and outputs, in the contract of hitgen.nn.onnx (inputs x, past_mask, past_k_i,
past_v_i; outputs h, new_k_i, new_v_i; prefill with C = 0, decode with t = 1). The rotary positions
are not an input: a new position's index is the number of written past slots plus its offset, as the
cache is filled from slot 0 on. Embeddings, the prefix and the heads stay with the caller (the
sampler in PyTorch), as for the other families; showers of one route are generated together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hitgen.families.calo_moe.model import CaloMoE, rotate
from hitgen.families.calo_moe.tokens import EXPERT_KEYS
from hitgen.nn.onnx import OrtTrunk, cached_attention, export_cached_graph


def routes(model: CaloMoE) -> list[str]:
    """Every (particle, material) key the model serves."""
    return [k for k in EXPERT_KEYS if model.expert_of(k) is not None]


def _merged(layer: nn.Module, adapter: str | None) -> nn.Linear:
    """A plain Linear of a projection (a peft LoRA layer: its base, with the adapter merged)."""
    base = getattr(layer, "base_layer", layer)
    out = nn.Linear(base.in_features, base.out_features)
    with torch.no_grad():
        weight = base.weight.detach().clone()
        if adapter is not None and hasattr(layer, "lora_A") and adapter in layer.lora_A:
            weight += layer.scaling[adapter] * layer.lora_B[adapter].weight @ layer.lora_A[adapter].weight
        out.weight.copy_(weight)
        out.bias.copy_(base.bias.detach())
    return out


class RouteGraph(nn.Module):
    """The trunk of one route with the cache as explicit inputs and outputs."""

    def __init__(self, model: CaloMoE, key: str) -> None:
        super().__init__()
        adapter = model.adapter_of(key)
        self.blocks = model.blocks
        self.ffn = model.experts[model.expert_of(key)].ffn
        self.qkv = nn.ModuleList(_merged(b.qkv, adapter) for b in model.blocks)
        self.proj = nn.ModuleList(_merged(b.proj, adapter) for b in model.blocks)
        self.ln_f = model.ln_f

    def forward(self, x: torch.Tensor, past_mask: torch.Tensor, *past: torch.Tensor):
        b, t, d = x.shape
        start = (~past_mask).sum()
        positions = start + torch.arange(t, device=x.device)
        future = ~torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        new = []
        for i, block in enumerate(self.blocks):
            past_k, past_v = past[2 * i], past[2 * i + 1]
            hd = d // block.n_heads
            q, k, v = self.qkv[i](block.ln1(x)).view(b, t, 3, block.n_heads, hd).permute(2, 0, 3, 1, 4)
            q, k = rotate(q, positions, block.n_rot, block.base), rotate(k, positions, block.n_rot, block.base)
            new += [k, v]
            y = cached_attention(q, k, v, past_k, past_v, past_mask, future)
            x = x + self.proj[i](y.transpose(1, 2).reshape(b, t, d))
            x = x + self.ffn[i](block.ln2(x))
        return (self.ln_f(x), *new)


def export_graphs(model: CaloMoE, folder: Path, opset: int = 18) -> dict[str, dict[str, Any]]:
    cfg = model.cfg
    sizes = {"n_blocks": cfg.n_blocks, "n_heads": cfg.n_heads, "head_dim": cfg.d_model // cfg.n_heads, "d_model": cfg.d_model}
    out = {}
    for key in routes(model):
        path = folder / f"trunk_{key}.onnx"
        out[f"trunk_{key}"] = {"file": path.name, "route": key, **export_cached_graph(RouteGraph(model, key), path, sizes, opset)}
    return out


def attach(model: CaloMoE, files: dict[str, Path]) -> None:
    """Run the model's trunk in ONNX Runtime: one session per route (graphs named trunk_<route>)."""
    cfg = model.cfg
    sizes = {"L": cfg.n_blocks, "H": cfg.n_heads, "hd": cfg.d_model // cfg.n_heads, "d": cfg.d_model}
    model.ort = {name.removeprefix("trunk_"): OrtTrunk(path, sizes) for name, path in files.items()}
