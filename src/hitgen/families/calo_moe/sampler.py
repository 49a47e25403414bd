"""Shower generation with the foundation model: one voxel per step over a key-value cache, per-event
random streams (an event depends only on the seed, its index and its conditions, never on the
batch), finished showers leave the batch.

Each step draws the next voxel's layer (or the end), then x, y and the energy bin, then a uniform
position of the energy within its bin. Two constraints of the token order hold by construction: a
voxel already in the shower is not drawn again, and energies do not increase (bins above the
previous voxel's are masked), as the sequences are ordered by decreasing energy. How a voxel is kept
from being drawn twice is the model's `exclusion`: "y" (the default) draws its y among the column's
free cells (should all 30 y of a column be taken, which no shower comes near, the mask is lifted);
"xy" draws x and y again from the voxel's own redraw stream, keeping the layer, "voxel" the layer
too (both up to REDRAWS times, then as "y"). "voxel" is rejection sampling: it draws the heads'
distribution renormalised over the voxels not yet in the shower, which a model trained with
`[loss] renormalise` learns (the shipped model). Measured on W photons of a model trained by the plain
likelihood (docs/families/calo-moe.md): "y" widens the showers in y only; "voxel" moves energy deeper.

A shower whose (particle, material) has a total-energy module then draws its total from it (from its
own stream, past every voxel draw; given the shower's shape where the module reads it) and its voxels'
energies are scaled to add up to it; a voxel
scaled below the readout threshold (0.1 MeV) is dropped, as `hitgen simulate` drops such a cell.
Such a shower is empty only when its total says so (the module's token of an empty window, learnt
from its showers like every other total): where its sequence would end at the first position, the
first voxel is drawn again without the end (rejection: the first position's distribution
renormalised over the voxels; every other shower as before). Without the rule the end's small
probability at the first position (about 1e-3, never zero from a softmax; Geant4 gave none of 2000
showers of any pair an empty window, the total modules give 1-3e-8) made up to 6 of 2000 showers
empty, which took the Ta photons' std / mean to 1.66 times Geant4's in one bin
(docs/families/calo-moe.md)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.core.csr import offsets_from_counts
from hitgen.core.errors import HitgenError
from hitgen.detectors.ild_ecal.geometry import THRESHOLD_MEV, digitize
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.families.calo_moe.model import CaloMoE
from hitgen.families.calo_moe.tokens import (
    ENERGY_BINS,
    EOS_LAYER,
    N_VOXELS,
    bin_energy,
    bin_total,
    condition_vector,
    expert_key,
    particle_names,
    shape_features,
    to_cells,
)
from hitgen.nn.draw import sample_from, sample_values
from hitgen.nn.streams import event_keys, uniforms, uniforms_from

DRAWS = 5  # layer, x, y, energy bin, position in the bin
TOTAL_COUNTER = 1 << 24  # the total module's two draws per event: past every voxel's (max_voxels * DRAWS)
COMPACT_AT = 0.9
EXCLUSIONS = ("y", "xy", "voxel")
REDRAWS = 16  # exclusion "xy" / "voxel": draws of a taken voxel before its y alone is drawn among the free
REDRAW_CHUNKS = (4, 12)  # the redraws drawn at once (they add up to REDRAWS): the first 4 settle all but a few rows
REDRAW_COUNTER = 1 << 25  # the redraws' stream counters: past the voxels' and the total's
FIRST_COUNTER = 1 << 26  # the first voxel drawn again where the end was drawn first (_not_empty): past the redraws'


def experts_for(model: CaloMoE, pdg: np.ndarray, material: str) -> list[str]:
    keys = [expert_key(p, material) for p in particle_names(pdg)]
    missing = sorted(k for k in set(keys) if model.expert_of(k) is None)
    if missing:
        raise HitgenError(f"this model has no expert for {missing[0]} (experts: {', '.join(model.experts)})")
    return keys


@torch.no_grad()
def generate_showers(
    model: CaloMoE,
    conditions: dict[str, np.ndarray],
    material: str,
    seed: int,
    batch_size: int,
    device: str = "cpu",
    temperature: float = 1.0,
    progress: Callable[[int], None] | None = None,
    first_event: int = 0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Showers for every event of `conditions` in the absorber `material`: CSR offsets and ild-ecal hits."""
    model = model.to(device).eval()
    if model.cfg.exclusion not in EXCLUSIONS:
        raise HitgenError(f"unknown exclusion '{model.cfg.exclusion}' in the model's config (calo-moe: one of {', '.join(EXCLUSIONS)})")
    n = len(conditions["energy"])
    experts = experts_for(model, conditions["pdg"], material)
    keys_all = event_keys(seed, np.arange(first_event, first_event + n))
    cond_all = condition_vector(conditions)
    parts = []
    # batches of one route where the trunk runs as one ONNX graph per route; the showers are the same
    # either way (per-event streams)
    groups = [np.arange(n)] if model.__dict__.get("ort") is None else [np.flatnonzero(np.array(experts) == k) for k in dict.fromkeys(experts)]
    done = 0
    for group in groups:
        for lo in range(0, len(group), batch_size):
            rows = group[lo : lo + batch_size]
            cond, keys = torch.from_numpy(cond_all[rows]).to(device), torch.from_numpy(keys_all[rows]).to(device)
            part = _batch(model, cond, [experts[r] for r in rows], keys, temperature)
            part["event"] = rows[part["event"]]
            parts.append(part)
            done += len(rows)
            if progress:
                progress(done)
    v = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = np.ones(len(v["energy"]), bool)
    if model.totals:
        shape = torch.from_numpy(shape_features(v["event"], v["layer"], v["x"], v["y"], v["ebin"], n)).to(device) if model.cfg.total_shape else None
        total = draw_totals(model, torch.from_numpy(cond_all).to(device), experts, torch.from_numpy(keys_all).to(device), temperature, shape)
        drawn = v["energy"]
        v["energy"] = scaled_to_totals(drawn, v["event"], total * conditions["energy"].astype(np.float64))
        keep = (v["energy"] >= THRESHOLD_MEV) | (v["energy"] == drawn)
    cell_x, cell_y = to_cells(conditions["entry_point"], v["x"], v["y"], v["event"])
    counts = np.bincount(v["event"], minlength=n)
    order = np.argsort(v["event"], kind="stable")
    offsets, hits, _ = digitize(offsets_from_counts(counts), v["layer"][order], cell_x[order], cell_y[order], v["energy"][order], keep[order])
    return offsets, hits


