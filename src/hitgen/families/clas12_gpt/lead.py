"""The energy lead of energy-first CLAS12 GPTs as a model of its own (GPTConfig.energy_lead = "mlp").

Not in the paper. An energy-first event starts with its nine per-layer energies (tokenizer: fractions
of |p| x ADC_PER_GEV in 1000 log bins, ENERGY_ZERO for an empty layer); with rescale_to_layer_energy
they fix the event's total ADC exactly, so the energy scale and resolution are those of the lead and
nothing else. In the trunk the lead is nine of ~60 positions per event, trained for as many steps as
the hits need (256 events a step on 2 CPU cores): its drawn total was 4-13% too wide in every |p| bin
(docs/experiments/clas12-gpt-hit-heads.md).

Here the lead is a factorisation of its own, total first:
    p(T, e_0 .. e_8 | p) = p(T | p) prod_k p(e_k | p, T, e_<k),
T the event's total (tokenizer.TOTAL_BINNING, 0.21% bins), e_k the layer tokens. The total is the
calorimeter's response: its mean and spread per |p| (the energy scale and the resolution) are one
learnt one-dimensional density, not the sum of nine draws, each knowing only the running sum, whose
errors add up (measured: the same MLP drawing the nine layers alone gave a total 30-48% too wide
after 1000 steps, docs/experiments/clas12-gpt-lead-model.md). The drawn layers are then scaled to
add up to the drawn total (hitgen.families.clas12_gpt.sampler.draw_lead); the layer factors see T and
what is left of it, so the scaling is small.

Each factor is a discretised logistic mixture (nn.heads.MixtureHead, shared) on the output of an MLP
of its own (FactorMLP: ten MLPs evaluated as one batched product, so a factor's function is not
squeezed into weights shared with nine others; measured: one MLP shared by the ten factors, told
apart by a one-hot input, still drew a total 13-48% too wide after 600 steps, while one MLP for the
total alone drew it within 2-6% after 1200). Its input is the momentum (direction, log |p|, low
Fourier octaves of the direction), the total once known, every earlier layer's energy (its place on
the log scale, its fraction, whether it is empty) with a mask of which are known, the running sum of
the fractions and the total minus it. An exact autoregressive factorisation of ten numbers, so
teacher forcing computes all ten factors in one batch (4096 events a step, under a second on 2 CPU
cores): the whole 475 000-event sample is seen many times in one session. The trunk is not involved:
it is trained on the true energies and reads the drawn ones as its input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.nn.heads import MixtureHead

LEAD_OCTAVES = 2  # Fourier octaves of the direction: the path through the layers, not the strip
FRACTION_SCALE = 4.0  # layer fractions of |p| are at most about 0.5, the total about 1
N_FACTORS = 1 + tok.N_LAYERS  # the total, then the nine layers


class FactorMLP(nn.Module):
    """One GELU MLP per factor, its weights stacked (factors, fan in, width): all factors of a batch
    (`every`, teacher forcing) or one factor for all rows (`one`, sampling), each as one product.
    PyTorch's default initialisation of nn.Linear, per factor; a LayerNorm (shared) at the end."""

    def __init__(self, n_factors: int, n_in: int, width: int, depth: int) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(depth):
            fan_in = n_in if i == 0 else width
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n_factors, fan_in, width).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n_factors, width).uniform_(-bound, bound)))
        self.norm = nn.LayerNorm(width)

    def every(self, x: torch.Tensor) -> torch.Tensor:
        """(B, factors, n_in) -> (B, factors, width): factor j of every row through MLP j."""
        for w, b in zip(self.weights, self.biases, strict=True):
            x = nn.functional.gelu(torch.einsum("bjn,jnw->bjw", x, w) + b)
        return self.norm(x)

    def one(self, x: torch.Tensor, j: int) -> torch.Tensor:
        """(B, n_in) -> (B, width) through MLP j."""
        for w, b in zip(self.weights, self.biases, strict=True):
            x = nn.functional.gelu(x @ w[j] + b[j])
        return self.norm(x)


