"""The CLAS12 GPT: a conditional, decoder-only, multi-stream transformer over detector hits.

One position per hit, three aligned token streams (strip, ADC, TDC). Each stream is embedded in
about d/3 dimensions; the three are concatenated and projected to d; learned embeddings of the
hit's rank within its layer and of its readout layer are added, then LayerNorm and dropout. The
photon momentum goes through a 3-layer GELU MLP to one prefix embedding per readout layer, placed
before SOS. Where the paper is silent: the MLP sees the momentum as its direction u, Fourier
features of the direction (sin, cos of pi 2^k u, k < 8) and log|p|: the shower position depends on
the direction at the level of one strip, 0.006 rad, which an MLP on raw (px, py, pz) resolves
slowly. The MLP keeps PyTorch's default initialisation and ends in a LayerNorm like the token
embeddings: with GPT-style 0.02 initialisation and raw momenta, after 1500 steps the model still
placed the first PCAL hit without regard to the photon's direction (measured; docs/families/clas12-gpt.md).
Optionally (condition_every_position; not in the paper) a linear map of the MLP's last hidden layer
is added to every token embedding, initialised to zero: the paper-style model's energy response
was too flat in |p| (5.7% high at 1 GeV, 2.5% low at 10 GeV), i.e. the ADC of each hit followed
|p| too weakly when the momentum reached it only through attention to the prefix.
Optionally (value_heads_see_strip; not in the paper) the ADC and TDC heads see the strip of their
hit. In the paper's fused hit, strip, ADC and TDC are drawn independently given the hidden state:
the ADC of a hit is drawn from a mixture over all strips it might be (shower core or halo), without
knowing which strip was drawn.
Optionally (energy_first; not in the paper) the event starts with its nine per-layer energies
(tokenizer: fractions of |p| x ADC_PER_GEV in fine log bins), drawn one after another between the
prefix and SOS by their own head, so the longitudinal profile, its correlations and the total
energy's spread are learnt as nine small distributions instead of emerging from some 40 hit draws
that know no total; with layer_energy_feature every position also sees the energy its current
layer must hold and what is left of it after the hits so far. The sampler enforces that a layer
drawn empty gets no hit and a non-empty one at least one; with rescale_to_layer_energy the hits of
each layer are scaled at the end to hold the drawn energy exactly (CaloFlow's normalisation of
showers to their layer energies; hitgen.families.clas12_gpt.tokenizer.rescale_to_layer_sums).
Optionally (energy_total_first; not in the paper) the event's total energy is a tenth energy token,
drawn first (tokenizer.TOTAL_BINNING), and each layer energy then sees the total and what is left of
it; with rescale_to_layer_energy the drawn layer energies are scaled to add up to the drawn total
before the hits are scaled to them. The total is the calorimeter's response: its mean and spread per
|p| (the energy scale and resolution) are then one learnt one-dimensional distribution, where nine
layers drawn one after another, each knowing only the running sum, gave a total 10-35% too wide
(docs/experiments/clas12-gpt-energy-first.md).
Optionally (energy_lead = "mlp"; not in the paper) the nine layer energies are drawn by a model of
their own beside the trunk (hitgen.families.clas12_gpt.lead), trained on its own for many more events
than the trunk sees; the trunk reads the drawn energies as its inputs, as it read the true ones in
training, and has no energy head. With energy_lead = "total" only the event's total comes from that
model: the trunk's energy head draws the nine layers as before, and they are scaled to add up to the
drawn total before the hits are scaled to them (rescale_to_layer_energy).
Pre-norm causal blocks; output heads: strip, TDC, and one ADC head per calorimeter
section (PCAL, ECIN, ECOUT) blended by soft section routing, with weights equal to the predicted
strip probability summed over each section's strips.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.lead import N_FACTORS, EnergyLead
from hitgen.nn.blocks import Block, KVCache, check_config, init_weights, trunk_forward
from hitgen.nn.heads import FactorisedHead, FlatHead, MixtureHead

ADC_OCTAVES = 4  # Fourier features of log10 ADC that the TDC head sees (tdc_sees_hit)
# the offset of a hit's strip from the photon's line of flight that the value heads see
# (value_heads_see_axis): clipped to +-AXIS_RANGE strips, Fourier periods down to 0.75 strips
AXIS_RANGE = 24.0
AXIS_OCTAVES = 7


@dataclass
class GPTConfig:
    d_model: int = 512
    n_blocks: int = 8
    n_heads: int = 8
    d_ff: int = 2048
    dropout: float = 0.1
    max_length: int = tok.MAX_LENGTH  # token positions (SOS..EOS)
    n_prefix: int = tok.N_LAYERS  # conditioning embeddings before SOS
    momentum_scale_gev: float = 3.0
    # Fourier features of the direction: sin and cos of pi 2^k u for k < octaves (u: unit vector)
    direction_octaves: int = 8
    # add a learned function of the momentum to every token's embedding as well (not in the paper;
    # see the module docstring); False keeps the paper's prefix-only conditioning
    condition_every_position: bool = False
    # the ADC and TDC heads see the strip of the hit they describe (teacher-forced in training, the
    # drawn strip in generation) through a small residual MLP; False: the paper's fused hit, whose
    # three tokens are drawn independently given the hidden state (see the module docstring)
    value_heads_see_strip: bool = False
    # the value heads also see how far their hit's strip lies from the photon's line of flight in its
    # layer (tokenizer.axis_coordinates; not in the paper): hits are drawn by ascending strip, so a hit
    # left of the shower's core is drawn before the core and its ADC head could not tell it from the
    # core (measured: their ADC 1.6x Geant4's, docs/experiments/clas12-gpt-lead-model.md); needs
    # value_heads_see_strip, enters through a zero-initialised map (starts as the model without it)
    value_heads_see_axis: bool = False
    # the TDC head also sees the strip and the ADC drawn for its hit (teacher-forced in training) through
    # a zero-initialised residual MLP of its own (not in the paper, where a hit's three tokens are
    # drawn independently given the hidden state; a hit's time depends on its strip, the light's path
    # along it, and on its ADC, the discriminator's walk); the ADC path is untouched
    tdc_sees_hit: bool = False
    # the TDC value placed uniformly within its log bin by the event's random stream (the paper: at the
    # bin's geometric centre). The bins (0.73%, 0.3 ns at 40 ns) are as wide as the time resolution:
    # Geant4's own times moved to the bin centres are told from Geant4 at a low-level AUC of 0.71
    tdc_in_bin: bool = False
    # every hit draws a time (TDC_ZERO is never drawn) and the detector's discriminator rule decides
    # which hits keep it: those whose final ADC (after rescale_to_layer_energy) reaches the TDC
    # threshold of clas12-ecal's digitisation (in Geant4, tdc = 0 exactly when ADC < 100 counts)
    tdc_threshold_rule: bool = False
    # each position also sees the ADC deposited so far (its own token included) as a fraction of
    # |p| x adc_per_gev (the Geant4 mean response of clas12-ecal, about 19 400 ADC per GeV: only the
    # scale of the input), through a small MLP: a function of the earlier tokens, so the model can
    # budget what is left for the deeper layers (not in the paper; docs/experiments/clas12-gpt-training-rounds.md)
    deposit_feature: bool = False
    adc_per_gev: float = tok.ADC_PER_GEV
    # energy-first sequences (see the module docstring)
    energy_first: bool = False
    layer_energy_feature: bool = True
    rescale_to_layer_energy: bool = False
    energy_total_first: bool = False
    energy_vocab: int = tok.ENERGY_VOCAB
    # the energy tokens' head: "mixture" (logistic densities integrated over the bins, nn.heads.MixtureHead)
    # or "flat" (one softmax logit per bin)
    energy_head: str = "mixture"
    energy_components: int = 8
    # where the nine layer energies are drawn: "trunk" (the trunk's energy head, one position per layer)
    # or "mlp" (a model of their own beside the trunk, hitgen.families.clas12_gpt.lead; not in the paper),
    # an MLP of lead_depth layers of lead_width; "total": the trunk draws the layers, the lead model the
    # total they are scaled to
    energy_lead: str = "trunk"
    lead_width: int = 256
    lead_depth: int = 3
    # ADC and TDC heads: "flat" (the paper's: one softmax over the vocabulary) or "factorised"
    # (coarse group x fine bin, groups of value_group tokens; hitgen.nn.heads)
    value_head: str = "flat"
    value_group: int = 50
    strip_vocab: int = tok.STRIP.vocab_size
    adc_vocab: int = tok.ADC.vocab_size
    tdc_vocab: int = tok.TDC.vocab_size
    n_layer_ids: int = tok.N_LAYERS + 1
    n_ranks: int = tok.MAX_HITS + 1
    # strip-token ranges [start, stop) of the sections with their own ADC head: PCAL, ECIN, ECOUT
    sections: list[tuple[int, int]] = field(default_factory=lambda: [(int(tok.STRIP_OFFSETS[i]), int(tok.STRIP_OFFSETS[i + 3])) for i in (0, 3, 6)])

    def __post_init__(self) -> None:
        check_config(
            self,
            (
                "max_length",
                "n_prefix",
                "momentum_scale_gev",
                "adc_per_gev",
                "energy_vocab",
                "strip_vocab",
                "adc_vocab",
                "tdc_vocab",
                "n_layer_ids",
                "n_ranks",
            ),
        )
        if self.energy_head not in ("flat", "mixture") or self.energy_components < 1:
            raise ValueError(
                f"energy_head must be flat or mixture with energy_components >= 1 (got {self.energy_head!r}, {self.energy_components!r})"
            )
        if self.value_heads_see_axis and not self.value_heads_see_strip:
            raise ValueError("value_heads_see_axis needs value_heads_see_strip")
        if self.energy_lead not in ("trunk", "mlp", "total") or self.lead_width < 1 or self.lead_depth < 1:
            raise ValueError(f"energy_lead must be trunk, mlp or total with lead_width, lead_depth >= 1 (got {self.energy_lead!r})")
        if self.energy_lead != "trunk" and (not self.energy_first or self.energy_total_first):
            raise ValueError(f"energy_lead = {self.energy_lead} draws the energies of energy-first models (energy_first, not energy_total_first)")
        if self.energy_lead == "total" and not self.rescale_to_layer_energy:
            raise ValueError("energy_lead = total scales the layers to the drawn total: it needs rescale_to_layer_energy")
        if self.value_head not in ("flat", "factorised") or self.value_group < 2:
            raise ValueError(f"value_head must be flat or factorised with value_group >= 2 (got {self.value_head!r}, {self.value_group!r})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        d = dict(d)
        if "sections" in d:
            d["sections"] = [tuple(s) for s in d["sections"]]
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PAPER = GPTConfig()  # d 512, 8 blocks, 8 heads of 64, feed-forward 2048: about 38 M parameters


class HitGPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        parts = [d // 3 + (1 if i < d % 3 else 0) for i in range(3)]  # d/3 each, summing to d
        self.emb_strip = nn.Embedding(cfg.strip_vocab, parts[0])
        self.emb_adc = nn.Embedding(cfg.adc_vocab, parts[1])
        self.emb_tdc = nn.Embedding(cfg.tdc_vocab, parts[2])
        self.emb_proj = nn.Linear(d, d)
        self.emb_rank = nn.Embedding(cfg.n_ranks, d)
        self.emb_layer = nn.Embedding(cfg.n_layer_ids, d)
        self.emb_ln = nn.LayerNorm(d)
        self.emb_drop = nn.Dropout(cfg.dropout)
        cond_dim = 3 + 1 + 6 * cfg.direction_octaves
        self.prefix = nn.Sequential(nn.Linear(cond_dim, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, cfg.n_prefix * d))
        self.prefix_ln = nn.LayerNorm(d)
        # from the MLP's last hidden layer to an offset added to every token embedding
        self.cond_tokens = nn.Linear(d, d) if cfg.condition_every_position else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_blocks)])
        self.ln_f = nn.LayerNorm(d)
        self.head_strip = nn.Linear(d, cfg.strip_vocab)
        self.head_tdc = self._value_head(tok.TDC_ZERO + 1, cfg.tdc_vocab)
        self.head_adc = nn.ModuleList([self._value_head(tok.N_ADC, cfg.adc_vocab) for _ in cfg.sections])
        adc_value = torch.zeros(cfg.adc_vocab)
        adc_value[: tok.N_ADC] = torch.from_numpy(tok.ADC_BINNING.decode(np.arange(tok.N_ADC))).float()
        self.register_buffer("adc_value", adc_value, persistent=False)  # decoded ADC per token; 0 for specials
        self.deposit_mlp = nn.Sequential(nn.Linear(1, d), nn.GELU(), nn.Linear(d, d)) if cfg.deposit_feature else None
        self.emb_energy = self.energy_ln = self.head_energy = self.layer_energy_mlp = None
        if cfg.energy_first:
            # an energy token enters as four numbers (energy_embeddings), not as a row of a table, so
            # that neighbouring bins start alike; the event's total energy has a spread of 3-8%, much
            # narrower than each layer's, hence the running sum among them
            self.emb_energy = nn.Sequential(nn.Linear(4, d), nn.GELU(), nn.Linear(d, d))
            self.energy_ln = nn.LayerNorm(d)
            if cfg.energy_lead == "mlp":  # drawn by self.lead (below), not from the trunk
                self.head_energy = None
            elif cfg.energy_head == "mixture":
                self.head_energy = MixtureHead(d, tok.N_ENERGY, cfg.energy_vocab - tok.N_ENERGY, cfg.energy_components)
            else:
                self.head_energy = FlatHead(d, tok.N_ENERGY, cfg.energy_vocab - tok.N_ENERGY)
            energy_value = torch.zeros(cfg.energy_vocab)
            energy_value[: tok.N_ENERGY] = torch.from_numpy(tok.energy_fractions(np.arange(tok.N_ENERGY))).float()
            self.register_buffer("energy_value", energy_value, persistent=False)  # fraction per energy token; 0 when empty
            total_value = torch.zeros(cfg.energy_vocab)
            total_value[: tok.N_ENERGY] = torch.from_numpy(tok.total_fractions(np.arange(tok.N_ENERGY))).float()
            self.register_buffer("total_value", total_value, persistent=False)  # fraction per total token
            if cfg.layer_energy_feature:
                self.layer_energy_mlp = nn.Sequential(nn.Linear(2, d), nn.GELU(), nn.Linear(d, d))
        if cfg.value_heads_see_strip:
            self.value_strip = nn.Embedding(cfg.strip_vocab, d)
            self.value_mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        else:
            self.value_strip, self.value_mlp = None, None
        self.value_axis = nn.Linear(1 + 2 * AXIS_OCTAVES, d) if cfg.value_heads_see_axis else None
        self.register_buffer("strip_first", torch.as_tensor(tok.STRIP_OFFSETS[:-1], dtype=torch.long), persistent=False)
        self.tdc_strip = self.tdc_adc = self.tdc_mlp = None
        if cfg.tdc_sees_hit:
            self.tdc_strip = nn.Embedding(cfg.strip_vocab, d)
            self.tdc_adc = nn.Linear(1 + 2 * ADC_OCTAVES, d)
            self.tdc_mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        section_of = torch.full((cfg.strip_vocab,), -1, dtype=torch.long)
        for i, (lo, hi) in enumerate(cfg.sections):
            section_of[lo:hi] = i
        self.register_buffer("section_of", section_of, persistent=False)
        self.apply(init_weights)
        for layer in self.prefix:  # the conditioning MLP keeps PyTorch's default initialisation (see above)
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        if self.cond_tokens is not None:  # starts as the paper's model: the offset grows from zero
            nn.init.zeros_(self.cond_tokens.weight)
            nn.init.zeros_(self.cond_tokens.bias)
        for mlp in (self.value_mlp, self.tdc_mlp):  # likewise the strip's (and ADC's) contribution to the value heads
            if mlp is not None:
                nn.init.zeros_(mlp[-1].weight)
        if self.value_axis is not None:
            nn.init.zeros_(self.value_axis.weight)
            nn.init.zeros_(self.value_axis.bias)
        for mlp in (self.deposit_mlp, self.layer_energy_mlp):  # and the deposit's and layer energy's
            if mlp is not None:
                mlp[0].reset_parameters()
                nn.init.zeros_(mlp[-1].weight)
        for name, p in self.named_parameters():  # GPT-2 style: scale the residual projections
            if name.endswith("proj.weight") and "emb" not in name or name.endswith("ff.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_blocks))
        # the lead model keeps PyTorch's default initialisation, like the conditioning MLP
        self.lead = (
            EnergyLead(cfg.lead_width, cfg.lead_depth, cfg.energy_components, cfg.momentum_scale_gev, 1 if cfg.energy_lead == "total" else N_FACTORS)
            if cfg.energy_lead != "trunk"
            else None
        )

    def _value_head(self, n_values: int, vocab: int) -> nn.Module:
        if self.cfg.value_head == "flat":
            return FlatHead(self.cfg.d_model, n_values, vocab - n_values)
        if self.cfg.value_head == "factorised":
            return FactorisedHead(self.cfg.d_model, n_values, vocab - n_values, self.cfg.value_group)
        raise ValueError(f"value_head must be flat or factorised (got {self.cfg.value_head})")

    @property
    def n_energy(self) -> int:
        """Energy tokens before SOS: none, the nine layers, or (energy_total_first) the total and the nine layers."""
        return (tok.N_LAYERS + int(self.cfg.energy_total_first)) if self.cfg.energy_first else 0

    @property
    def n_lead(self) -> int:
        """Positions before SOS: the prefix, then the energy tokens."""
        return self.cfg.n_prefix + self.n_energy

    def energy_sequence(self, energy: torch.Tensor, energy_total: torch.Tensor | None) -> torch.Tensor:
        """The energy tokens in sequence order (B, n_energy) from the layers' (B, 9) and the total's (B, 1)."""
        return torch.cat([energy_total, energy], dim=1) if self.cfg.energy_total_first else energy

    def energy_embeddings(
        self, energy: torch.Tensor, first: int = 0, before: torch.Tensor | None = None, total: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embeddings (B, k, d) of the energy tokens (B, k) at energy positions first, first + 1, ...
        (energy_sequence's order); before (B,): the sum of the layer fractions before `first` (0 when
        None); total (B,): the drawn total fraction of total-first models (when first > 0).
        A token enters as its bin's place on the log scale (0..1), its fraction, whether it is empty,
        and the running sum of the layer fractions up to it, or in total-first models the total minus
        that sum (what the layers after it must hold); the total's own position is the special layer."""
        k = energy.shape[1]
        shift = int(self.cfg.energy_total_first)
        slot = torch.arange(first, first + k, device=energy.device)
        layers = torch.where(slot < shift, torch.full_like(slot, tok.SPECIAL_LAYER), slot - shift)
        is_total = (slot < shift)[None]
        empty = energy == tok.ENERGY_ZERO
        place = torch.where(empty, torch.zeros_like(energy), energy + 1).float() / tok.N_ENERGY
        frac = torch.where(is_total, self.total_value[energy], self.energy_value[energy])
        running = torch.cumsum(torch.where(is_total, torch.zeros_like(frac), frac), dim=1) + (0.0 if before is None else before[:, None])
        if shift:
            total = frac[:, :1] if first == 0 else total[:, None]
            running = total - running
        x = torch.stack([place, frac * self.LAYER_ENERGY_SCALE, empty.float(), running * self.LAYER_ENERGY_SCALE], dim=-1)
        return self.emb_drop(self.energy_ln(self.emb_energy(x) + self.emb_layer(layers)[None]))

    def energy_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (..., energy_vocab) of the next layer energy."""
        return self.head_energy.log_probs(h)

    LAYER_ENERGY_SCALE = 4.0  # the layer-energy feature's inputs are fractions of |p| (at most about 0.5)

    def layer_energy(self, target: torch.Tensor, remaining: torch.Tensor) -> torch.Tensor:
        """The layer-energy feature's input (..., 2) from the current layer's energy and what is left of it."""
        return torch.stack([target, remaining], dim=-1) * self.LAYER_ENERGY_SCALE

    def layer_energy_inputs(
        self, momentum: torch.Tensor, strip: torch.Tensor, adc: torch.Tensor, layer: torch.Tensor, energy: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced layer-energy feature (B, T, 2) of token inputs (B, T) and energy tokens (B, 9):
        at each position, the layer the next hit belongs to (SOS: 0; a LAYER_SEP: the next layer),
        its energy and that energy minus the ADC of its hits up to this position."""
        current = torch.cumsum((strip == tok.STRIP.sep).long(), dim=1).clamp(max=tok.N_LAYERS - 1)
        target = torch.gather(self.energy_value[energy], 1, current)
        member = layer[..., None] == torch.arange(tok.N_LAYERS, device=layer.device)
        by_layer = torch.cumsum(self.adc_value[adc][..., None] * member, dim=1)  # (B, T, 9)
        deposited = torch.gather(by_layer, 2, current[..., None])[..., 0]
        scale = momentum.norm(dim=-1).clamp(min=1e-6)[:, None] * tok.ADC_PER_GEV
        return self.layer_energy(target, target - deposited / scale)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def conditioning(self, momentum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3) GeV -> the prefix embeddings (B, n_prefix, d) and, with condition_every_position,
        the offset (B, d) added to every token embedding (else None)."""
        p = momentum.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        u = momentum / p
        freq = math.pi * 2.0 ** torch.arange(self.cfg.direction_octaves, device=u.device, dtype=u.dtype)
        phase = (u[..., None] * freq).flatten(-2)
        x = torch.cat([u, torch.log(p / self.cfg.momentum_scale_gev), torch.sin(phase), torch.cos(phase)], dim=-1)
        hidden = self.prefix[:-1](x)
        prefix = self.prefix_ln(self.prefix[-1](hidden).view(len(momentum), self.cfg.n_prefix, self.cfg.d_model))
        return prefix, (self.cond_tokens(hidden) if self.cond_tokens is not None else None)

    def prefix_embeddings(self, momentum: torch.Tensor) -> torch.Tensor:
        """(B, 3) GeV -> (B, n_prefix, d)."""
        return self.conditioning(momentum)[0]

    def embed(
        self,
        strip: torch.Tensor,
        adc: torch.Tensor,
        tdc: torch.Tensor,
        layer: torch.Tensor,
        rank: torch.Tensor,
        cond: torch.Tensor | None = None,
        deposit: torch.Tensor | None = None,
        layer_energy: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings (B, T, d); cond (B, d) is the per-event offset of condition_every_position,
        deposit (B, T) the deposit fraction of deposit_feature (deposit_fraction), layer_energy
        (B, T, 2) the input of layer_energy_feature (layer_energy)."""
        x = torch.cat([self.emb_strip(strip), self.emb_adc(adc), self.emb_tdc(tdc)], dim=-1)
        x = self.emb_proj(x) + self.emb_rank(rank) + self.emb_layer(layer)
        if cond is not None:
            x = x + cond[:, None, :]
        if self.deposit_mlp is not None:
            x = x + self.deposit_mlp(deposit[..., None].to(x.dtype))
        if self.layer_energy_mlp is not None:
            x = x + self.layer_energy_mlp(layer_energy.to(x.dtype))
        return self.emb_drop(self.emb_ln(x))

    def deposit_fraction(self, momentum: torch.Tensor, adc_sum: torch.Tensor) -> torch.Tensor:
        """ADC deposited so far (..., in decoded ADC units) / (|p| adc_per_gev); momentum (B, 3),
        adc_sum (B,) or (B, T)."""
        p = momentum.norm(dim=-1).clamp(min=1e-6) * self.cfg.adc_per_gev
        return adc_sum / (p if adc_sum.dim() == 1 else p[:, None])

    def trunk(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        return trunk_forward(self, x, cache)

    def axis_of(self, momentum: torch.Tensor) -> torch.Tensor | None:
        """The line of flight's coordinate in every readout layer (B, 9), in strips
        (tokenizer.axis_coordinates), for models whose value heads see it; else None."""
        if self.value_axis is None:
            return None
        return torch.from_numpy(tok.axis_coordinates(momentum.detach().double().cpu().numpy())).to(momentum.device)

    def axis_features(self, strip: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
        """Fourier features (M, 1 + 2 AXIS_OCTAVES) of each hit's offset from the line of flight in
        its layer, for strip tokens (M,) of events whose axis_of rows are axis (M, 9); 0 at specials."""
        layer = (torch.searchsorted(self.strip_first, strip, right=True) - 1).clamp(0, tok.N_LAYERS - 1)
        offset = (strip - self.strip_first[layer]).float() + 0.5 - axis.gather(1, layer[:, None])[:, 0]
        v = torch.where(strip < tok.N_STRIPS, offset.clamp(-AXIS_RANGE, AXIS_RANGE) / AXIS_RANGE, torch.zeros_like(offset))[:, None]
        k = torch.pi * 2.0 ** torch.arange(AXIS_OCTAVES, device=strip.device)
        return torch.cat([v, torch.sin(v * k), torch.cos(v * k)], dim=-1)

    def value_hidden(self, h: torch.Tensor, strip: torch.Tensor, axis: torch.Tensor | None = None) -> torch.Tensor:
        """The input of the ADC and TDC heads for hidden states h (M, d) whose hit has this strip
        token (M,): h itself in the paper's model, else h + MLP(h + embedding of the strip), and with
        value_heads_see_axis + a map of the strip's offset from the line of flight (axis: the rows'
        axis_of, (M, 9))."""
        if self.value_mlp is None:
            return h
        x = h + self.value_strip(strip)
        if self.value_axis is not None:
            x = x + self.value_axis(self.axis_features(strip, axis).to(h.dtype))
        return h + self.value_mlp(x)

    def strip_log_probs(self, h: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.head_strip(h).float(), dim=-1)

    def tdc_hidden(self, h: torch.Tensor, strip: torch.Tensor, adc: torch.Tensor) -> torch.Tensor:
        """The TDC head's input for value-head inputs h (M, d) of hits with these strip and ADC
        tokens (M,): h itself unless tdc_sees_hit, else h + MLP(h + strip embedding + a function of
        log10 ADC, its value and Fourier features)."""
        if self.tdc_mlp is None:
            return h
        v = (torch.log10(self.adc_value[adc].clamp(min=1.0)) / 5.0)[:, None]  # [0, 1] over the ADC range
        k = torch.pi * 2.0 ** torch.arange(ADC_OCTAVES, device=h.device)
        f = torch.cat([v, torch.sin(v * k), torch.cos(v * k)], dim=-1).to(h.dtype)
        return h + self.tdc_mlp(h + self.tdc_strip(strip) + self.tdc_adc(f))

    def tdc_log_prob_of(self, h: torch.Tensor, target: torch.Tensor, strip: torch.Tensor, adc: torch.Tensor) -> torch.Tensor:
        return self.head_tdc.log_prob(self.tdc_hidden(h, strip, adc), target)

    def sample_tdc(self, h: torch.Tensor, strip: torch.Tensor, adc: torch.Tensor, temperature: float, top_k: int, u, u_fine) -> torch.Tensor:
        """TDC tokens (M,) for value-head inputs h of hits with these strip and drawn ADC tokens; with
        tdc_threshold_rule always a time (not TDC_ZERO), the threshold deciding later."""
        n_values = tok.N_TDC if self.cfg.tdc_threshold_rule else None
        return self.head_tdc.sample(self.tdc_hidden(h, strip, adc), temperature, top_k, u, u_fine, n_values)

    def section_log_weights(self, strip_logp: torch.Tensor) -> torch.Tensor:
        """Soft section routing: log of the predicted strip probability summed over each section's
        strips (..., S). The special tokens belong to no section; their probability is shared
        equally among the heads, so the weights sum to one and every head can emit specials."""
        n_sections = len(self.head_adc)
        member = (self.section_of[:, None] == torch.arange(n_sections, device=strip_logp.device)).float()
        member = member + (self.section_of < 0).float()[:, None] / n_sections
        return torch.log(torch.exp(strip_logp) @ member + 1e-30)

    def sample_adc(
        self, h: torch.Tensor, section: torch.Tensor, temperature: float, top_k: int, u: torch.Tensor, u_fine: torch.Tensor
    ) -> torch.Tensor:
        """An ADC value token per row from the head of its section (B,): with the section known, the
        routing weights of the other heads are zero; a third of the work of evaluating all heads."""
        out = torch.empty(len(h), dtype=torch.long, device=h.device)
        for i, head in enumerate(self.head_adc):
            rows = torch.nonzero(section == i).squeeze(1)
            if len(rows):
                out[rows] = head.sample(h[rows], temperature, top_k, u[rows], u_fine[rows])
        return out

    def adc_log_probs(self, h: torch.Tensor, strip_logp: torch.Tensor) -> torch.Tensor:
        """The routed ADC distribution: log sum_s w_s p_s(.), (..., V)."""
        per_head = torch.stack([head.log_probs(h) for head in self.head_adc], dim=-2)
        return torch.logsumexp(self.section_log_weights(strip_logp)[..., None] + per_head, dim=-2)

    def adc_log_prob_of(self, h: torch.Tensor, strip_logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """log p(target) under the routed ADC distribution, (M,), one fused cross-entropy per head
        instead of materialising the mixture."""
        per_head = torch.stack([head.log_prob(h, target) for head in self.head_adc], dim=-1)
        return torch.logsumexp(self.section_log_weights(strip_logp) + per_head, dim=-1)

    def hidden(
        self, momentum: torch.Tensor, strip, adc, tdc, layer, rank, energy=None, energy_total=None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced hidden states for token inputs (B, T) and, with energy_first, the energy
        tokens of the layers (B, 9) and of the total (B, 1; energy_total_first): (B, T, d), one per
        input token (position t predicts token t + 1), and the (B, n_energy, d) states that predict
        the energy tokens (the last prefix position and all energies but the last; else None)."""
        prefix, cond = self.conditioning(momentum)
        deposit = self.deposit_fraction(momentum, torch.cumsum(self.adc_value[adc], dim=1)) if self.deposit_mlp is not None else None
        lead = [prefix]
        layer_energy = None
        if self.cfg.energy_first:
            lead.append(self.energy_embeddings(self.energy_sequence(energy, energy_total)))
            if self.layer_energy_mlp is not None:
                layer_energy = self.layer_energy_inputs(momentum, strip, adc, layer, energy)
        x = torch.cat([*lead, self.embed(strip, adc, tdc, layer, rank, cond, deposit, layer_energy)], dim=1)
        h = self.trunk(x)
        p = self.cfg.n_prefix
        return h[:, self.n_lead :], (h[:, p - 1 : p + self.n_energy - 1] if self.cfg.energy_first else None)

    def forward(self, momentum: torch.Tensor, strip, adc, tdc, layer, rank, energy=None, energy_total=None) -> torch.Tensor:
        """Teacher-forced hidden states (B, T, d) of the token inputs (hidden)."""
        return self.hidden(momentum, strip, adc, tdc, layer, rank, energy, energy_total)[0]
