"""Small statistics for comparing samples: W1, unit-area histograms, ratio panels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import wasserstein_distance


def w1(a: np.ndarray, b: np.ndarray, a_weights: np.ndarray | None = None, b_weights: np.ndarray | None = None) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D samples, optionally weighted (e.g. by
    energy, for a shower profile); nan if either is empty or weighs nothing."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    if (a_weights is not None and not np.sum(a_weights) > 0) or (b_weights is not None and not np.sum(b_weights) > 0):
        return float("nan")
    return float(wasserstein_distance(a, b, a_weights, b_weights))


def weighted_quantiles(values: np.ndarray, q: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The q-quantiles of a sample (the smallest value whose cumulative weight reaches q)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
    cumulative = np.cumsum(w) / w.sum()
    return values[order][np.minimum(np.searchsorted(cumulative, q), len(values) - 1)]


KL_BINS = 20  # reference quantile bins of quantile_kl


def quantile_kl(
    ref: np.ndarray, cand: np.ndarray, ref_weights: np.ndarray | None = None, cand_weights: np.ndarray | None = None, bins: int = KL_BINS
) -> float:
    """KL(reference || candidate) in bins at the reference's quantiles (nats; 0 = identical).

    The interior edges are the reference's (weighted) k/bins quantiles, k = 1..bins-1, the outer
    bins open-ended, so every value lands in a bin and each bin holds about 1/bins of the
    reference; ties at an edge (integer data) go to the lower bin in both samples and repeated
    edges merge. Each bin's content gets half a mean entry (Jeffreys) before normalising, so an
    empty candidate bin costs a finite amount. nan if either sample is empty."""
    ref, cand = np.asarray(ref, dtype=np.float64), np.asarray(cand, dtype=np.float64)
    if ref.size == 0 or cand.size == 0:
        return float("nan")
    wr = np.ones(ref.size) if ref_weights is None else np.asarray(ref_weights, dtype=np.float64)
    wc = np.ones(cand.size) if cand_weights is None else np.asarray(cand_weights, dtype=np.float64)
    if not (wr.sum() > 0 and wc.sum() > 0):
        return float("nan")
    edges = np.unique(weighted_quantiles(ref, np.arange(1, bins) / bins, wr))
    k = len(edges) + 1
    p = np.bincount(np.searchsorted(edges, ref, side="left"), wr, minlength=k) + 0.5 * wr.mean()
    q = np.bincount(np.searchsorted(edges, cand, side="left"), wc, minlength=k) + 0.5 * wc.mean()
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


@dataclass
class UnitHistogram:
    """A histogram normalised to unit area, with the statistical error of every bin."""

    edges: np.ndarray
    density: np.ndarray  # counts / (N * bin width)
    error: np.ndarray  # sqrt(counts) / (N * bin width)
    n: int

    @classmethod
    def of(cls, values: np.ndarray, edges: np.ndarray) -> UnitHistogram:
        counts, _ = np.histogram(values, bins=edges)
        n = int(counts.sum())
        scale = 1.0 / (max(n, 1) * np.diff(edges))
        return cls(edges, counts * scale, np.sqrt(counts) * scale, n)


def ratio(candidate: UnitHistogram, reference: UnitHistogram) -> tuple[np.ndarray, np.ndarray]:
    """Candidate / reference per bin, with errors of both samples added in quadrature.

    r = c / f, sigma_r = r * sqrt((sigma_c / c)^2 + (sigma_f / f)^2); nan where the reference bin is
    empty; where only the candidate bin is empty the ratio is 0, with the error of one count.
    """
    c, f = candidate.density, reference.density
    r = np.full(f.shape, np.nan)
    err = np.full(f.shape, np.nan)
    ref = f > 0
    both = ref & (c > 0)
    only_ref = ref & (c == 0)
    r[ref] = c[ref] / f[ref]
    err[both] = r[both] * np.sqrt((candidate.error[both] / c[both]) ** 2 + (reference.error[both] / f[both]) ** 2)
    one_count = 1.0 / (max(candidate.n, 1) * np.diff(candidate.edges))
    err[only_ref] = one_count[only_ref] / f[only_ref]
    return r, err


def integer_edges(lo: int, hi: int) -> np.ndarray:
    """Bin edges centred on the integers lo..hi."""
    return np.arange(lo, hi + 2) - 0.5


def common_edges(a: np.ndarray, b: np.ndarray, bins: int = 50, quantiles: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Equal-width edges spanning both samples (between the given quantiles of their union)."""
    both = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    if both.size == 0:
        return np.linspace(0, 1, bins + 1)
    lo, hi = np.quantile(both, quantiles)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


NOISE_FLOOR_SEED = 12345  # the fixed split of a reference into halves


def halves(n: int, seed: int = NOISE_FLOOR_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of n events (sorted indices, n // 2 each): the noise floor of a
    metric is its value between them, what statistics alone gives at half the sample size."""
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(order[:half]), np.sort(order[half : 2 * half])
