"""Track generation with the track GPT: one hit per step, a key-value cache, per-event random streams.

Each step draws which candidate the next hit lands on (or END; candidates the helix does not reach are
masked), then its five deviations given that candidate; the hit is placed (hitgen.tokenizers.
odd_tracker.Geometry.advance), the helix from the new state gives the next candidates and features,
and the new position is fed through the model over the cache. Finished tracks leave the batch. The
uniform numbers come from per-event counter streams (hitgen.sampling.streams), so a track depends
only on the seed, its index and its conditions, never on the batch it was generated in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.models.gpt import KVCache
from hitgen.models.track_gpt import TrackGPT
from hitgen.sampling.draw import sample_from, sample_values
from hitgen.sampling.streams import event_keys, uniforms
from hitgen.tokenizers import odd_tracker as tok

DRAWS_PER_HIT = 1 + len(tok.VALUE_STREAMS)  # which, then the deviations


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
    per_event: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    done = 0
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, min(lo + batch_size, n))
        cond = {k: v[rows] for k, v in conditions.items()}
        for i, hits in zip(rows, _generate_batch(model, cond, keys_all[rows], geo, dev, temperature, cache), strict=True):
            per_event[i] = hits
        done += len(rows)
        if progress:
            progress(done)
    counts = np.array([len(h["module"]) for h in per_event], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    module = np.concatenate([h["module"] for h in per_event]).astype(np.int64)
    momentum = np.concatenate([h["momentum"] for h in per_event]).reshape(-1, 3)
    hits = {
        "geometry_id": geo.modules.geometry_id[module],
        "local_u": np.concatenate([h["local_u"] for h in per_event]).astype(np.float32),
        "local_v": np.concatenate([h["local_v"] for h in per_event]).astype(np.float32),
        "px": momentum[:, 0].astype(np.float32),
        "py": momentum[:, 1].astype(np.float32),
        "pz": momentum[:, 2].astype(np.float32),
    }
    return offsets, hits


def _generate_batch(model, cond, keys_np, geo: tok.Geometry, dev, temperature, use_cache: bool = True) -> list[dict[str, np.ndarray]]:
    b = len(keys_np)
    walk = tok.Walk.start(cond)
    conditions = torch.from_numpy(tok.condition_features(cond)).to(dev)
    particle = torch.from_numpy(tok.particle_type(cond["pdg"])).to(dev)
    keys = torch.from_numpy(keys_np).to(dev)
    out: list[list[dict]] = [[] for _ in range(b)]
    alive = np.arange(b)  # event rows still generating, in cache order
    cr = geo.candidates(walk)
    feats = geo.features(walk, cr)
    which_in = torch.full((b, 1), tok.WHICH_VOCAB, dtype=torch.long, device=dev)
    values_in = {k: torch.zeros((b, 1), dtype=torch.long, device=dev) for k in tok.VALUE_STREAMS}
    cache = KVCache(len(model.blocks)) if use_cache else None
    history: list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []  # naive decoding's inputs so far
    for step in range(tok.MAX_HITS + 1):
        f = torch.from_numpy(feats[:, None]).to(dev)
        if use_cache:
            x = model.embed(f, which_in, values_in, step, conditions[alive], particle[alive])
            h = model.trunk(x, cache)[:, -1]
        else:
            history.append((f, which_in, values_in))
            f_all = torch.cat([a for a, _, _ in history], 1)
            w_all = torch.cat([w for _, w, _ in history], 1)
            v_all = {k: torch.cat([v[k] for _, _, v in history], 1) for k in tok.VALUE_STREAMS}
            h = model.trunk(model.embed(f_all, w_all, v_all, 0, conditions[alive], particle[alive]))[:, -1]
        allowed = torch.zeros((len(alive), tok.WHICH_VOCAB), dtype=torch.bool, device=dev)
        allowed[:, : tok.K] = torch.from_numpy(cr.module >= 0).to(dev)
        allowed[:, tok.END] = True
        if step == tok.MAX_HITS:
            allowed[:, : tok.END] = False
        step_t = torch.tensor(step, device=dev)
        logp = torch.log_softmax(model.which_logits(h).float(), -1)
        which = sample_from(logp, allowed, temperature, 0, _uniform(keys[alive], step_t, 0))
        go = (which < tok.END).cpu().numpy()
        if not go.any():
            break
        which_go = which[torch.from_numpy(go).to(dev)]
        logits = model.value_logits(h[torch.from_numpy(go).to(dev)], which_go)
        drawn = {}
        for j, k in enumerate(tok.VALUE_STREAMS, start=1):
            drawn[k] = sample_values(logits[k].float(), temperature, 0, _uniform(keys[alive[go]], step_t, j))
        values = {k: tok.BINNINGS[k].decode(v.cpu().numpy()) for k, v in drawn.items()}
        idx_go = np.flatnonzero(go)
        sub = walk.subset(idx_go)
        placed = geo.advance(sub, _rows(cr, idx_go), which_go.cpu().numpy(), values)
        for r, event in enumerate(alive[go]):
            out[event].append({k: placed[k][r] for k in ("module", "local_u", "local_v", "momentum")})
        keep = torch.from_numpy(go).to(dev)
        if use_cache:
            cache.keep(keep)
        else:
            history = [(a[keep], w[keep], {k: x[keep] for k, x in v.items()}) for a, w, v in history]
        alive, walk = alive[go], sub
        cr = geo.candidates(walk)
        feats = geo.features(walk, cr)
        which_in = which_go[:, None]
        values_in = {k: v[:, None] for k, v in drawn.items()}
    result = []
    for hits in out:
        result.append(
            {
                "module": np.array([h["module"] for h in hits], np.int64),
                "local_u": np.array([h["local_u"] for h in hits], np.float64),
                "local_v": np.array([h["local_v"] for h in hits], np.float64),
                "momentum": np.array([h["momentum"] for h in hits], np.float64).reshape(-1, 3),
            }
        )
    return result


def _rows(cr, idx: np.ndarray):
    return type(cr)(cr.module[idx], cr.u[idx], cr.v[idx], cr.s[idx], cr.phi_dir[idx])

