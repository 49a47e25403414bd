"""Training loss of the CLAS12 GPT: cross-entropy of three streams plus the structure terms.

- strip cross-entropy with LAYER_SEP weighted 4.5x and EOS 3.0x (the paper's values);
- ADC cross-entropy under the soft-routed mixture of section heads; TDC cross-entropy (both at hit
  positions: at LAYER_SEP/EOS these tokens are implied by the strip token);
- occupancy: where a real hit stands, -log(1 - p(LAYER_SEP or EOS)): the model must not stop early;
- per-layer length: Huber(delta 3) between the expected number of hits the model would emit in a
  layer and the true number, from its teacher-forced stop probabilities (below);
- energy-first models: the cross-entropy of the energy tokens (weight `energy`);
- distribution matching: total-variation distances between the batch's predicted and true strip
  and ADC histograms over hit positions, plus the squared relative error of the expected length.

Expected hits in a layer: with q_k the stop probability at the k-th item of the layer (k = 0..n,
the n true hits then the terminator), P(at least k+1 hits) = prod_{i<=k} (1 - q_i) for k < n; beyond
the true count the model is taken to keep the last stop probability q_n, a geometric tail
S_n (1 - q_n) / q_n, capped at the 20-hit limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.model import HitGPT


@dataclass
class LossWeights:
    sep_weight: float = 4.5
    eos_weight: float = 3.0
    occupancy: float = 3.0
    length: float = 0.4
    length_huber_delta: float = 3.0
    length_tail: bool = True  # the geometric tail beyond the true count in the expected length (see docs/families/clas12-gpt.md)
    distribution: float = 0.1
    energy: float = 1.0  # the layer energies' cross-entropy (energy-first models)
    # train the lead model alone (energy_lead = "mlp"): its cross-entropy is the loss, the trunk is not run
    lead_only: bool = False

    @classmethod
    def cross_entropy_only(cls) -> LossWeights:
        """The ablation: plain cross-entropy, no structure terms, no special-token weights."""
        return cls(sep_weight=1.0, eos_weight=1.0, occupancy=0.0, length=0.0, distribution=0.0)


ADC_GROUP = 50  # ADC bins per group in the distribution-matching histogram (100 groups)
ADC_HISTOGRAM_POSITIONS = 128  # hit positions per batch that estimate the predicted ADC histogram


def _tv(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return 0.5 * (p / p.sum().clamp(min=1e-12) - q / q.sum().clamp(min=1e-12)).abs().sum()


def expected_layer_lengths(
    q: torch.Tensor, is_hit: torch.Tensor, segment: torch.Tensor, n_segments: int, tail: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected and true hit counts per segment (an event's layer).

    q: stop probability per target position (M,), in sequence order; is_hit: whether the target is
    a hit (else it is the segment's terminator); segment: segment id per position, contiguous.
    tail=False leaves out the geometric tail beyond the true count: the expected number of the true
    hits the model emits before it stops (at most the true count).
    """
    log_keep = torch.where(is_hit, torch.log1p(-q.clamp(max=1 - 1e-6)), torch.zeros_like(q))
    c = torch.cumsum(log_keep, 0)
    first = torch.ones_like(is_hit)
    first[1:] = segment[1:] != segment[:-1]
    base = torch.zeros(n_segments, dtype=c.dtype, device=c.device).index_put((segment[first],), (c - log_keep)[first])
    survival = torch.exp(c - base[segment])  # P(at least k+1 hits) at the k-th hit
    n_true = torch.zeros(n_segments, dtype=c.dtype, device=c.device).index_add(0, segment, is_hit.to(c.dtype))
    body = torch.zeros_like(n_true).index_add(0, segment, torch.where(is_hit, survival, torch.zeros_like(survival)))
    term = ~is_hit
    # survival after the last true hit = exp(c at the terminator - base), since log_keep is 0 there
    s_last = torch.zeros_like(n_true).index_put((segment[term],), survival[term])
    q_end = torch.ones_like(n_true).index_put((segment[term],), q[term])
    if not tail:
        return body, n_true
    beyond = s_last * torch.minimum((1 - q_end) / q_end.clamp(min=1e-6), tok.MAX_HITS - n_true)
    return body + beyond, n_true