class EnergyLead(nn.Module):
    def __init__(self, width: int, depth: int, components: int, momentum_scale_gev: float, factors: int = N_FACTORS) -> None:
        """factors: N_FACTORS (the total and the nine layers) or 1 (the total alone, energy_lead = "total")."""
        super().__init__()
        self.momentum_scale_gev = momentum_scale_gev
        n_in = 3 + 1 + 6 * LEAD_OCTAVES + 3 + 4 * tok.N_LAYERS + 2
        self.mlp = FactorMLP(factors, n_in, width, depth)
        self.head = MixtureHead(width, tok.N_ENERGY, 1, components)  # the special: ENERGY_ZERO
        codes = torch.arange(tok.N_ENERGY).numpy()
        fraction = torch.zeros(tok.ENERGY_VOCAB)
        fraction[: tok.N_ENERGY] = torch.from_numpy(tok.energy_fractions(codes)).float()
        total = torch.zeros(tok.ENERGY_VOCAB)
        total[: tok.N_ENERGY] = torch.from_numpy(tok.total_fractions(codes)).float()
        self.register_buffer("fraction", fraction, persistent=False)
        self.register_buffer("total_fraction", total, persistent=False)
        # factor j (0: the total, 1 + k: layer k) knows the layers before k
        known = torch.arange(tok.N_LAYERS)[None, :] < torch.arange(N_FACTORS)[:, None] - 1
        self.register_buffer("known", known, persistent=False)

    def momentum_features(self, momentum: torch.Tensor) -> torch.Tensor:
        p = momentum.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        u = momentum / p
        freq = math.pi * 2.0 ** torch.arange(LEAD_OCTAVES, device=u.device, dtype=u.dtype)
        phase = (u[..., None] * freq).flatten(-2)
        return torch.cat([u, torch.log(p / self.momentum_scale_gev), torch.sin(phase), torch.cos(phase)], dim=-1)

    @staticmethod
    def _place(token: torch.Tensor) -> torch.Tensor:
        """A token's place on its log scale (0..1], 0 when empty."""
        return torch.where(token == tok.ENERGY_ZERO, torch.zeros_like(token), token + 1).float() / tok.N_ENERGY

    def inputs(self, momentum: torch.Tensor, total: torch.Tensor, energy: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """MLP inputs (B, n_in) of factor j (B,) given the momenta (B, 3), the total tokens (B,) and
        the layer tokens (B, 9), of which only what factor j may know is read."""
        known = self.known[j].float()  # (B, 9)
        total_known = (j > 0).float()[:, None]
        t_frac = self.total_fraction[total][:, None] * total_known
        frac = self.fraction[energy] * known
        running = frac.sum(dim=1, keepdim=True)
        return torch.cat(
            [
                self.momentum_features(momentum),
                self._place(total)[:, None] * total_known,
                t_frac * FRACTION_SCALE,
                total_known,
                self._place(energy) * known,
                frac * FRACTION_SCALE,
                (energy == tok.ENERGY_ZERO).float() * known,
                known,
                running * FRACTION_SCALE,
                (t_frac - running) * FRACTION_SCALE * total_known,
            ],
            dim=-1,
        )

    def log_probs(self, momentum: torch.Tensor, total: torch.Tensor, energy: torch.Tensor, j: int) -> torch.Tensor:
        """log p(token of factor j = . | what it knows), (B, ENERGY_VOCAB): j 0 is the total, 1 + k layer k."""
        x = self.inputs(momentum, total, energy, torch.full((len(energy),), j, dtype=torch.long, device=energy.device))
        return self.head.log_probs(self.mlp.one(x, j))

    def total_log_prob(self, momentum: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """log-probabilities (B,) of the true total tokens (B,): the first factor alone (energy_lead = "total")."""
        b = len(total)
        none = torch.full((b, tok.N_LAYERS), tok.ENERGY_ZERO, dtype=torch.long, device=total.device)
        first = torch.zeros(b, dtype=torch.long, device=total.device)
        return self.head.log_prob(self.mlp.one(self.inputs(momentum, total, none, first), 0), total.long())

    def teacher_forced(self, momentum: torch.Tensor, total: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """log-probabilities (B, 10) of the true total tokens (B,) and layer tokens (B, 9): all ten
        factors in one batch."""
        b = len(energy)
        j = torch.arange(N_FACTORS, device=energy.device).repeat(b)
        rows = torch.arange(b, device=energy.device).repeat_interleave(N_FACTORS)
        h = self.mlp.every(self.inputs(momentum[rows], total[rows], energy[rows], j).view(b, N_FACTORS, -1))
        target = torch.cat([total[:, None], energy], dim=1).reshape(-1).long()
        return self.head.log_prob(h.reshape(b * N_FACTORS, -1), target).view(b, N_FACTORS)
