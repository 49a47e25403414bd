"""Per-event random streams: the uniform number of every draw is a function of (seed, event, draw).

An event's tokens then depend only on its seed, its index and its conditions, not on the batch
size, the order in which a continuous batch takes events up, the process that generates it, or the
code path (plain loop, static cache, naive recomputation). torch has no per-row generator, and
one torch.Generator per event costs a Python call per row and step; instead the uniforms come from
a counter-based hash (the construction of Random123 and of JAX's PRNG, here with a small integer
hash): every number is hash(key of the event, counter of the draw), computed for a whole batch in
a few vectorised integer operations on any device.

The mixing function is "lowbias32" (32-bit xor-shift-multiply, multipliers 0x7feb352d and
0x846ca68b, C. Wellons' hash-prospector), applied in int64 arithmetic masked to 32 bits: a product
of two 32-bit numbers may pass 2**63 and wrap, which leaves its low 32 bits exact; a test checks
every function against an unsigned numpy reference. Keys are two 32-bit words per event (64 bits, so
that events of one seed practically never share a stream); a uniform takes 53 bits from two hashes.
"""

from __future__ import annotations

import numpy as np
import torch

MASK32 = 0xFFFFFFFF
_M1, _M2 = 0x7FEB352D, 0x846CA68B
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: spreads consecutive inputs before mixing

# draws of one token position: the counter of stream s at token position t is N_STREAMS * t + s
STRIP, ADC, TDC, ADC_FINE, TDC_FINE = 0, 1, 2, 3, 4  # the fine draws of factorised value heads
N_STREAMS = 5


def mix32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 of int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & MASK32
    return x ^ (x >> 16)


def mix32_numpy(x: np.ndarray) -> np.ndarray:
    """The same function in unsigned 64-bit numpy arithmetic (the reference of the tests)."""
    x = x.astype(np.uint64)
    m = np.uint64(MASK32)
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(_M1)) & m
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(_M2)) & m
    return x ^ (x >> np.uint64(16))


def event_keys(seed: int, events: np.ndarray) -> np.ndarray:
    """Keys (N, 2) int64 of the given event indices under a seed (any non-negative int < 2**64)."""
    e = np.asarray(events, dtype=np.uint64)
    m = np.uint64(MASK32)
    s_lo, s_hi = np.uint64(seed & MASK32), np.uint64((seed >> 32) & MASK32)
    e_lo, e_hi = e & m, e >> np.uint64(32)
    g = np.uint64(_GOLDEN)
    k1 = mix32_numpy(mix32_numpy(mix32_numpy(s_lo ^ g) ^ s_hi) ^ e_lo)
    k1 = mix32_numpy(k1 ^ mix32_numpy(e_hi))
    k2 = mix32_numpy(mix32_numpy(k1 ^ ((s_hi + g) & m)) ^ ((e_lo * g) & m))
    return np.stack([k1, k2], axis=1).astype(np.int64)


def uniforms(keys: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """Uniform float64 numbers in [0, 1), one per row: keys (B, 2) int64, counter (B,) or () int64."""
    k1, k2 = keys[:, 0], keys[:, 1]
    c = (counter * 2) & MASK32
    a = mix32(k1 ^ mix32(k2 ^ c))
    b = mix32(k1 ^ mix32(k2 ^ (c + 1)))
    return ((a >> 5) * 67108864 + (b >> 6)).double() * (1.0 / 9007199254740992.0)  # (27 + 26 bits) / 2**53


def uniforms_from(keys: torch.Tensor, first: torch.Tensor | int, n: int) -> torch.Tensor:
    """(B, n) the uniforms of counters first .. first + n - 1 of every row (first: (B,) or one for all),
    in one call: the same numbers as n calls of uniforms."""
    counters = (torch.as_tensor(first, device=keys.device).reshape(-1, 1) + torch.arange(n, device=keys.device)).expand(len(keys), n)
    return uniforms(keys.repeat_interleave(n, 0), counters.reshape(-1)).view(len(keys), n)


def draw_uniforms(keys: torch.Tensor, position: torch.Tensor, stream: int) -> torch.Tensor:
    """The uniform of `stream` at token `position` (B,) of every row's event."""
    return uniforms(keys, position * N_STREAMS + stream)