def draw_totals(
    model: CaloMoE, cond: torch.Tensor, experts: list[str], keys: torch.Tensor, temperature: float, shape: torch.Tensor | None
) -> np.ndarray:
    """Each shower's total in MeV per GeV drawn by its total-energy module (NaN where its key has none),
    given the showers' shape features (N, N_SHAPE; None where no module reads them)."""
    out = np.full(len(experts), np.nan)
    std = model.standardised(cond)
    for key in dict.fromkeys(experts):
        if key not in model.totals:
            continue
        rows = np.flatnonzero(np.array(experts) == key)
        r = torch.from_numpy(rows).to(cond.device)
        u = [uniforms(keys[r], torch.tensor(TOTAL_COUNTER + d, device=cond.device)) for d in range(2)]
        logp = model.totals[key].log_probs(std[r], None if shape is None else shape[r])
        token = sample_from(logp, torch.ones_like(logp, dtype=torch.bool), temperature, 0, u[0])
        out[rows] = bin_total(token.cpu().numpy(), u[1].cpu().numpy())
    return out


def scaled_to_totals(energy: np.ndarray, event: np.ndarray, total_mev: np.ndarray) -> np.ndarray:
    """Voxel energies scaled, per event, to add up to total_mev (events with a NaN total or no voxels unscaled)."""
    sums = np.bincount(event, weights=energy, minlength=len(total_mev))
    scale = np.divide(total_mev, sums, out=np.ones_like(sums), where=(sums > 0) & np.isfinite(total_mev))
    return energy * scale[event]


def _taken(used: torch.Tensor, layer: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, WINDOW) whether each y of the rows' (layer, x) column is already in the shower."""
    return used.view(-1, EOS_LAYER, WINDOW, WINDOW)[torch.arange(len(layer), device=used.device), layer.clamp(max=EOS_LAYER - 1), x]


