"""Transformer parts every family may use: GPT-2 initialisation, the pre-norm causal block, the
growing key-value cache and the one-query attention of a decode step."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def init_weights(m: nn.Module) -> None:
    """GPT-2's initialisation of linear maps and embeddings, shared by hitgen's GPTs."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)


class Block(nn.Module):
    """Pre-norm transformer block with causal self-attention (optionally over a KV cache).

    cfg: any configuration with d_model, n_heads, d_ff and dropout."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout

    def attention(self, x: torch.Tensor, cache: KVCache | None, index: int) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            y = cache.attend(index, q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, index: int = 0) -> torch.Tensor:
        x = x + self.drop(self.attention(self.ln1(x), cache, index))
        return x + self.drop(self.ff(self.ln2(x)))


def attend_one(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Attention of one new query per row, q (B, heads, 1, head dim), over contiguous key and value
    buffers (B, heads, capacity, head dim) without the positions `masked` (broadcast to (B, heads,
    1, capacity); buffers hold finite values there). Scores and softmax in float32; under bf16 the
    products round the scores to bf16 first, as eager attention does in bf16 inference."""
    scores = torch.matmul(q, keys.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    weights = torch.softmax(scores.masked_fill(masked, float("-inf")), dim=-1)
    return torch.matmul(weights.to(values.dtype), values)


class KVCache:
    """Keys and values of every block for a batch of sequences, grown one step at a time.

    Each block's keys and values live in one contiguous buffer (batch, heads, capacity, head dim)
    that grows by CHUNK positions when full, zeros past the positions written. A new position
    attends to the whole buffer with the unwritten positions masked out. Measured on 2 CPU cores
    (paper-size model, batch 512, bf16): concatenating every step copied the whole cache per block
    and step (46% of generation time), and attention over a view of the written positions of a
    larger buffer (not contiguous) ran 4x slower than over a contiguous buffer; scaled_dot_product_
    attention for one query was 4x slower than two matrix products and a softmax (3.2 vs 13.7 ms for
    512 x 8 heads x 50 positions).

    The cache protocol of Block: attend(index, q, k, v) stores the new keys and values of block
    `index` and returns the attention output of the new queries (the static cache of the generation
    engine, hitgen.families.clas12_gpt.engine, implements the same call)."""

    CHUNK = 16

    def __init__(self, n_blocks: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * n_blocks
        self.v: list[torch.Tensor | None] = [None] * n_blocks
        self.length = [0] * n_blocks  # positions written, per block

    @classmethod
    def grown(cls, buffer: torch.Tensor | None, like: torch.Tensor, rows: int, needed: int, limit: int | None = None) -> torch.Tensor:
        """`buffer` (rows, heads, capacity, head dim) if it holds `needed` positions; else a buffer of
        zeros in the dtype of `like` whose capacity is `needed` rounded up to CHUNK (at most `limit`),
        holding buffer's contents: the one growth step of this cache and of the engine's."""
        if buffer is not None and buffer.shape[2] >= needed:
            return buffer
        capacity = -(-needed // cls.CHUNK) * cls.CHUNK
        out = like.new_zeros((rows, like.shape[1], capacity if limit is None else min(capacity, limit), like.shape[3]))
        if buffer is not None:
            out[:, :, : buffer.shape[2]] = buffer
        return out

    def update(self, index: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys and values (B, heads, t, head dim); the buffers (B, heads, capacity, head dim)."""
        start, end = self.length[index], self.length[index] + k.shape[2]
        self.k[index] = self.grown(self.k[index], k, len(k), end)
        self.v[index] = self.grown(self.v[index], v, len(v), end)
        self.k[index][:, :, start:end] = k
        self.v[index][:, :, start:end] = v
        self.length[index] = end
        return self.k[index], self.v[index]

    def attend(self, index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.shape[2] > 1:  # prefill from position 0: plain causal attention among the new inputs
            self.update(index, k, v)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        keys, values = self.update(index, k, v)  # one new position attends to everything written
        return attend_one(q, keys, values, torch.arange(keys.shape[2], device=keys.device) >= self.length[index])

    def cast(self, dtype: torch.dtype) -> None:
        """Hold the keys and values written so far in this dtype (after a lead computed in fp32 under
        bf16 autocast, so the positions that follow share one dtype)."""
        self.k = [None if k is None else k.to(dtype) for k in self.k]
        self.v = [None if v is None else v.to(dtype) for v in self.v]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (a boolean mask or indices), e.g. when sequences finish."""
        self.k = [None if k is None else k[rows] for k in self.k]
        self.v = [None if v is None else v[rows] for v in self.v]


def trunk_forward(model: nn.Module, x: torch.Tensor, cache: Any = None) -> torch.Tensor:
    """A GPT's trunk: its `blocks` (Block) over the embeddings x (B, t, d), then its `ln_f`; with a
    cache, x are the positions after those cached. A model whose `trunk_backend` is set (an ONNX
    Runtime session, hitgen.nn.onnx.OrtTrunk) runs the trunk there instead, with that backend's cache."""
    backend = model.__dict__.get("trunk_backend")
    if backend is not None:
        return backend.trunk(x, cache)
    for i, block in enumerate(model.blocks):
        x = block(x, cache, i)
    return model.ln_f(x)


def new_cache(model: nn.Module) -> Any:
    """An empty key-value cache for the trunk of `model`: a KVCache, or its trunk backend's own."""
    backend = model.__dict__.get("trunk_backend")
    return backend.new_cache() if backend is not None else KVCache(len(model.blocks))


def check_config(cfg: Any, positive: tuple[str, ...] = ()) -> None:
    """A trunk configuration that can be built: positive sizes, heads that divide d_model, a dropout
    in [0, 1), and the further `positive` fields above zero. ValueError saying which field is wrong."""
    for name in ("d_model", "n_blocks", "n_heads", "d_ff", *positive):
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be a positive number (got {value!r})")
    if cfg.d_model % cfg.n_heads:
        raise ValueError(f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
    if not 0 <= cfg.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (got {cfg.dropout!r})")
