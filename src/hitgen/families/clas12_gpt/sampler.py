"""Autoregressive generation with enforced event structure and per-event random streams.

Prefill the nine prefix embeddings and SOS, then one fused hit (strip, ADC, TDC) per step. The
structure is enforced by masking, not hoped for (HitSampler):
- a strip must belong to the current readout layer and exceed the layer's previous strip;
- at most 20 hits per layer (then only the terminator is allowed);
- LAYER_SEP ends layers 0-7, EOS ends layer 8: layers come in order and every event ends.
ADC and TDC are drawn only from value tokens at hit positions. The ADC mixture's section weights
are the masked strip distribution, which lies inside the current layer's section: the ADC comes
from that section's head (the paper's soft routing, evaluated on the allowed strips).

Decoders: "plain" (batch by batch, growing cache; the default), "static" (the engine of
hitgen.families.clas12_gpt.engine) and "naive" (no cache). Every draw takes its uniform number from the event's own
stream (hitgen.nn.streams), so all three give the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.families.base import SamplingOptions
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.model import HitGPT
from hitgen.nn import streams
from hitgen.nn.blocks import KVCache, new_cache
from hitgen.nn.draw import sample_from, sample_values


def _section_of_layer() -> torch.Tensor:
    return torch.tensor([layer // 3 for layer in range(tok.N_LAYERS)])


@dataclass
class LayerState:
    """Where each row's event stands: current readout layer, hits so far in it, its previous strip."""

    layer: torch.Tensor
    count: torch.Tensor
    last: torch.Tensor

    @classmethod
    def start(cls, n: int, device: torch.device) -> LayerState:
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        return cls(zeros, zeros.clone(), torch.full_like(zeros, -1))

    def select(self, rows: torch.Tensor) -> LayerState:
        return LayerState(self.layer[rows], self.count[rows], self.last[rows])

    def reset(self, rows: torch.Tensor) -> None:
        self.layer[rows], self.count[rows], self.last[rows] = 0, 0, -1


@dataclass
class Hit:
    """One drawn position per row: the three tokens and the layer/rank embedding inputs."""

    strip: torch.Tensor
    adc: torch.Tensor
    tdc: torch.Tensor
    layer_id: torch.Tensor
    rank: torch.Tensor
    # tdc_threshold_rule: the time drawn for every hit; `tdc` (the trunk's input) is TDC_ZERO where
    # the drawn ADC is below the threshold, as in the training data
    time: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> Hit:
        time = None if self.time is None else self.time[rows]
        return Hit(self.strip[rows], self.adc[rows], self.tdc[rows], self.layer_id[rows], self.rank[rows], time)

    def embed(
        self, model: HitGPT, cond: torch.Tensor | None, features: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    ) -> torch.Tensor:
        """Embeddings (B, 1, d); features: the deposit fraction (B,) including this hit (deposit_feature)
        and the layer-energy input (B, 2) after it (layer_energy_feature), from Budget.add."""
        deposit, layer_energy = features
        dep = None if deposit is None else deposit[:, None]
        le = None if layer_energy is None else layer_energy[:, None]
        return model.embed(self.strip[:, None], self.adc[:, None], self.tdc[:, None], self.layer_id[:, None], self.rank[:, None], cond, dep, le)


