"""What the machine can do: the measured matmul peak that generation's FLOPs are compared with.

Each family counts its own FLOPs per generated event (``Family.flops_per_event``).
FLOPs count a multiply-add as 2 and include every matrix product of the forward pass (embedding
projection, attention projections, attention scores and values over the cached context,
feed-forward, and the output heads that generation evaluates: strip, TDC and one ADC head per hit,
the section's). Element-wise work (LayerNorm, softmax, sampling) is left out: it moves memory, it
does no matrix arithmetic.
"""

from __future__ import annotations

import statistics
import time

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: str, dtype: str, size: int | None = None, repeats: int = 5) -> float:
    """Measured FLOP/s of a square matrix product in this dtype: the median of `repeats` timed
    products after one warm-up (size 8192 on a GPU, 1024 on a CPU)."""
    dev = torch.device(device)
    n = size or (8192 if dev.type == "cuda" else 1024)
    a = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    b = torch.randn(n, n, device=dev, dtype=DTYPES[dtype])
    torch.matmul(a, b)
    _sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times)
