"""The SiliconAI model ("GPT-like transformer model for silicon tracking detector simulation"): a
nanoGPT-style decoder over the flat feature sequence of a track (hitgen.families.siliconai.tokenizer),
one feature per position, seen through a sliding window of WINDOW_HITS rows.

Token embedding (the one dictionary) plus a learned position embedding of the place in the window,
dropout, pre-norm causal blocks (hitgen.families.clas12_gpt.model.Block, shared with the other GPTs), a final
LayerNorm, and the output layer tied to the token embedding as in nanoGPT.

Where the paper is silent, chosen here:
- Windows start at a row boundary, so a position's column is fixed by its place in the window; the
  window of rows r..r+3 trains the tokens of row r+3 (the first window every token of rows 0-3):
  every token is a target exactly once, with the context the sampler gives it (the last three
  complete rows and the row being written), not again with less context.
- The loss is the cross-entropy over the target column's own block of the dictionary (the same
  allowed-token mask the sampler applies), not over all ~66 000 tokens: the sampler never draws
  outside the block, so the probability the full softmax gives other columns' tokens is never used.
  The output layer then costs one dictionary's worth of products per row instead of seven, which is
  what lets the model train on 2 CPU cores at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.families.siliconai import tokenizer as tok
from hitgen.nn.blocks import Block, check_config, init_weights, trunk_forward

ARCHITECTURE = "siliconai"
WINDOW_HITS = 4  # rows per training window: the last three complete hits and the one being written


@dataclass
class SiliconAIConfig:
    vocabulary: dict[str, Any] = field(default_factory=dict)  # tok.Vocabulary.to_dict()
    d_model: int = 256
    n_blocks: int = 8
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.2
    window_hits: int = WINDOW_HITS

    def __post_init__(self) -> None:
        check_config(self, ("window_hits",))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SiliconAIConfig:
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def window(self) -> int:
        return tok.ROW * self.window_hits


class SiliconAI(nn.Module):
    def __init__(self, cfg: SiliconAIConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = tok.Vocabulary.from_dict(cfg.vocabulary)
        self.blocks_of_columns = self.vocab.blocks()
        d = cfg.d_model
        self.wte = nn.Embedding(self.vocab.size, d)
        self.wpe = nn.Embedding(cfg.window, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))  # type: ignore[arg-type]
        self.ln_f = nn.LayerNorm(d)
        self.apply(init_weights)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, d) of token windows (B, T), T <= the window, starting at a row boundary."""
        t = tokens.shape[1]
        x = self.drop(self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))[None])
        return trunk_forward(self, x)

    def column_logits(self, h: torch.Tensor, column: int) -> torch.Tensor:
        """Logits over the block of `column` (the allowed tokens), from hidden states (..., d)."""
        lo, hi = self.blocks_of_columns[column]
        return h @ self.wte.weight[lo:hi].T.to(h.dtype)


def siliconai_loss(model: SiliconAI, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of every target token over its column's block (see the module docstring);
    logged per column too."""
    h = model(batch["tokens"])
    target = batch["targets"]
    columns = batch["columns"]  # (T,) the column of each position's target
    total = torch.zeros((), device=h.device)
    n = 0
    parts = {}
    for c, name in enumerate(tok.COLUMNS):
        sel = (target >= 0) & (columns == c)[None]
        k = int(sel.sum())
        if not k:
            parts[f"ce_{name}"] = 0.0
            continue
        lo, _ = model.blocks_of_columns[c]
        ce = F.cross_entropy(model.column_logits(h[sel], c).float(), target[sel].long() - lo, reduction="sum")
        total = total + ce
        n += k
        parts[f"ce_{name}"] = float(ce.detach()) / k
    loss = total / max(n, 1)
    return loss, parts | {"loss": float(loss.detach())}
