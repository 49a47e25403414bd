"""Track generation with the track GPT: one hit per step, a key-value cache, per-event random streams.

Each step draws which candidate the next hit lands on (or END; candidates the helix does not reach are
masked), then its five deviations given that candidate; the hit is placed (hitgen.tokenizers.
odd_tracker.Geometry.advance), the helix from the new state gives the next candidates and features,
and the new position is fed through the model over the cache. Finished tracks leave the batch. The
uniform numbers come from per-event counter streams (hitgen.nn.streams), so a track depends
only on the seed, its index and its conditions, never on the batch it was generated in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.core.csr import offsets_from_counts
from hitgen.families.track_gpt import tokenizer as tok
from hitgen.families.track_gpt.model import TrackGPT
from hitgen.nn.blocks import new_cache
from hitgen.nn.draw import sample_from, sample_values
from hitgen.nn.streams import event_keys, uniforms

DRAWS_PER_HIT = 1 + len(tok.VALUE_STREAMS)  # which, then the deviations
COMPACT_AT = 0.9  # finished rows leave the batch once at most this fraction of its rows is live


def _uniform(keys: torch.Tensor, step: torch.Tensor, draw: int) -> torch.Tensor:
    return uniforms(keys, step * DRAWS_PER_HIT + draw)


@torch.no_grad()
def generate_tracks(
    model: TrackGPT,
    conditions: dict[str, np.ndarray],
    seed: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    temperature: float = 1.0,
    progress: Callable[[int], None] | None = None,
    first_event: int = 0,
    geometry: tok.Geometry | None = None,
    cache: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Tracks for every event of `conditions` (pdg, charge, vertex, momentum): CSR offsets and the
    odd-tracker hit fields. cache=False recomputes the whole sequence at every step (naive
    decoding, the baseline of `hitgen bench`; the same tracks)."""
    geo = geometry or tok.Geometry()
    dev = torch.device(device)
    n = len(conditions["momentum"])
    keys_all = event_keys(seed, np.arange(first_event, first_event + n))
    parts: list[dict[str, np.ndarray]] = []
    done = 0
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, min(lo + batch_size, n))
        cond = {k: v[rows] for k, v in conditions.items()}
        part = _generate_batch(model, cond, keys_all[rows], geo, dev, temperature, cache)
        part["event"] = rows[part["event"]]
        parts.append(part)
        done += len(rows)
        if progress:
            progress(done)
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((joined["step"], joined["event"]))  # event by event, in flight order
    offsets = offsets_from_counts(np.bincount(joined["event"], minlength=n))
    module, momentum = joined["module"][order], joined["momentum"][order]
    hits = {
        "geometry_id": geo.modules.geometry_id[module],
        "local_u": joined["local_u"][order].astype(np.float32),
        "local_v": joined["local_v"][order].astype(np.float32),
        "px": momentum[:, 0].astype(np.float32),
        "py": momentum[:, 1].astype(np.float32),
        "pz": momentum[:, 2].astype(np.float32),
    }
    return offsets, hits


