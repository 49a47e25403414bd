"""The generation engine: a per-slot key-value cache and continuous batching.

What the profile of the plain decoder showed on 2 CPU cores at batch 1024 (before its cache became
contiguous buffers grown by 16 positions, hitgen.families.clas12_gpt.model.KVCache): a third of the time went to
copies, indexing and concatenation of the cache, regrown every step and copied whole every time an
event finished. Here:

- the cache is one contiguous buffer per block, (slots, heads, capacity, head dim), grown by 16
  positions as the longest event in flight needs them; each slot holds one event, written at that
  event's own position, and attention reads the buffer with a per-slot mask of the positions it
  has written;
- continuous batching: when an event ends, its slot is refilled at once with the next event (its
  prefix and SOS prefilled into that slot), so the batch stays full instead of shrinking to its
  slowest event; a refilled slot's decode step of that iteration writes at its first free position
  and is discarded (overwritten by its next step), so every decode step runs on the whole batch
  without gathering rows;
- when no events are left to admit and fewer than half of the slots are live, the slots are
  compacted (a copy of log2(batch) times in all, not per step).

Tokens come from the per-event random streams of hitgen.nn.streams: an event's tokens do not
depend on its slot, its neighbours or the batch size, and equal those of the plain decoder (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from hitgen.core.csr import offsets_from_counts
from hitgen.families.base import SamplingOptions
from hitgen.families.clas12_gpt import tokenizer as tok
from hitgen.families.clas12_gpt.model import HitGPT
from hitgen.families.clas12_gpt.sampler import STREAMS, Budget, HitSampler, LayerState, empty_tokens, start_tokens, tdc_places
from hitgen.nn.blocks import KVCache, attend_one


class StaticKVCache:
    """Keys and values of every block in buffers (slots, heads, capacity, head dim), contiguous,
    grown by KVCache.CHUNK positions up to `length` as the longest event in flight needs them (a
    view of the written positions of a larger buffer is not contiguous, and attention over such a
    view ran 4x slower on the CPU: hitgen.families.clas12_gpt.model.KVCache)."""

    def __init__(self, slots: int, length: int) -> None:
        self.slots, self.length = slots, length
        self.k: list[torch.Tensor | None] = []  # allocated at the first write, in the dtype of the keys (bf16 under autocast)
        self.v: list[torch.Tensor | None] = []
        self.rows: torch.Tensor | None = None
        self.pos: torch.Tensor | None = None
        self.masked: torch.Tensor | None = None
        self.needed = 0

    def _buffers(self, index: int, k: torch.Tensor, needed: int) -> None:
        if len(self.k) <= index:
            self.k.append(None)
            self.v.append(None)
        self.k[index] = KVCache.grown(self.k[index], k, self.slots, needed, self.length)
        self.v[index] = KVCache.grown(self.v[index], k, self.slots, needed, self.length)

    def load(self, rows: torch.Tensor, cache: KVCache) -> None:
        """Positions 0.. of these slots from a plain cache of their events (decoded there first: the
        energy-first lead, one position at a time)."""
        for index, (k, v) in enumerate(zip(cache.k, cache.v, strict=True)):
            t = cache.length[index]
            self._buffers(index, k, t)
            self.k[index][rows, :, :t] = k[:, :, :t]
            self.v[index][rows, :, :t] = v[:, :, :t]

    def prefill(self, rows: torch.Tensor) -> None:
        """The next trunk call writes positions 0.. of these slots (their events' first inputs)."""
        self.rows, self.pos = rows, None

    def decode(self, pos: torch.Tensor) -> None:
        """The next trunk call writes one position per slot, pos (slots,), and attends to 0..pos."""
        self.rows, self.pos, self.masked = None, pos, None
        self.needed = int(pos.max()) + 1  # positions the longest event in flight reaches
        self.slot_ids = torch.arange(len(pos), device=pos.device)

    def attend(self, index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.pos is None:  # prefill: causal attention among the new inputs themselves
            t = k.shape[2]
            self._buffers(index, k, t)
            self.k[index][self.rows, :, :t] = k
            self.v[index][self.rows, :, :t] = v
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        self._buffers(index, k, self.needed)
        self.k[index][self.slot_ids, :, self.pos] = k[:, :, 0]
        self.v[index][self.slot_ids, :, self.pos] = v[:, :, 0]
        keys, values = self.k[index], self.v[index]
        if self.masked is None or self.masked.shape[-1] != keys.shape[2]:  # the positions past each slot's own
            self.masked = (torch.arange(keys.shape[2], device=keys.device)[None] > self.pos[:, None])[:, None, None, :]
        return attend_one(q, keys, values, self.masked)

    def keep(self, rows: torch.Tensor) -> None:
        self.k = [k[rows] for k in self.k]
        self.v = [v[rows] for v in self.v]
        self.slots = len(rows)


class Harvest:
    """Finished events' tokens, decoded to hits chunk by chunk, reordered into event order at the end."""

    CHUNK = 4096

    def __init__(self, n_events: int, tdc_threshold_rule: bool = False) -> None:
        self.n_events = n_events
        self.tdc_threshold_rule = tdc_threshold_rule
        self.pending_ids: list[np.ndarray] = []
        self.pending: list[dict[str, np.ndarray]] = []
        self.n_pending = 0
        self.ids: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.hits: list[dict[str, np.ndarray]] = []

    def add(self, ids: np.ndarray, tokens: dict[str, np.ndarray]) -> None:
        self.pending_ids.append(ids)
        self.pending.append(tokens)
        self.n_pending += len(ids)
        if self.n_pending >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.n_pending:
            return
        tokens = {k: np.concatenate([p[k] for p in self.pending]) for k in self.pending[0]}
        offsets, hits = tok.decode_tokens(tokens, self.tdc_threshold_rule)
        self.ids.append(np.concatenate(self.pending_ids))
        self.counts.append(np.diff(offsets))
        self.hits.append(hits)
        self.pending_ids, self.pending, self.n_pending = [], [], 0

    def result(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        self.flush()
        ids, counts = np.concatenate(self.ids), np.concatenate(self.counts)
        if not np.array_equal(np.sort(ids), np.arange(self.n_events)):
            raise RuntimeError("generation engine: events lost or repeated")  # an internal error, not bad input
        hits = {k: np.concatenate([h[k] for h in self.hits]) for k in self.hits[0]}
        order = np.argsort(ids, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[order]
        offsets = offsets_from_counts(counts[order])
        take = np.repeat(starts - offsets[:-1], counts[order]) + np.arange(offsets[-1])
        return offsets, {k: v[take] for k, v in hits.items()}


@torch.no_grad()
def generate_static(
    model: HitGPT,
    momentum: torch.Tensor,
    keys: torch.Tensor,
    opts: SamplingOptions,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Events for all conditions momentum (N, 3), keys (N, 2) on the model's device, with
    opts.batch_size slots: (offsets, hits) in event order."""
    run = _Slots(model, momentum, keys, opts)
    run.admit(torch.arange(len(run.event), device=momentum.device))
    while not run.step(progress):
        run.refill_or_compact()
    return run.harvest.result()


class _Slots:
    """The continuous batch: a fixed number of slots, each decoding one event; a finished event's
    slot takes the next event, and once every event has been taken the live slots are compacted
    when at most half of them are still decoding."""

    def __init__(self, model: HitGPT, momentum: torch.Tensor, keys: torch.Tensor, opts: SamplingOptions) -> None:
        device = self.device = momentum.device
        self.model, self.momentum, self.keys, self.opts = model, momentum, keys, opts
        self.n_events = len(momentum)
        slots = min(opts.batch_size, self.n_events)
        self.n_lead = model.n_lead
        self.cache = StaticKVCache(slots, self.n_lead + tok.MAX_LENGTH)
        self.sampler = HitSampler(model, opts, device)
        self.harvest = Harvest(self.n_events, model.cfg.tdc_threshold_rule)
        self.event = torch.full((slots,), -1, dtype=torch.long, device=device)  # the event in each slot; -1: free
        self.position = torch.ones(slots, dtype=torch.long, device=device)  # token position of the next draw
        self.state = LayerState.start(slots, device)
        self.out = empty_tokens(slots, device, model.cfg.tdc_threshold_rule)
        if model.cfg.energy_first and model.cfg.rescale_to_layer_energy:
            self.out["layer_adc"] = torch.zeros(slots, tok.N_LAYERS, dtype=torch.float64, device=device)
        self.h = torch.zeros(slots, model.cfg.d_model, device=device)
        self.cond = torch.zeros(slots, model.cfg.d_model, device=device) if model.cond_tokens is not None else None
        self.budget = Budget(model, momentum[:slots].clone())
        self.admitted = self.finished = 0

    def admit(self, free: torch.Tensor) -> None:
        """The next events into the free slots: their prefix and SOS through the trunk."""
        free = free[: self.n_events - self.admitted]
        new = torch.arange(self.admitted, self.admitted + len(free), device=self.device)
        self.admitted += len(free)
        self.event[free] = new
        self.position[free] = 1
        self.state.reset(free)
        self.budget.reset(free, self.momentum[new])
        for k, s in STREAMS:
            self.out[k][free] = s.pad
            self.out[k][free, 0] = s.sos
        budget = Budget(self.model, self.momentum[new])
        if self.model.cfg.energy_first:  # the lead is decoded step by step in a cache of its own, then loaded into the slots
            cache = KVCache(len(self.model.blocks))
            h_new, c, _, layer_adc = start_tokens(self.model, self.momentum[new], self.keys[new], self.opts, cache, budget)
            self.cache.load(free, cache)
            self.budget.target[free] = budget.target
            if layer_adc is not None:
                self.out["layer_adc"][free] = layer_adc
        else:
            self.cache.prefill(free)
            h_new, c, _, _ = start_tokens(self.model, self.momentum[new], self.keys[new], self.opts, self.cache, budget)
        self.h = self.h.to(h_new.dtype)
        self.h[free] = h_new
        if self.cond is not None:
            self.cond = self.cond.to(c.dtype)
            self.cond[free] = c

    def step(self, progress: Callable[[int], None] | None) -> bool:
        """One token for every slot; finished events are harvested. True once all are finished."""
        live = self.event >= 0
        hit, self.state = self.sampler.draw(self.h, self.state, self.keys[self.event.clamp(min=0)], self.position, self.budget)
        features = self.budget.add(hit, self.state)
        rows = torch.arange(len(self.event), device=self.device)
        for k, _ in STREAMS:
            self.out[k][rows, self.position] = getattr(hit, k)
        if hit.time is not None:
            self.out["tdc_time"][rows, self.position] = hit.time
        done = live & (hit.strip == tok.STRIP.eos)
        if bool(done.any()):
            idx = torch.nonzero(done).squeeze(1)
            tokens = {k: v[idx].cpu().numpy() for k, v in self.out.items()}
            if self.model.cfg.tdc_in_bin:
                tokens["tdc_place"] = tdc_places(self.keys[self.event[idx]])
            self.harvest.add(self.event[idx].cpu().numpy(), tokens)
            self.finished += len(idx)
            self.event[idx] = -1
            if progress:
                progress(self.finished)
            if self.finished == self.n_events:
                return True
        # a finished or free slot takes a harmless step at position 1 until it is refilled
        self.position = torch.where(self.event >= 0, self.position + 1, torch.ones_like(self.position))
        self.cache.decode(self.n_lead + self.position - 1)  # the cache position of the token just drawn
        self.h = self.model.trunk(hit.embed(self.model, self.cond, features), self.cache)[:, -1]
        return False

    def refill_or_compact(self) -> None:
        free = torch.nonzero(self.event < 0).squeeze(1)
        slots = len(self.event)
        if len(free) and self.admitted < self.n_events:
            self.admit(free)
        elif self.admitted == self.n_events and 2 * (slots - len(free)) <= slots and slots > 1:
            keep = torch.nonzero(self.event >= 0).squeeze(1)  # drain: compact the live slots
            self.cache.keep(keep)
            self.event, self.position, self.state, self.h = self.event[keep], self.position[keep], self.state.select(keep), self.h[keep]
            self.out = {k: v[keep] for k, v in self.out.items()}
            self.cond = None if self.cond is None else self.cond[keep]
            self.budget.select(keep)
