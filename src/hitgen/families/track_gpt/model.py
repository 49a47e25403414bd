"""The track GPT: a conditional decoder-only transformer over the hits of one particle in a silicon
tracker, one position per hit (the fused hit of the CLAS12 design, applied to SiliconAI's task).

Inputs (hitgen.families.track_gpt.tokenizer): position 0 is the start (the vertex state), position t the
state after hit t. Each position sees its continuous features (the state in the frame rotated to the
particle's initial azimuth, and the next candidate modules the helix would cross: where it crosses
them on the module, how far) through a linear map, plus embeddings of the tokens that made the hit
(which candidate, the five binned deviations), a hit-index embedding, and the conditions (charge,
1/pT, cot theta, z of the vertex, and a particle-type embedding) through a small MLP, added to every
position. Pre-norm causal blocks (hitgen.families.clas12_gpt.model.Block, shared with the CLAS12 GPT).

Heads at position t describe hit t+1: `which` (one of K candidates or END), then the five deviation
streams (du, dv, dp, dphi, dtheta), each from the hidden state plus an embedding of the chosen
candidate (teacher-forced in training, the drawn one in generation): the position on a module and
the kink depend on which module it is (an overlap partner in the same layer, or the next layer).
Given the hidden state and the candidate, the five deviations are drawn independently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.families.track_gpt import tokenizer as tok
from hitgen.nn.blocks import Block, KVCache, check_config, init_weights, trunk_forward

ARCHITECTURE = "track-gpt"


@dataclass
class TrackGPTConfig:
    d_model: int = 256
    n_blocks: int = 8
    n_heads: int = 8
    d_ff: int = 1024
    dropout: float = 0.1
    max_length: int = tok.MAX_HITS + 1
    n_features: int = tok.N_FEATURES
    n_conditions: int = tok.N_CONDITION_FEATURES
    n_particles: int = len(tok.PARTICLE_TYPES)
    which_vocab: int = tok.WHICH_VOCAB
    value_vocab: int = 600  # every deviation binning has 2 x 300 bins

    def __post_init__(self) -> None:
        check_config(self, ("max_length", "n_features", "n_conditions", "n_particles", "which_vocab", "value_vocab"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackGPTConfig:
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrackGPT(nn.Module):
    def __init__(self, cfg: TrackGPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.features = nn.Linear(cfg.n_features, d)
        self.which_embed = nn.Embedding(cfg.which_vocab + 1, d)  # + the start position's token
        self.value_embed = nn.ModuleDict({k: nn.Embedding(cfg.value_vocab, d) for k in tok.VALUE_STREAMS})
        self.index_embed = nn.Embedding(cfg.max_length, d)
        self.particle_embed = nn.Embedding(cfg.n_particles, d)
        self.condition = nn.Sequential(nn.Linear(cfg.n_conditions, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.ln_in = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))  # type: ignore[arg-type]
        self.ln_f = nn.LayerNorm(d)
        self.which_head = nn.Linear(d, cfg.which_vocab)
        self.choice_embed = nn.Embedding(cfg.which_vocab, d)  # the chosen candidate, for the value heads
        self.value_heads = nn.ModuleDict({k: nn.Linear(d, cfg.value_vocab) for k in tok.VALUE_STREAMS})
        self.apply(init_weights)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(
        self,
        features: torch.Tensor,
        which_in: torch.Tensor,
        values_in: dict[str, torch.Tensor],
        start: int,
        conditions: torch.Tensor,
        particle: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Input embeddings (B, T, d) of positions start .. start+T-1. which_in is the token that made
        each position's hit (which_vocab at the start position); values_in likewise (0 at the start).
        conditions (B, n_conditions) with particle (B,), or without particle the track's offset
        (B, d) from `track_offset`, which a sampler computes once per track, not at every step."""
        t = features.shape[1]
        index = torch.arange(start, start + t, device=features.device)
        x = self.features(features) + self.which_embed(which_in) + self.index_embed(index)[None]
        for k in tok.VALUE_STREAMS:
            x = x + self.value_embed[k](values_in[k])
        offset = conditions if particle is None else self.track_offset(conditions, particle)
        return self.drop(self.ln_in(x + offset[:, None]))

    def track_offset(self, conditions: torch.Tensor, particle: torch.Tensor) -> torch.Tensor:
        """What the conditions and the particle add to every position's embedding (B, d)."""
        return self.condition(conditions) + self.particle_embed(particle)

    def trunk(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return trunk_forward(self, x, cache)

    def which_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.which_head(h)

    def value_logits(self, h: torch.Tensor, which: torch.Tensor) -> dict[str, torch.Tensor]:
        hv = h + self.choice_embed(which)
        return {k: head(hv) for k, head in self.value_heads.items()}

    def stacked_value_logits(self, h: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """The five value heads' logits (M, 5, value_vocab) of hidden states (M, d), in
        tok.VALUE_STREAMS order, by one matrix product: the sampler draws all five in one pass, and
        five products stacked afterwards cost a copy of every logit."""
        heads = [self.value_heads[k] for k in tok.VALUE_STREAMS]
        weight = torch.cat([head.weight for head in heads])
        bias = torch.cat([head.bias for head in heads])
        return F.linear(h + self.choice_embed(which), weight, bias).view(len(h), len(heads), -1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hidden states (B, T, d) of teacher-forced sequences (see hitgen.families.track_gpt.data)."""
        values_in = {k: batch[f"{k}_in"] for k in tok.VALUE_STREAMS}
        x = self.embed(batch["features"], batch["which_in"], values_in, 0, batch["conditions"], batch["particle"])
        return self.trunk(x)


def track_loss(model: TrackGPT, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of `which` at every real position and of the five deviations where a hit follows."""
    h = model(batch)
    target = batch["which"]
    valid = target >= 0
    ce_which = F.cross_entropy(model.which_logits(h[valid]), target[valid].long())
    is_hit = valid & (target < tok.END)
    logits = model.value_logits(h[is_hit], target[is_hit].long())
    parts = {"ce_which": ce_which}
    total = ce_which
    for k in tok.VALUE_STREAMS:
        ce = F.cross_entropy(logits[k], batch[k][is_hit].long())
        parts[f"ce_{k}"] = ce
        total = total + ce
    return total, {k: float(v.detach()) for k, v in parts.items()} | {"loss": float(total.detach())}
