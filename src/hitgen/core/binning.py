"""Value binnings for token streams: linear, logarithmic and hybrid (linear then logarithmic).

Each maps values to bin indices 0..n_bins-1 (clipping outside its range) and decodes an index to
a representative value: the arithmetic midpoint of a linear bin, the geometric mean of a log bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearBinning:
    lo: float
    hi: float
    n_bins: int

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, self.n_bins + 1)

    def encode(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        k = np.floor((x - self.lo) / (self.hi - self.lo) * self.n_bins).astype(np.int64)
        return np.clip(k, 0, self.n_bins - 1)  # the upper edge belongs to the last bin

    def decode(self, index: np.ndarray) -> np.ndarray:
        k = np.asarray(index, dtype=np.float64)
        return self.lo + (k + 0.5) * (self.hi - self.lo) / self.n_bins


@dataclass(frozen=True)
class LogBinning:
    lo: float
    hi: float
    n_bins: int

    @property
    def edges(self) -> np.ndarray:
        return np.geomspace(self.lo, self.hi, self.n_bins + 1)

    def encode(self, values: np.ndarray) -> np.ndarray:
        x = np.maximum(np.asarray(values, dtype=np.float64), self.lo)
        k = np.floor(np.log(x / self.lo) / np.log(self.hi / self.lo) * self.n_bins).astype(np.int64)
        return np.clip(k, 0, self.n_bins - 1)

    def decode(self, index: np.ndarray) -> np.ndarray:
        return self.at(np.asarray(index, dtype=np.float64), 0.5)  # geometric mean of the edges

    def at(self, index, place):
        """The value at `place` in [0, 1) on the log scale within bin `index` (numpy arrays or
        float64 torch tensors: arithmetic only)."""
        return self.lo * (self.hi / self.lo) ** ((index + place) / self.n_bins)


@dataclass(frozen=True)
class HybridBinning:
    """Linear bins over [lo, split], then log bins over (split, hi]."""

    linear: LinearBinning
    log: LogBinning

    @property
    def n_bins(self) -> int:
        return self.linear.n_bins + self.log.n_bins

    def encode(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        return np.where(x <= self.linear.hi, self.linear.encode(x), self.linear.n_bins + self.log.encode(x))

    def decode(self, index: np.ndarray) -> np.ndarray:
        k = np.asarray(index, dtype=np.int64)
        n = self.linear.n_bins
        return np.where(k < n, self.linear.decode(np.minimum(k, n - 1)), self.log.decode(np.maximum(k - n, 0)))


@dataclass(frozen=True)
class SignedBinning:
    """A magnitude binning mirrored around zero: negative values take indices n-1 .. 0 (growing
    magnitude downwards), non-negative ones n .. 2n-1, for n = magnitude.n_bins."""

    magnitude: HybridBinning

    @property
    def n_bins(self) -> int:
        return 2 * self.magnitude.n_bins

    def encode(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        k = self.magnitude.encode(np.abs(x))
        n = self.magnitude.n_bins
        return np.where(x >= 0, n + k, n - 1 - k)

    def decode(self, index: np.ndarray) -> np.ndarray:
        i = np.asarray(index, dtype=np.int64)
        n = self.magnitude.n_bins
        return np.where(i >= n, 1.0, -1.0) * self.magnitude.decode(np.where(i >= n, i - n, n - 1 - i))


def signed_hybrid(linear_hi: float, hi: float, n_linear: int, n_log: int) -> SignedBinning:
    """Mirrored hybrid binning: linear over [0, linear_hi], logarithmic over (linear_hi, hi]."""
    return SignedBinning(HybridBinning(LinearBinning(0.0, linear_hi, n_linear), LogBinning(linear_hi, hi, n_log)))
