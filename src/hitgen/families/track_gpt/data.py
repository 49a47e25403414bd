"""Tokenised tracks for training the track GPT (hitgen.families.track_gpt.tokenizer), with the same
interface as the CLAS12 TokenData: length, subset, batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.families.track_gpt import tokenizer as tok


@dataclass
class TrackData:
    features: np.ndarray  # (N, T, F) float32
    which: np.ndarray  # (N, T) int16 targets, -1 padding
    values: dict[str, np.ndarray]  # (N, T) int16 targets
    length: np.ndarray  # (N,)
    conditions: np.ndarray  # (N, C) float32
    particle: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.length)

    @classmethod
    def from_events(cls, events: EventSet) -> TrackData:
        if events.detector != "odd-tracker":
            raise HitgenError(f"the track GPT trains on odd-tracker event files, not {events.detector}")
        t = tok.encode(events)
        return cls(t.features, t.which, t.values, t.length, t.conditions, t.particle)

    def subset(self, idx: np.ndarray) -> TrackData:
        values = {k: v[idx] for k, v in self.values.items()}
        return TrackData(self.features[idx], self.which[idx], values, self.length[idx], self.conditions[idx], self.particle[idx])

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors for events idx, trimmed to the longest among them. The inputs at position t are the
        tokens that made hit t (the targets of position t-1; the start token at position 0)."""
        t = int(self.length[idx].max())
        which = self.which[idx, :t].astype(np.int64)
        start = np.full((len(idx), 1), tok.WHICH_VOCAB, np.int64)
        out = {
            "features": torch.from_numpy(self.features[idx, :t]),
            "which": torch.from_numpy(which),
            "which_in": torch.from_numpy(np.concatenate([start, np.maximum(which[:, :-1], 0)], 1)),
            "conditions": torch.from_numpy(self.conditions[idx]),
            "particle": torch.from_numpy(self.particle[idx]),
        }
        for k, v in self.values.items():
            v = v[idx, :t].astype(np.int64)
            out[k] = torch.from_numpy(v)
            out[f"{k}_in"] = torch.from_numpy(np.concatenate([np.zeros((len(idx), 1), np.int64), v[:, :-1]], 1))
        return out
