"""Track generation with the SiliconAI model, as in the paper: one feature per step, the model
recomputed over the last three complete hits and the hit being written (no key-value cache: the
window slides, so every step sees a new first position), each token drawn from its column's
allowed tokens (hitgen.families.siliconai.tokenizer.Vocabulary.block). A track ends when END is drawn in the
module column, or after MAX_HITS hits. The uniform numbers come from per-event counter streams
(hitgen.nn.streams) keyed by the token's place in the track, so a track depends only on the
seed, its index and its conditions, never on the batch it was generated in."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.families.siliconai import tokenizer as tok
from hitgen.families.siliconai.model import SiliconAI
from hitgen.nn.draw import sample_values
from hitgen.nn.streams import event_keys, uniforms

MAX_TOKENS = tok.ROW * (tok.MAX_HITS + 1) + 2  # start row, MAX_HITS hit rows, the end row


@torch.no_grad()
def generate_siliconai(
    model: SiliconAI,
    conditions: dict[str, np.ndarray],
    seed: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    temperature: float = 1.0,
    progress: Callable[[int], None] | None = None,
    first_event: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tracks for every event of `conditions` (pdg, charge, vertex, momentum): CSR offsets and the
    odd-tracker hit fields (positions and momenta to two decimals, as the tokens hold them)."""
    dev = torch.device(device)
    n = len(conditions["momentum"])
    keys_all = event_keys(seed, np.arange(first_event, first_event + n))
    try:
        start = tok.start_rows(model.vocab, conditions)
    except ValueError as e:
        raise HitgenError(f"conditions outside what the model was trained on: {e}") from None
    sequences: list[np.ndarray] = []
    for lo in range(0, n, batch_size):
        rows = slice(lo, min(lo + batch_size, n))
        sequences += _generate_batch(model, start[rows], keys_all[rows], dev, temperature)
        if progress:
            progress(len(sequences))
    return tok.decode(model.vocab, sequences)


def _generate_batch(model: SiliconAI, start: np.ndarray, keys_np: np.ndarray, dev: torch.device, temperature: float) -> list[np.ndarray]:
    b = len(start)
    seq = torch.full((b, MAX_TOKENS), tok.PAD, dtype=torch.long, device=dev)
    seq[:, : tok.ROW] = torch.from_numpy(start).to(dev)
    keys = torch.from_numpy(keys_np).to(dev)
    event = torch.arange(b, device=dev)  # the batch row of each live track
    finished: dict[int, np.ndarray] = {}
    for p in range(tok.ROW, MAX_TOKENS):
        row, column = divmod(p, tok.ROW)
        first = tok.ROW * max(0, row - model.cfg.window_hits + 1)  # the last three complete rows and this one
        h = model(seq[:, first:p])[:, -1]
        lo, _ = model.blocks_of_columns[column]
        if column == 1 and row == tok.MAX_HITS + 1:
            drawn = torch.full((len(event),), model.vocab.end, dtype=torch.long, device=dev)
        else:
            u = uniforms(keys[event], torch.tensor(p, device=dev))
            drawn = lo + sample_values(model.column_logits(h, column).float(), temperature, 0, u)
        seq[:, p] = drawn
        if column == 1:
            ended = drawn == model.vocab.end
            if ended.any():
                for e, s in zip(event[ended].tolist(), seq[ended, : p + 1].cpu().numpy(), strict=True):
                    finished[e] = s
                keep = ~ended
                seq, event = seq[keep], event[keep]
                if not len(event):
                    break
    return [finished[i] for i in range(b)]
