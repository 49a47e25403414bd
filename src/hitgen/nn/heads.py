"""Output heads of the value streams (ADC, TDC): a vocabulary of `n_values` value tokens 0.. followed
by `n_special` special tokens, with one interface for training (log-probabilities of targets, the
full distribution) and for generation (drawing a value token by given uniform numbers).

- FlatHead: the paper's head, one linear map to the whole vocabulary (5004 ADC, 2005 TDC outputs).
  It is an nn.Linear, so model folders written before this module load unchanged.
- FactorisedHead (not in the paper): the same distribution written as p(token) = p(coarse group)
  p(fine bin | group), with groups of `group` consecutive value tokens (100 groups of 50 ADC bins;
  a group of ADC log bins spans 3.3% in ADC) and one coarse class per special token. The fine
  distribution sees the group through an embedding added to the hidden state and a small MLP. Why:
  the 4950 fine ADC log bins of the shower core's hits are rare each, and the flat softmax learns
  their |p| dependence from few examples per bin, while a coarse class pools them (the energy
  response of the flat models was too flat in |p|; docs/families/clas12-gpt.md). Per hit it needs about 150 + d outputs
  instead of 5004: a fifth of the ADC head's multiply-adds and two small draws instead of one over
  5000 bins.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.nn.draw import inverse_cdf_sample, sample_values


class FlatHead(nn.Linear):
    def __init__(self, d: int, n_values: int, n_special: int) -> None:
        super().__init__(d, n_values + n_special)
        self.n_values = n_values

    def log_prob(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """log p(target) (M,) for hidden states (M, d)."""
        return -F.cross_entropy(self(h).float(), target, reduction="none")

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """The whole distribution, (..., V) log-probabilities."""
        return F.log_softmax(self(h).float(), dim=-1)

    def sample(
        self, h: torch.Tensor, temperature: float, top_k: int, u: torch.Tensor, u_fine: torch.Tensor, n_values: int | None = None
    ) -> torch.Tensor:
        """A value token per row, drawn by the uniform numbers u (u_fine unused); n_values: only
        the first n value tokens (default all)."""
        return sample_values(self(h).float()[:, : n_values or self.n_values], temperature, top_k, u)


class FactorisedHead(nn.Module):
    def __init__(self, d: int, n_values: int, n_special: int, group: int) -> None:
        super().__init__()
        self.n_values, self.n_special, self.group = n_values, n_special, group
        self.n_groups = math.ceil(n_values / group)
        self.coarse = nn.Linear(d, self.n_groups + n_special)
        self.group_emb = nn.Embedding(self.n_groups, d)
        self.fine = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, group))
        valid = torch.arange(self.n_groups * group).view(self.n_groups, group) < n_values
        self.register_buffer("valid", valid, persistent=False)  # the last group may be short

    def _coarse_of(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        is_value = target < self.n_values
        coarse = torch.where(is_value, target // self.group, self.n_groups + (target - self.n_values).clamp(min=0))
        return coarse, is_value

    def fine_logits(self, h: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Logits (M, group) of the fine bins inside the given groups (M,); invalid bins -inf."""
        logits = self.fine(h + self.group_emb(group)).float()
        return logits.masked_fill(~self.valid[group], float("-inf"))

    def log_prob(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        coarse, is_value = self._coarse_of(target)
        lp = F.log_softmax(self.coarse(h).float(), dim=-1).gather(-1, coarse[:, None]).squeeze(-1)
        group = coarse.clamp(max=self.n_groups - 1)
        lf = F.log_softmax(self.fine_logits(h, group), dim=-1).gather(-1, (target % self.group).clamp(max=self.group - 1)[:, None]).squeeze(-1)
        return lp + torch.where(is_value, lf, torch.zeros_like(lf))

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """The whole distribution (..., V): every group's fine distribution (for the distribution
        term of the loss on a few positions, and for sampling at a temperature other than 1)."""
        lead = h.shape[:-1]
        h = h.reshape(-1, h.shape[-1])
        lc = F.log_softmax(self.coarse(h).float(), dim=-1)
        fine = self.fine(h[:, None, :] + self.group_emb.weight[None]).float()  # (M, G, group)
        fine = F.log_softmax(fine.masked_fill(~self.valid, float("-inf")), dim=-1)
        values = (lc[:, : self.n_groups, None] + fine).flatten(1)[:, : self.n_values]
        return torch.cat([values, lc[:, self.n_groups :]], dim=-1).view(*lead, -1)

    def sample(
        self, h: torch.Tensor, temperature: float, top_k: int, u: torch.Tensor, u_fine: torch.Tensor, n_values: int | None = None
    ) -> torch.Tensor:
        """A value token per row: the group by u, the bin inside it by u_fine. At temperature 1
        without top-k the two draws are exact; otherwise (or when only the first n_values value
        tokens may be drawn) the whole distribution is tempered (and top-k applied to it) and drawn
        by u, which is exact too, at the cost of every group's fine logits."""
        if temperature != 1.0 or top_k or (n_values is not None and n_values < self.n_values):
            return sample_values(self.log_probs(h)[:, : n_values or self.n_values], temperature, top_k, u)
        coarse = F.softmax(self.coarse(h).float()[:, : self.n_groups], dim=-1)
        group = inverse_cdf_sample(coarse, u)
        fine = F.softmax(self.fine_logits(h, group), dim=-1)
        return group * self.group + inverse_cdf_sample(fine, u_fine)


class MixtureHead(nn.Module):
    """A distribution over `n_values` ordered bins of a continuous variable and `n_special` other
    tokens (not in the CLAS12 paper): a mixture of `k` logistic densities in bin units, integrated
    over each bin (the discretised logistic mixture of PixelCNN++, Salimans et al. 2017; the first
    and last bins take the tails), beside one logit per special token. Neighbouring bins share
    their probability through a few location and scale parameters, so a smooth density over fine
    bins is learnt from far fewer examples than by a softmax with one free logit per bin.
    `log_probs` gives the log-probabilities of every token (..., n_values + n_special)."""

    def __init__(self, d: int, n_values: int, n_special: int, k: int = 8) -> None:
        super().__init__()
        self.n_values, self.n_special, self.k = n_values, n_special, k
        self.out = nn.Linear(d, n_special + 3 * k)  # special logits, mixture logits, locations, log scales
        edges = torch.arange(1, n_values, dtype=torch.float32)  # inner bin edges, in bin units
        self.register_buffer("edges", edges, persistent=False)

    def _params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Special log-probabilities (..., n_special), log P(value) + log pi (..., k), locations and
        scales in bin units (..., k)."""
        # in fp32 even under autocast: a location in bf16 (8 bits) is off by up to a bin, which
        # shifted the drawn total energy by 0.18% (measured by tests/test_shipped_model.py)
        with torch.autocast(device_type=h.device.type, enabled=False):
            o = self.out(h.float())
        s, k = self.n_special, self.k
        special, mix = o[..., :s], o[..., s : s + k]
        loc = self.n_values * (0.5 + 0.25 * o[..., s + k : s + 2 * k])  # starts spread over the middle half
        scale = self.n_values * 0.02 * torch.exp(o[..., s + 2 * k :].clamp(-7.0, 7.0))
        top = torch.logsumexp(torch.cat([special, mix], dim=-1), dim=-1, keepdim=True)
        return special - top, mix - top, loc, scale

    def log_prob(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """log p(target) (M,) for hidden states (M, d): the target's bin only, the same numbers as
        log_probs(h) at the target without computing every bin's mass."""
        log_special, log_mix, loc, scale = self._params(h)
        is_value = target < self.n_values
        t = target.clamp(max=self.n_values - 1).to(loc.dtype)[:, None]
        lo = torch.where(t > 0, torch.sigmoid((t - loc) / scale), torch.zeros_like(loc))
        hi = torch.where(t < self.n_values - 1, torch.sigmoid((t + 1 - loc) / scale), torch.ones_like(loc))
        value = torch.logsumexp(log_mix + torch.log((hi - lo).clamp(min=1e-12)), dim=-1)
        special = log_special.gather(1, (target - self.n_values).clamp(min=0, max=self.n_special - 1)[:, None])[:, 0]
        return torch.where(is_value, value, special)

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        log_special, log_mix, loc, scale = self._params(h)
        cdf = torch.sigmoid((self.edges - loc[..., None]) / scale[..., None])  # (..., k, n_values - 1)
        zero, one = torch.zeros_like(cdf[..., :1]), torch.ones_like(cdf[..., :1])
        mass = torch.diff(torch.cat([zero, cdf, one], dim=-1), dim=-1).clamp(min=1e-12)  # (..., k, n_values)
        values = torch.logsumexp(log_mix[..., None] + torch.log(mass), dim=-2)
        return torch.cat([values, log_special], dim=-1)