class Budget:
    """What each row's event has deposited: the running ADC sum (deposit_feature) and, for
    energy-first models, the drawn layer energies and the ADC of the current layer's hits so far
    (layer_energy_feature). Inert for models with neither."""

    def __init__(self, model: HitGPT, momentum: torch.Tensor) -> None:
        self.model = model
        self.deposit_on = model.deposit_mlp is not None
        self.energy_on = model.cfg.energy_first
        self.momentum = momentum
        self.adc_sum = torch.zeros(len(momentum), device=momentum.device)
        self.layer_sum = torch.zeros(len(momentum), device=momentum.device)
        self.target = torch.zeros(len(momentum), tok.N_LAYERS, device=momentum.device)  # fractions of |p| x ADC_PER_GEV
        self.total: torch.Tensor | None = None  # the drawn total energy token (B,) of total-first models
        self.axis = model.axis_of(momentum)  # the line of flight per layer (value_heads_see_axis), else None

    def set_energy(self, energy: torch.Tensor, rows: torch.Tensor | None = None, total: torch.Tensor | None = None) -> None:
        """The drawn energy tokens of the layers (B, 9) of these rows (all rows when None) and, in
        total-first models, of the total (B,), kept as `total` (the hits see the layers' only)."""
        self.total = total
        if self.energy_on:
            value = self.model.energy_value[energy]
            if rows is None:
                self.target = value
            else:
                self.target[rows] = value

    def empty(self, layer: torch.Tensor) -> torch.Tensor:
        """Whether each row's current layer was drawn empty (B,): no hit may be drawn there."""
        return self.target.gather(1, layer.clamp(max=tok.N_LAYERS - 1)[:, None])[:, 0] == 0

    def start(self) -> torch.Tensor | None:
        """The layer-energy input at SOS (B, 2): layer 0, nothing deposited yet."""
        if self.model.layer_energy_mlp is None:
            return None
        return self.model.layer_energy(self.target[:, 0], self.target[:, 0])

    def add(self, hit: Hit, after: LayerState) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Add the drawn hit; the deposit fraction and the layer-energy input to embed with it."""
        value = self.model.adc_value[hit.adc]  # 0 at LAYER_SEP and EOS
        deposit = layer_energy = None
        if self.deposit_on:
            self.adc_sum = self.adc_sum + value
            deposit = self.model.deposit_fraction(self.momentum, self.adc_sum)
        if self.energy_on:
            self.layer_sum = torch.where(hit.strip == tok.STRIP.sep, torch.zeros_like(self.layer_sum), self.layer_sum + value)
            if self.model.layer_energy_mlp is not None:
                target = self.target.gather(1, after.layer.clamp(max=tok.N_LAYERS - 1)[:, None])[:, 0]
                scale = self.momentum.norm(dim=-1).clamp(min=1e-6) * tok.ADC_PER_GEV
                layer_energy = self.model.layer_energy(target, target - self.layer_sum / scale)
        return deposit, layer_energy

    def select(self, rows: torch.Tensor) -> None:
        self.momentum, self.adc_sum, self.layer_sum, self.target = self.momentum[rows], self.adc_sum[rows], self.layer_sum[rows], self.target[rows]
        if self.axis is not None:
            self.axis = self.axis[rows]

    def reset(self, rows: torch.Tensor, momentum: torch.Tensor) -> None:
        self.momentum[rows], self.adc_sum[rows], self.layer_sum[rows] = momentum, 0.0, 0.0
        if self.axis is not None:
            self.axis[rows] = self.model.axis_of(momentum)


class HitSampler:
    """The masked draw of one fused hit from hidden states, shared by every decoder:
    - a strip must belong to the current readout layer and exceed the layer's previous strip;
    - at most 20 hits per layer (then only the terminator is allowed);
    - LAYER_SEP ends layers 0-7, EOS ends layer 8.
    ADC and TDC come from value tokens only, the ADC from the current section's head (the routing
    weights of the other heads are zero under the strip mask)."""

    def __init__(self, model: HitGPT, opts: SamplingOptions, device: torch.device) -> None:
        self.model, self.opts = model, opts
        self.layer_first = torch.as_tensor(tok.STRIP_OFFSETS, device=device)
        self.strip_ids = torch.arange(tok.STRIP.vocab_size, device=device)
        self.section_of_layer = _section_of_layer().to(device)

    def draw(self, h: torch.Tensor, state: LayerState, keys: torch.Tensor, position: torch.Tensor, budget: Budget) -> tuple[Hit, LayerState]:
        """Tokens at token `position` (B,) for hidden states h (B, d); keys (B, 2) of the events.
        For energy-first models a layer drawn empty ends at once and any other gets at least one hit."""
        model, opts = self.model, self.opts
        layer, count = state.layer, state.count
        last = torch.where(state.last < 0, self.layer_first[layer] - 1, state.last)
        strip_logp = model.strip_log_probs(h)
        ids = self.strip_ids[None]
        room = count < tok.MAX_HITS
        may_end = torch.ones_like(room)
        if budget.energy_on:
            empty = budget.empty(layer)
            room, may_end = room & ~empty, empty | (count > 0)
        allowed = (ids > last[:, None]) & (ids < self.layer_first[layer + 1][:, None]) & room[:, None]
        allowed[:, tok.STRIP.sep] = (layer < tok.N_LAYERS - 1) & may_end
        allowed[:, tok.STRIP.eos] = (layer == tok.N_LAYERS - 1) & may_end
        strip = sample_from(strip_logp, allowed, opts.temperature, opts.top_k, streams.draw_uniforms(keys, position, streams.STRIP))
        is_hit = strip < tok.N_STRIPS
        is_sep = strip == tok.STRIP.sep
        # value tokens: ADC 0..N_ADC-1, TDC 0..TDC_ZERO (the specials follow them)
        h = model.value_hidden(h, strip, budget.axis)
        section = self.section_of_layer[layer.clamp(max=tok.N_LAYERS - 1)]
        u = [streams.draw_uniforms(keys, position, s) for s in (streams.ADC, streams.ADC_FINE, streams.TDC, streams.TDC_FINE)]
        adc = model.sample_adc(h, section, opts.temperature, opts.value_top_k, u[0], u[1])
        tdc = time = model.sample_tdc(h, strip, adc, opts.temperature, opts.value_top_k, u[2], u[3])
        if model.cfg.tdc_threshold_rule:
            time = torch.where(is_hit, time, torch.where(is_sep, tok.TDC.sep, tok.TDC.eos))
            tdc = torch.where(torch.round(model.adc_value[adc]) < tok.TDC_THRESHOLD, tok.TDC_ZERO, tdc)
        else:
            time = None
        hit = Hit(
            strip=strip,
            adc=torch.where(is_hit, adc, torch.where(is_sep, tok.ADC.sep, tok.ADC.eos)),
            tdc=torch.where(is_hit, tdc, torch.where(is_sep, tok.TDC.sep, tok.TDC.eos)),
            layer_id=torch.where(is_hit, layer, torch.full_like(layer, tok.SPECIAL_LAYER)),
            rank=torch.where(is_hit, count, torch.full_like(count, tok.SPECIAL_RANK)),
            time=time,
        )
        after = LayerState(
            layer=layer + is_sep.long(),
            count=torch.where(is_hit, count + 1, torch.zeros_like(count)),
            last=torch.where(is_hit, strip, torch.full_like(strip, -1)),
        )
        return hit, after


# the energy tokens of energy-first models draw their uniforms at token positions past the last
# (MAX_LENGTH + layer), on the strip stream (the bin) and the ADC stream (the place within the bin)
ENERGY_POSITION = tok.MAX_LENGTH


# the place of a hit's time within its TDC bin (tdc_in_bin): the TDC stream at token positions past
# the last (MAX_LENGTH + position), where the energy tokens draw only on the strip and ADC streams
TDC_PLACE_POSITION = tok.MAX_LENGTH


def tdc_places(keys: torch.Tensor) -> np.ndarray:
    """The place within its bin of the time at every token position (B, MAX_LENGTH) of the events with these keys (B, 2)."""
    b = len(keys)
    position = torch.arange(tok.MAX_LENGTH, device=keys.device).repeat(b) + TDC_PLACE_POSITION
    return streams.draw_uniforms(keys.repeat_interleave(tok.MAX_LENGTH, dim=0), position, streams.TDC).view(b, tok.MAX_LENGTH).cpu().numpy()


def _continuous(binning, token: torch.Tensor, place: torch.Tensor) -> torch.Tensor:
    """Energy tokens (B, k) placed within their log bins by uniform numbers (B, k): fractions (float64), 0 when empty."""
    frac = binning.at(token.double(), place.double())
    return torch.where(token == tok.ENERGY_ZERO, torch.zeros_like(frac), frac)


# the lead model's total (energy_lead = "mlp") draws at the token position after its nine layers'
LEAD_TOTAL_POSITION = ENERGY_POSITION + tok.N_LAYERS


def draw_lead_total(model: HitGPT, momentum: torch.Tensor, keys: torch.Tensor, opts: SamplingOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """The lead model's total (its first factor): the token (B,) and the fraction of |p| x ADC_PER_GEV
    (B, 1) float64, placed within its bin by the event's stream."""
    b, device = len(momentum), momentum.device
    energy = torch.full((b, tok.N_LAYERS), tok.ENERGY_ZERO, dtype=torch.long, device=device)
    zeros = torch.zeros(b, dtype=torch.long, device=device)
    position = torch.full((b,), LEAD_TOTAL_POSITION, device=device)
    log_probs = model.lead.log_probs(momentum.float(), zeros, energy, 0)
    total = sample_values(log_probs, opts.temperature, opts.value_top_k, streams.draw_uniforms(keys, position, streams.STRIP))
    return total, _continuous(tok.TOTAL_BINNING, total[:, None], streams.draw_uniforms(keys, position, streams.ADC)[:, None])