def lead_cross_entropy(model: HitGPT, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean cross-entropy of the total and the nine layer-energy tokens under the lead model
    (energy_lead = "mlp"), or of the total alone (energy_lead = "total": the trunk draws the layers)."""
    if model.cfg.energy_lead == "total":
        return -model.lead.total_log_prob(batch["momentum"], batch["energy_total"][:, 0]).mean()
    return -model.lead.teacher_forced(batch["momentum"], batch["energy_total"][:, 0], batch["energy"]).mean()


def compute_loss(model: HitGPT, batch: dict[str, torch.Tensor], weights: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced loss of a batch: tensors strip/adc/tdc/layer/rank (B, T), momentum (B, 3)."""
    if weights.lead_only:
        ce_energy = lead_cross_entropy(model, batch)
        return ce_energy, {"ce_energy": float(ce_energy.detach()), "loss": float(ce_energy.detach())}
    inputs = {k: batch[k][:, :-1] for k in ("strip", "adc", "tdc", "layer", "rank")}
    energy, energy_total = batch.get("energy"), batch.get("energy_total")
    h, h_energy = model.hidden(batch["momentum"], **inputs, energy=energy, energy_total=energy_total)  # (B, T-1, d), (B, 9 or 10, d) or None
    t_strip, t_adc, t_tdc = batch["strip"][:, 1:], batch["adc"][:, 1:], batch["tdc"][:, 1:]
    valid = t_strip != tok.STRIP.pad
    hv = h[valid]  # (M, d) in sequence order
    ts, ta, tt = t_strip[valid], t_adc[valid], t_tdc[valid]

    strip_logp = model.strip_log_probs(hv)
    class_w = torch.ones(tok.STRIP.vocab_size, device=h.device)
    class_w[tok.STRIP.sep], class_w[tok.STRIP.eos] = weights.sep_weight, weights.eos_weight
    ce_strip = F.nll_loss(strip_logp, ts.long(), weight=class_w)
    # ADC and TDC over hit positions only: at LAYER_SEP/EOS they are implied by the strip token
    # (generation writes them), so predicting them would cost a fifth of the heads' work for nothing
    is_hit = ts < tok.N_STRIPS
    hit_strip, hit_adc, hit_tdc = ts[is_hit].long(), ta[is_hit].long(), tt[is_hit].long()
    axis = model.axis_of(batch["momentum"])
    if axis is not None:  # each hit's event's row
        axis = axis[torch.arange(len(t_strip), device=h.device)[:, None].expand_as(t_strip)[valid][is_hit]]
    h_val = model.value_hidden(hv[is_hit], hit_strip, axis)  # the value heads' input at hit positions
    ce_adc = -model.adc_log_prob_of(h_val, strip_logp[is_hit], hit_adc).mean()
    h_tdc = h_val
    if model.cfg.tdc_threshold_rule:  # the head learns the time of hits that have one; the threshold decides which do
        timed = hit_tdc != tok.TDC_ZERO
        h_tdc, hit_strip, hit_adc, hit_tdc = h_val[timed], hit_strip[timed], hit_adc[timed], hit_tdc[timed]
    ce_tdc = -model.tdc_log_prob_of(h_tdc, hit_tdc, hit_strip, hit_adc).sum() / max(len(hit_tdc), 1)
    total = ce_strip + ce_adc + ce_tdc
    parts = {"ce_strip": ce_strip, "ce_adc": ce_adc, "ce_tdc": ce_tdc}
    if h_energy is not None:  # the energy tokens of energy-first models (total-first: the total, then the nine layers): their mean, times its weight
        if model.lead is not None:
            ce_energy = lead_cross_entropy(model, batch)
        else:
            ce_energy = F.nll_loss(model.energy_logits(h_energy).flatten(0, 1), model.energy_sequence(energy, energy_total).flatten())
        total = total + weights.energy * ce_energy
        parts["ce_energy"] = ce_energy

    p_stop = torch.exp(strip_logp[:, tok.STRIP.sep]) + torch.exp(strip_logp[:, tok.STRIP.eos])
    if weights.occupancy:
        occ = -torch.log1p(-p_stop[is_hit].clamp(max=1 - 1e-6)).mean()
        total = total + weights.occupancy * occ
        parts["occupancy"] = occ
    if weights.length or weights.distribution:
        b = t_strip.shape[0]
        sep_before = torch.cumsum((t_strip == tok.STRIP.sep).long(), dim=1) - (t_strip == tok.STRIP.sep).long()
        event = torch.arange(b, device=h.device)[:, None].expand_as(t_strip)
        segment = (event * tok.N_LAYERS + sep_before)[valid]
        expected, n_true = expected_layer_lengths(p_stop, is_hit, segment, b * tok.N_LAYERS, weights.length_tail)
        if weights.length:
            length = F.huber_loss(expected, n_true, delta=weights.length_huber_delta)
            total = total + weights.length * length
            parts["length"] = length
        if weights.distribution:
            strip_p = torch.exp(strip_logp[is_hit, : tok.N_STRIPS]).sum(0)
            strip_true = torch.bincount(ts[is_hit].long(), minlength=tok.N_STRIPS).float()
            # the full routed ADC distribution is costly (M x 3 x 5004): estimate the batch's predicted
            # histogram on evenly spaced hit positions, and compare with all true hits
            hit_rows = torch.nonzero(is_hit).squeeze(1)
            pick = torch.linspace(0, len(hit_rows) - 1, min(len(hit_rows), ADC_HISTOGRAM_POSITIONS), device=h.device).long()
            adc_p = torch.exp(model.adc_log_probs(h_val[pick], strip_logp[hit_rows[pick]])[:, : tok.N_ADC]).sum(0)
            adc_true = torch.bincount(ta[is_hit].long(), minlength=tok.N_ADC).float()
            adc_p, adc_true = adc_p.view(-1, ADC_GROUP).sum(1), adc_true.view(-1, ADC_GROUP).sum(1)
            exp_len, true_len = expected.view(b, -1).sum(1).mean(), n_true.view(b, -1).sum(1).mean()
            dist = _tv(strip_p, strip_true) + _tv(adc_p, adc_true) + ((exp_len - true_len) / true_len.clamp(min=1)) ** 2
            total = total + weights.distribution * dist
            parts["distribution"] = dist
    return total, {k: float(v.detach()) for k, v in parts.items()} | {"loss": float(total.detach())}
