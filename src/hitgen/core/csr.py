"""Events as CSR arrays: offsets (N + 1,) with the hits of event i at [offsets[i], offsets[i + 1]),
and one flat array per hit field."""

from __future__ import annotations

import numpy as np


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    """Offsets (N + 1,) int64 of events with these hit counts."""
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def concatenate(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The events of several (offsets, hits) parts, in order, as one."""
    base = np.cumsum([0] + [int(o[-1]) for o, _ in parts[:-1]])
    offsets = np.concatenate([[0]] + [o[1:] + b for (o, _), b in zip(parts, base, strict=True)]).astype(np.int64)
    hits = {k: np.concatenate([h[k] for _, h in parts]) for k in parts[0][1]}
    return offsets, hits