def _free_y(used: torch.Tensor, layer: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, WINDOW) the y a voxel of the rows' (layer, x) may take: those not yet in the shower (all of
    them should the column be full, which no shower comes near)."""
    free = ~_taken(used, layer, x)
    free[~free.any(-1)] = True
    return free


def _draw_voxel(heads, h, logp, allowed, temperature: float, u_layer, u_x, u_y, used, layer=None):
    """One voxel (layer or the end, x, y) per row from the heads, by the three uniforms (the layer
    kept where given); with `used` (B, N_VOXELS), y only among the column's free cells. Returns
    layer, x, y and the input of the y-dependent heads."""
    layer = sample_from(logp, allowed, temperature, 0, u_layer) if layer is None else layer
    hl = heads.after_layer(h, layer.clamp(max=EOS_LAYER - 1))
    x = sample_values(heads.x(hl).float(), temperature, 0, u_x)
    hx = heads.after_x(hl, x)
    logp_y = torch.log_softmax(heads.y(hx).float(), -1)
    free = torch.ones_like(logp_y, dtype=torch.bool) if used is None else _free_y(used, layer, x)
    return layer, x, sample_from(logp_y, free, temperature, 0, u_y), hx


def _is_taken(used: torch.Tensor, rows: torch.Tensor, layer: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Whether each (layer, x, y) of the given rows of `used` (B, N_VOXELS) is in the shower (never the end)."""
    flat = (layer.clamp(max=EOS_LAYER - 1) * WINDOW + x) * WINDOW + y
    return (layer < EOS_LAYER) & used[rows, flat]


def redraw_taken(heads, h, logp, allowed, temperature: float, keys, step: int, used, drawn, keep_layer: bool, u_y):
    """Rejection of voxels already in the shower: each row's voxel `drawn` (layer, x, y, heads' input),
    if taken, is replaced by the first free one of its redraws t = 0..REDRAWS-1 (x and y, and the layer
    unless keep_layer, drawn from the heads by the row's stream counters REDRAW_COUNTER + (step * REDRAWS
    + t) * 3 + d); the result is a draw of the heads' distribution renormalised over the free voxels (and
    the end). Should all REDRAWS be taken, the last one's y is drawn among its column's free cells by u_y.
    The redraws are drawn REDRAW_CHUNKS at a time for all the rows that need them: the same voxels as
    one redraw after another, in a few calls of the heads instead of up to REDRAWS."""
    lr, xr, yr, hx = (t.clone() for t in drawn)
    dev = lr.device
    clash = torch.nonzero(_is_taken(used, torch.arange(len(lr), device=dev), lr, xr, yr)).squeeze(1)
    t0 = 0
    for size in REDRAW_CHUNKS:
        if not len(clash):
            return lr, xr, yr, hx
        n = len(clash)
        rows = clash.repeat_interleave(size)
        t = torch.arange(t0, t0 + size, device=dev).repeat(n)
        ku = uniforms_from(keys[rows], REDRAW_COUNTER + (step * REDRAWS + t) * 3, 3).unbind(1)
        lc, xc, yc, hc = _draw_voxel(heads, h[rows], logp[rows], allowed[rows], temperature, *ku, None, lr[rows] if keep_layer else None)
        free = ~_is_taken(used, rows, lc, xc, yc).view(n, size)
        settled = free.any(1)
        pick = torch.where(settled, free.int().argmax(1), size - 1) + torch.arange(n, device=dev) * size  # first free, else the last
        lr[clash], xr[clash], yr[clash], hx[clash] = lc[pick], xc[pick], yc[pick], hc[pick]
        clash, t0 = clash[~settled], t0 + size
    if len(clash):  # every redraw taken: y among the last one's free cells
        free = _free_y(used[clash], lr[clash], xr[clash])
        yr[clash] = sample_from(torch.log_softmax(heads.y(hx[clash]).float(), -1), free, temperature, 0, u_y[clash])
    return lr, xr, yr, hx


def _not_empty(heads, h, logp, allowed, temperature: float, keys, total_says, drawn):
    """The first voxel of showers whose emptiness their total-energy module decides: where the end was
    drawn, the voxel is drawn again from the row's FIRST_COUNTER stream with the end masked. Rejection:
    the heads' first-position distribution renormalised over the voxels, every other row's draw as it was."""
    layer, x, y, hx = drawn
    again = torch.nonzero((layer == EOS_LAYER) & total_says).squeeze(1)
    if len(again) == 0:
        return drawn
    no_end = allowed[again].clone()
    no_end[:, EOS_LAYER] = False
    u = uniforms_from(keys[again], FIRST_COUNTER, 3).unbind(1)
    la, xa, ya, ha = _draw_voxel(heads, h[again], logp[again], no_end, temperature, *u, None)
    layer, x, y, hx = layer.clone(), x.clone(), y.clone(), hx.clone()
    layer[again], x[again], y[again], hx[again] = la, xa, ya, ha
    return layer, x, y, hx


def _heads_rows(model: CaloMoE, experts: list[str], dev) -> dict[str, torch.Tensor]:
    """The batch rows each heads draw (model.heads_of: a particle's, or an expert's own), from the rows' expert keys."""
    names = [model.heads_of(e) for e in experts]
    return {p: torch.tensor([i for i, q in enumerate(names) if q == p], device=dev) for p in dict.fromkeys(names)}


