"""The CLAS12 GPT's training data: the three token streams of every event, padded to a common length."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.families.clas12_gpt import tokenizer as tok

STREAMS = ("strip", "adc", "tdc", "layer", "rank")
# besides the streams: "energy", the nine per-layer energy tokens of energy-first models, and
# "energy_total" (N, 1), the event's total energy token of total-first ones (tokenizer)


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
        momentum = events.conditions["momentum"].astype(np.float32)
        sums = tok.layer_sums(events.offsets, events.hits["layer"], events.hits["adc"])
        energy = {"energy": tok.encode_energies(sums, momentum), "energy_total": tok.encode_total(sums, momentum)[:, None]}
        return cls({k: getattr(b, k) for k in STREAMS} | energy, b.length, momentum)

    def subset(self, idx: np.ndarray) -> TokenData:
        return TokenData({k: v[idx] for k, v in self.tokens.items()}, self.length[idx], self.momentum[idx])

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Tensors for events idx, trimmed to the longest sequence among them."""
        t = int(self.length[idx].max())
        out = {k: torch.from_numpy(v[idx, : t if k in STREAMS else None].astype(np.int64)) for k, v in self.tokens.items()}
        out["momentum"] = torch.from_numpy(self.momentum[idx])
        return out