def draw_lead(model: HitGPT, momentum: torch.Tensor, keys: torch.Tensor, opts: SamplingOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """The lead model's draw (energy_lead = "mlp"): the total, then the nine layers, each placed
    within its bin by the event's stream, the layers scaled to add up to the total. Returns the
    layers' tokens of the scaled fractions (B, 9), what the trunk reads, and the scaled fractions
    (B, 9) float64, what the hits are scaled to (rescale_to_layer_energy)."""
    b, device = len(momentum), momentum.device
    lead, m = model.lead, momentum.float()
    energy = torch.full((b, tok.N_LAYERS), tok.ENERGY_ZERO, dtype=torch.long, device=device)
    total, total_frac = draw_lead_total(model, momentum, keys, opts)
    place = []
    for k in range(tok.N_LAYERS):
        position = torch.full((b,), ENERGY_POSITION + k, device=device)
        u = streams.draw_uniforms(keys, position, streams.STRIP)
        energy[:, k] = sample_values(lead.log_probs(m, total, energy, 1 + k), opts.temperature, opts.value_top_k, u)
        place.append(streams.draw_uniforms(keys, position, streams.ADC))
    frac = _continuous(tok.ENERGY_BINNING, energy, torch.stack(place, dim=1))
    frac = frac * total_frac / frac.sum(dim=1, keepdim=True).clamp(min=1e-300)
    scaled = np.where(frac.cpu().numpy() > 0, tok.ENERGY_BINNING.encode(frac.cpu().numpy()), tok.ENERGY_ZERO)
    return torch.as_tensor(scaled, dtype=torch.long, device=device), frac


def start_tokens(
    model: HitGPT, momentum: torch.Tensor, keys: torch.Tensor, opts: SamplingOptions, cache: KVCache | None, budget: Budget
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Everything up to SOS through the trunk: the prefix, for energy-first models the energy tokens
    drawn one by one (the layers' set into the budget; total-first: the total first), and SOS. Returns the hidden state at SOS (B, d),
    the per-event token offset (or None), without a cache the inputs so far (B, n_lead + 1, d) (else
    None), and with rescale_to_layer_energy the drawn layer energies in ADC (B, 9) (else None)."""
    b, device = len(momentum), momentum.device
    seq = None

    def feed(x: torch.Tensor) -> torch.Tensor:
        nonlocal seq
        if cache is None:
            seq = x if seq is None else torch.cat([seq, x], dim=1)
            return model.trunk(seq)[:, -1]
        return model.trunk(x, cache)[:, -1]

    layer_adc = None
    if not model.cfg.energy_first:
        prefix, cond = model.conditioning(momentum)
        x = prefix
    else:
        # the prefix and the energies in fp32 even under bf16 autocast: they fix the event's
        # total energy, its most precise observable (a spread of 3-8%), and bf16 logits moved 84% of
        # events' draws by a 1% bin, the total by -0.03% on average (tests/test_shipped_model.py)
        fast = torch.is_autocast_enabled(device.type)
        with torch.autocast(device.type, enabled=False):
            prefix, cond = model.conditioning(momentum)
            x = prefix
            tokens, place = [], []
            running = torch.zeros(b, device=device)  # the layer fractions drawn so far
            total = None  # the drawn total fraction (total-first models)
            shift = int(model.cfg.energy_total_first)
            mode = model.cfg.energy_lead
            lead = draw_lead(model, momentum, keys, opts) if mode == "mlp" else None  # the lead model draws, the trunk reads
            lead_total = draw_lead_total(model, momentum, keys, opts)[1] if mode == "total" else None
            for k in range(model.n_energy):
                h = feed(x)
                position = torch.full((b,), ENERGY_POSITION + k, device=device)
                if lead is not None:
                    token = lead[0][:, k]
                else:
                    token = sample_values(
                        model.energy_logits(h), opts.temperature, opts.value_top_k, streams.draw_uniforms(keys, position, streams.STRIP)
                    )
                if k >= shift and total is not None:  # a total drawn empty leaves every layer empty
                    token = torch.where(total == 0, tok.ENERGY_ZERO, token)
                tokens.append(token)
                place.append(streams.draw_uniforms(keys, position, streams.ADC))
                x = model.energy_embeddings(tokens[-1][:, None], first=k, before=running, total=total)
                if k < shift:
                    total = model.total_value[tokens[-1]]
                else:
                    running = running + model.energy_value[tokens[-1]]
        if fast and cache is not None:  # the positions that follow are written in the autocast dtype
            cache.cast(torch.get_autocast_dtype(device.type))
        energy = torch.stack(tokens[shift:], dim=1)
        budget.set_energy(energy, total=tokens[0] if shift else None)
        if model.cfg.rescale_to_layer_energy:
            layer_frac = _continuous(tok.ENERGY_BINNING, energy, torch.stack(place[shift:], dim=1)) if lead is None else lead[1]
            if shift or lead_total is not None:  # the layers scaled to add up to the drawn total
                total_frac = _continuous(tok.TOTAL_BINNING, tokens[0][:, None], place[0][:, None]) if shift else lead_total
                layer_frac = layer_frac * total_frac / layer_frac.sum(dim=1, keepdim=True).clamp(min=1e-300)
            layer_adc = layer_frac * momentum.double().norm(dim=-1, keepdim=True) * tok.ADC_PER_GEV
        feed(x)  # the last energy: one position at a time, as the cache takes them after a prefill
        x = None
    sos = [torch.full((b, 1), s.sos, dtype=torch.long, device=device) for s in (tok.STRIP, tok.ADC, tok.TDC)]
    special = torch.full((b, 1), tok.SPECIAL_LAYER, dtype=torch.long, device=device)
    deposit = torch.zeros(b, 1, device=device) if model.deposit_mlp is not None else None
    le = budget.start()
    first = model.embed(*sos, special, torch.full_like(special, tok.SPECIAL_RANK), cond, deposit, None if le is None else le[:, None])
    h = feed(first if x is None else torch.cat([x, first], dim=1))
    return h, cond, seq, layer_adc


def empty_tokens(b: int, device: torch.device, time: bool = False) -> dict[str, torch.Tensor]:
    """Token arrays (B, MAX_LENGTH): SOS, then PAD; with `time` also the drawn times (Hit.time)."""
    out = {k: torch.full((b, tok.MAX_LENGTH), s.pad, dtype=torch.long, device=device) for k, s in STREAMS}
    for k, s in STREAMS:
        out[k][:, 0] = s.sos
    if time:
        out["tdc_time"] = out["tdc"].clone()
    return out


STREAMS = (("strip", tok.STRIP), ("adc", tok.ADC), ("tdc", tok.TDC))
# the plain decoder drops finished rows once at most this fraction of its rows is live (measured on
# 2 CPU cores, batch 1024: +15% over dropping them at every finish, which copies the whole cache)
COMPACT_AT = 0.9


@torch.no_grad()
def generate_tokens(model: HitGPT, momentum: torch.Tensor, keys: torch.Tensor, opts: SamplingOptions) -> dict[str, np.ndarray]:
    """Token arrays (B, MAX_LENGTH) for one batch of conditions: the plain decoder (growing
    key-value cache; finished events leave the batch in groups, COMPACT_AT) or, with decoder
    "naive", the whole sequence recomputed at every step. keys (B, 2): the events' random streams."""
    device = momentum.device
    b = len(momentum)
    places = tdc_places(keys) if model.cfg.tdc_in_bin else None
    sampler = HitSampler(model, opts, device)
    out = empty_tokens(b, device, model.cfg.tdc_threshold_rule)
    state = LayerState.start(b, device)
    active = torch.arange(b, device=device)  # rows of the batch still decoding; finished ones are dropped
    cache = new_cache(model) if opts.decoder != "naive" else None
    budget = Budget(model, momentum)
    h, cond, seq, layer_adc = start_tokens(model, momentum, keys, opts, cache, budget)  # without a cache, seq: every input so far
    if layer_adc is not None:
        out["layer_adc"] = layer_adc
    live = torch.ones(b, dtype=torch.bool, device=device)  # rows whose event has not ended
    for pos in range(1, tok.MAX_LENGTH):
        hit, state = sampler.draw(h, state, keys, torch.full((len(active),), pos, device=device), budget)
        features = budget.add(hit, state)
        for k, s in STREAMS:  # finished rows still in the batch write PAD
            out[k][active, pos] = torch.where(live, getattr(hit, k), s.pad)
        if hit.time is not None:
            out["tdc_time"][active, pos] = torch.where(live, hit.time, tok.TDC.pad)
        live = live & (hit.strip != tok.STRIP.eos)
        n_live = int(live.sum())
        if n_live == 0:
            break
        # drop finished events from the batch and the cache, not at every finish (each drop copies
        # the whole cache) but once a tenth of the rows have finished; until then they ride along
        if n_live <= COMPACT_AT * len(live):
            going = live
            active, state, keys = active[going], state.select(going), keys[going]
            hit = hit.select(going)
            cond = None if cond is None else cond[going]
            features = tuple(None if f is None else f[going] for f in features)
            budget.select(going)
            live = live[going]
            if cache is not None:
                cache.keep(going)
            else:
                seq = seq[going]
        x = hit.embed(model, cond, features)
        if cache is not None:
            h = model.trunk(x, cache)[:, -1]
        else:
            seq = torch.cat([seq, x], dim=1)
            h = model.trunk(seq)[:, -1]
    tokens = {k: v.cpu().numpy() for k, v in out.items()}
    if places is not None:
        tokens["tdc_place"] = places
    return tokens
