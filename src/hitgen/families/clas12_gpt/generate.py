"""The CLAS12 GPT's generation: one entry point over its three decoders (plain, static, naive),
which draw the same events from the per-event random streams."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.core import csr
from hitgen.families.base import SamplingOptions
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.engine import generate_static
from hitgen.families.clas12_gpt.model import HitGPT
from hitgen.families.clas12_gpt.sampler import generate_tokens
from hitgen.nn import streams

DECODERS = ("static", "plain", "naive")


def generate(
    model: HitGPT,
    momentum: np.ndarray,
    opts: SamplingOptions,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    first_event: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Generate one event per row of momentum (N, 3): returns (offsets, hits) in event order.

    Event i draws from the random stream of (seed, first_event + i): the output depends on the seed
    and the conditions, not on the batch size or the decoder (up to floating-point rounding of the
    logits, which differs between batch shapes only in the last bits)."""
    if opts.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS} (got {opts.decoder})")
    model = model.to(device).eval()
    n = len(momentum)
    keys = torch.as_tensor(streams.event_keys(opts.seed, first_event + np.arange(n)), device=device)
    m_all = torch.as_tensor(np.asarray(momentum), dtype=torch.float32, device=device)
    if opts.decoder == "static":
        return generate_static(model, m_all, keys, opts, progress)
    offsets_parts, hit_parts = [], []
    for lo in range(0, n, opts.batch_size):
        hi = min(lo + opts.batch_size, n)
        tokens = generate_tokens(model, m_all[lo:hi], keys[lo:hi], opts)
        offsets, hits = tok.decode_tokens(tokens, model.cfg.tdc_threshold_rule)
        offsets_parts.append(offsets)
        hit_parts.append(hits)
        if progress:
            progress(hi)
    return csr.concatenate(list(zip(offsets_parts, hit_parts, strict=True)))