def _generate_batch(model, cond, keys_np, geo: tok.Geometry, dev, temperature, use_cache: bool = True) -> dict[str, np.ndarray]:
    """The hits of one batch as flat arrays: event (row of the batch), step, module, local_u,
    local_v, momentum (H, 3); in no particular order."""
    b = len(keys_np)
    walk = tok.Walk.start(cond)
    conditions = torch.from_numpy(tok.condition_features(cond)).to(dev)
    particle = torch.from_numpy(tok.particle_type(cond["pdg"])).to(dev)
    offset = model.track_offset(conditions, particle)  # once per track, not at every step
    keys = torch.from_numpy(keys_np).to(dev)
    out: list[dict[str, np.ndarray]] = []
    event = np.arange(b)  # the event of every batch row; finished rows ride along until COMPACT_AT
    live = np.ones(b, bool)
    cr = geo.candidates(walk)
    feats = geo.features(walk, cr)
    which_in = torch.full((b, 1), tok.WHICH_VOCAB, dtype=torch.long, device=dev)
    values_in = {k: torch.zeros((b, 1), dtype=torch.long, device=dev) for k in tok.VALUE_STREAMS}
    cache = new_cache(model) if use_cache else None
    history: list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []  # naive decoding's inputs so far
    for step in range(tok.MAX_HITS + 1):
        f = torch.from_numpy(feats[:, None].copy()).to(dev)  # a copy: feats is updated in place below
        h = _trunk_step(model, cache, history, f, which_in, values_in, step, offset[event])
        step_t = torch.tensor(step, device=dev)
        logp = torch.log_softmax(model.which_logits(h).float(), -1)
        which = sample_from(logp, _allowed_which(cr, step, dev), temperature, 0, _uniform(keys[event], step_t, 0))
        live &= (which < tok.END).cpu().numpy()
        if not live.any():
            break
        go = np.flatnonzero(live)
        go_t = torch.from_numpy(go).to(dev)
        which_go = which[go_t]
        drawn = _draw_deviations(model, h[go_t], which_go, keys[torch.from_numpy(event[go]).to(dev)], step_t, temperature)
        values = {k: tok.BINNINGS[k].decode(v.cpu().numpy()) for k, v in drawn.items()}
        sub = walk.subset(go)
        placed = geo.advance(sub, _rows(cr, go), which_go.cpu().numpy(), values)
        walk.assign(go, sub)
        out.append({"event": event[go], "step": np.full(len(go), step)} | {k: placed[k] for k in ("module", "local_u", "local_v", "momentum")})
        which_in = torch.where(torch.from_numpy(live).to(dev), which, tok.END)[:, None]
        values_in = {k: torch.zeros((len(event), 1), dtype=torch.long, device=dev).index_put_((go_t,), v[:, None]) for k, v in drawn.items()}
        sub_cr = geo.candidates(sub)
        feats[go] = geo.features(sub, sub_cr)
        for name in ("module", "u", "v", "s", "phi_dir"):
            getattr(cr, name)[go] = getattr(sub_cr, name)
        # drop finished rows from the batch and the cache once a tenth of the rows have finished (each
        # drop copies the cache); until then they ride along and what they draw is ignored
        if len(go) <= COMPACT_AT * len(event):
            keep = torch.from_numpy(go).to(dev)
            event, live, walk, cr, feats = event[go], live[go], walk.subset(go), _rows(cr, go), feats[go]
            which_in, values_in = which_in[keep], {k: v[keep] for k, v in values_in.items()}
            if cache is not None:
                cache.keep(keep)
            else:
                history = [(a[keep], w[keep], {k: x[keep] for k, x in v.items()}) for a, w, v in history]
    if not out:
        return {
            "event": np.zeros(0, np.int64),
            "step": np.zeros(0, np.int64),
            "module": np.zeros(0, np.int64),
            "local_u": np.zeros(0),
            "local_v": np.zeros(0),
            "momentum": np.zeros((0, 3)),
        }
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def _trunk_step(model, cache, history: list, f, which_in, values_in, step: int, offset) -> torch.Tensor:
    """The hidden state after this step's inputs: one new position through the cache, or (naive
    decoding, no cache) the whole sequence so far recomputed. offset: the tracks' (B, d) from track_offset."""
    if cache is not None:
        return model.trunk(model.embed(f, which_in, values_in, step, offset), cache)[:, -1]
    history.append((f, which_in, values_in))
    f_all = torch.cat([a for a, _, _ in history], 1)
    w_all = torch.cat([w for _, w, _ in history], 1)
    v_all = {k: torch.cat([v[k] for _, _, v in history], 1) for k in tok.VALUE_STREAMS}
    return model.trunk(model.embed(f_all, w_all, v_all, 0, offset))[:, -1]


def _allowed_which(cr, step: int, dev) -> torch.Tensor:
    """The candidates a row may take (those that exist) and the end; only the end after MAX_HITS."""
    allowed = torch.zeros((len(cr.module), tok.WHICH_VOCAB), dtype=torch.bool, device=dev)
    allowed[:, : tok.K] = torch.from_numpy(cr.module >= 0).to(dev)
    allowed[:, tok.END] = True
    if step == tok.MAX_HITS:
        allowed[:, : tok.END] = False
    return allowed


def _draw_deviations(model, h, which, keys, step_t, temperature: float) -> dict[str, torch.Tensor]:
    """The five deviation heads sampled in one pass: (hits x streams) rows of the same vocabulary."""
    stacked = model.stacked_value_logits(h, which).float().flatten(0, 1)
    u = torch.stack([_uniform(keys, step_t, j) for j in range(1, DRAWS_PER_HIT)], 1).flatten()
    tokens = sample_values(stacked, temperature, 0, u).view(len(which), len(tok.VALUE_STREAMS))
    return {k: tokens[:, j] for j, k in enumerate(tok.VALUE_STREAMS)}


def _rows(cr, idx: np.ndarray):
    return type(cr)(cr.module[idx], cr.u[idx], cr.v[idx], cr.s[idx], cr.phi_dir[idx])
