"""Tokenised training data: a train/validation split and a deterministic batch order.

The order of training events is a function of (seed, epoch) only, so that a run resumed at any
step sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.errors import HitgenError
from hitgen.events import EventSet
from hitgen.tokenizers import clas12_ecal as tok

STREAMS = ("strip", "adc", "tdc", "layer", "rank")
MIN_VALIDATION_EVENTS = 10


@dataclass
class TokenData:
    tokens: dict[str, np.ndarray]  # (N, T) int16/int8 per stream
    length: np.ndarray  # (N,)
    momentum: np.ndarray  # (N, 3) float32

    def __len__(self) -> int:
        return len(self.length)

    @classmethod
    def from_events(cls, events: EventSet) -> TokenData:
        if events.detector != "clas12-ecal":
            raise HitgenError(f"training needs a clas12-ecal event file, not {events.detector}")
        b = tok.encode(events.offsets, events.hits)
        return cls({k: getattr(b, k) for k in STREAMS}, b.length, events.conditions["momentum"].astype(np.float32))

    def subset(self, idx: np.ndarray) -> TokenData:
        return TokenData({k: v[idx] for k, v in self.tokens.items()}, self.length[idx], self.momentum[idx])

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors for events idx, trimmed to the longest sequence among them."""
        t = int(self.length[idx].max())
        out = {k: torch.from_numpy(v[idx, :t].astype(np.int64)) for k, v in self.tokens.items()}
        out["momentum"] = torch.from_numpy(self.momentum[idx])
        return out


def split(data: TokenData, val_fraction: float, seed: int) -> tuple[TokenData, TokenData]:
    """A fixed random split; raises HitgenError if the validation part would be too small."""
    n_val = int(round(len(data) * val_fraction))
    if n_val < MIN_VALIDATION_EVENTS or len(data) - n_val < MIN_VALIDATION_EVENTS:
        raise HitgenError(
            f"training file too small: {len(data)} events give {n_val} for validation at val_fraction {val_fraction} "
            f"(need at least {MIN_VALIDATION_EVENTS} on each side)"
        )
    order = np.random.default_rng([seed, 7]).permutation(len(data))
    return data.subset(np.sort(order[n_val:])), data.subset(np.sort(order[:n_val]))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 11, epoch]).permutation(n)


def global_batch(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Event indices of the optimiser step `step` (0-based): full batches only, epochs reshuffled."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise HitgenError(f"training split has {n} events, fewer than one batch of {batch_size}")
    epoch, k = divmod(step, per_epoch)
    return epoch_order(n, seed, epoch)[k * batch_size : (k + 1) * batch_size]