def _batch(model: CaloMoE, cond: torch.Tensor, experts: list[str], keys: torch.Tensor, temperature: float) -> dict[str, np.ndarray]:
    """The voxels of one batch as flat arrays: event (row of the batch), layer, x, y, energy bin, energy (MeV)."""
    dev = cond.device
    b = len(cond)
    route = model.router(experts)
    cache = model.new_cache(route)
    event = np.arange(b)  # the batch row of every live row
    live = torch.ones(b, dtype=torch.bool, device=dev)
    h = model.trunk(model.prefix(cond, experts), 0, route, cache)[:, -1]
    exclusion = model.cfg.exclusion
    used = torch.zeros((b, N_VOXELS), dtype=torch.bool, device=dev)
    prev = torch.full((b,), ENERGY_BINS - 1, dtype=torch.long, device=dev)
    bins = torch.arange(ENERGY_BINS, device=dev)
    out: list[dict[str, np.ndarray]] = []
    rows_experts = list(experts)
    groups = _heads_rows(model, rows_experts, dev)
    total_says = torch.tensor([e in model.totals for e in experts], device=dev)  # emptiness is the total module's
    for step in range(model.cfg.max_voxels + 1):
        k = keys[torch.from_numpy(event).to(dev)]
        u = uniforms_from(k, step * DRAWS, DRAWS).unbind(1)
        layer = torch.empty(len(event), dtype=torch.long, device=dev)
        x, y, ebin = torch.empty_like(layer), torch.empty_like(layer), torch.empty_like(layer)
        for name, r in groups.items():
            heads = model.heads[name]
            hr = h[r]
            logp = torch.log_softmax(heads.layer(hr).float(), -1)
            allowed = torch.ones_like(logp, dtype=torch.bool)
            if step == model.cfg.max_voxels:
                allowed[:, :EOS_LAYER] = False
            used_r = used if len(groups) == 1 else used[r]  # the rows' voxels (one group: every row, no copy)
            if exclusion == "y":
                lr, xr, yr, hx = _draw_voxel(heads, hr, logp, allowed, temperature, u[0][r], u[1][r], u[2][r], used_r)
            else:  # a voxel already taken is drawn again (x, y; with "voxel" its layer too), from the row's redraw stream
                drawn = _draw_voxel(heads, hr, logp, allowed, temperature, u[0][r], u[1][r], u[2][r], None)
                lr, xr, yr, hx = redraw_taken(heads, hr, logp, allowed, temperature, k[r], step, used_r, drawn, exclusion == "xy", u[2][r])
            if step == 0:
                lr, xr, yr, hx = _not_empty(heads, hr, logp, allowed, temperature, k[r], total_says[r], (lr, xr, yr, hx))
            hy = heads.after_y(hx, yr)
            er = sample_from(torch.log_softmax(heads.energy(hy).float(), -1), bins[None, :] <= prev[r][:, None], temperature, 0, u[3][r])
            layer[r], x[r], y[r], ebin[r] = lr, xr, yr, er
        go = live & (layer < EOS_LAYER)
        live = go
        if not bool(go.any()):
            break
        g = go.cpu().numpy()
        energy = bin_energy(ebin[go].cpu().numpy(), u[4][go].cpu().numpy())
        drawn = {"layer": layer[go], "x": x[go], "y": y[go], "ebin": ebin[go]}
        out.append({"event": event[g]} | {k: t.cpu().numpy() for k, t in drawn.items()} | {"energy": energy})
        layer = torch.where(go, layer, 0)
        idx = torch.nonzero(go).squeeze(1)
        used[idx, ((layer * WINDOW + x) * WINDOW + y)[idx]] = True
        prev = torch.where(go, ebin, prev)
        if live.float().mean() <= COMPACT_AT:  # finished showers leave the batch
            cache.keep(live)
            event, used, prev = event[g], used[live], prev[live]
            layer, x, y, ebin = layer[live], x[live], y[live], ebin[live]
            rows_experts = [e for e, keep in zip(rows_experts, g, strict=True) if keep]
            route = model.router(rows_experts)
            groups = _heads_rows(model, rows_experts, dev)
            live = live[live]
        step_in = model.embed(layer, x, y, ebin)[:, None]
        h = model.trunk(step_in, step + 1, route, cache)[:, -1]
    if not out:
        return {k: np.zeros(0, np.int64) for k in ("event", "layer", "x", "y", "ebin")} | {"energy": np.zeros(0)}
    return {key: np.concatenate([o[key] for o in out]) for key in out[0]}
