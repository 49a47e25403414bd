"""Tokenised tracks for training the SiliconAI model (hitgen.families.siliconai.tokenizer), with the
interface of the other training data: length, subset, batch. The unit is the track, so the
validation split holds whole tracks; a batch of tracks becomes all their sliding windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.families.siliconai import tokenizer as tok
from hitgen.families.siliconai.model import WINDOW_HITS


@dataclass
class SiliconAIData:
    tokens: np.ndarray  # (N, L) int32, PAD after each track's end
    length: np.ndarray  # (N,) tokens per track
    vocab: tok.Vocabulary
    window_hits: int = WINDOW_HITS

    def __len__(self) -> int:
        return len(self.length)

    @classmethod
    def from_events(cls, events: EventSet) -> SiliconAIData:
        if events.detector != "odd-tracker":
            raise HitgenError(f"the SiliconAI model trains on odd-tracker event files, not {events.detector}")
        vocab = tok.Vocabulary.from_events(events)
        try:
            tokens, length = tok.encode(events, vocab)
        except ValueError as e:
            raise HitgenError(f"cannot tokenise the training tracks: {e}") from None
        return cls(tokens, length, vocab)

    def subset(self, idx: np.ndarray) -> SiliconAIData:
        return SiliconAIData(self.tokens[idx], self.length[idx], self.vocab, self.window_hits)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Every window of the tracks idx: windows of `window_hits` rows starting at each row (one
        window for a track with fewer rows); inputs (W, T), targets (W, T) with -1 where a position
        trains nothing: the window of rows r..r+3 trains the tokens of its last row only, except the
        first window (r = 0), which trains all tokens after the start row (the start row is given, the
        conditions, never drawn). columns (T,): each target's column."""
        width = tok.ROW * self.window_hits
        length = self.length[idx]
        rows = -(-length // tok.ROW)  # the end row (2 tokens) counts as a row
        n_win = np.maximum(1, rows - self.window_hits + 1)
        track = np.repeat(np.arange(len(idx)), n_win)
        r = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        padded = np.pad(self.tokens[idx], ((0, 0), (0, width)), constant_values=tok.PAD)
        win = padded[track[:, None], tok.ROW * r[:, None] + np.arange(width)].astype(np.int64)
        place = np.arange(1, width)  # the place of each target in its window
        trains = ((r[:, None] == 0) & (place[None] >= tok.ROW)) | (place[None] >= tok.ROW * (self.window_hits - 1))
        targets = np.where(trains & (win[:, 1:] != tok.PAD), win[:, 1:], -1)
        return {
            "tokens": torch.from_numpy(win[:, :-1]),
            "targets": torch.from_numpy(targets),
            "columns": torch.from_numpy(place % tok.ROW),
        }
