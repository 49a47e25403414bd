"""Training data of any family: a train/validation split and a deterministic batch order.

The order of training events is a function of (seed, epoch) only, so that a run resumed at any
step sees exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import numpy as np

from hitgen.core.errors import HitgenError

MIN_VALIDATION_EVENTS = 10


def split(data, val_fraction: float, seed: int):
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
