"""Generation: the first stage's ODE gives the points (and energy) of every layer, the point CNF's
ODE moves that many standard-normal points to the shower, and the points become ild-ecal cells.

Solvers (`--decoder SOLVER-NFE`, NFE function evaluations of each stage): euler, midpoint and heun
(Heun's second-order method; its last step is a plain Euler step, so NFE may be odd). A model whose
config names a `count_solver` (a reflowed one: its point CNF needs few evaluations, its first stage,
an MLP of 60 numbers, costs little at many) integrates the first stage with that. Every noise
number comes from the event's own random stream (hitgen.nn.streams), so an event does not depend on
the batch it is generated in (up to the last bits of batched matrix products).

From points to cells: a point's x, y fall in one cell (5 mm); with the model's `cell_mapping`
"sum" (the paper's), several points in one cell add up. With "matched", the points of a layer take
distinct cells, as every training point had one (a point is a Geant4 cell): where two or more share
a cell, the layer's points are assigned to the cells around them (MATCH_MARGIN cells beyond their
own) with the least sum of energy x squared distance from point to cell centre (scipy's
linear_sum_assignment; a layer with no shared cell keeps its cells, each point's nearest, which is
that least already). Measured (docs/families/allshowers.md): the cells per shower come right, the
classifier's AUC falls, but the core's energy moves outward; "sum" stays the shipped models'.
A cell keeps its energy where it reaches the layout's threshold (0.1 MeV), as the digitisation of
`hitgen simulate` does; points off the plane are dropped (the plane is 60 cm wide, the showers a
few cm). With layer_energies, the energies of an e/gamma
shower's points in each layer are scaled to the layer energy the first stage drew; muons keep the
CNF's energies (a muon's layer holds one or two MIP deposits, the CNF's own energy spectrum) unless
the model's `scale_muons` is on (sub-cell points: a layer's MIP deposit split over its sub-cells).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hitgen.core.csr import offsets_from_counts
from hitgen.core.errors import HitgenError
from hitgen.detectors.ild_ecal.geometry import ILD, N_LAYERS, digitize
from hitgen.families.allshowers.data import ENERGY_FLOOR_MEV, condition_vector
from hitgen.families.allshowers.model import AllShowers, BandAttention, to_linear
from hitgen.nn import streams

SOLVERS = ("heun", "midpoint", "euler")
NFES = (1, 2, 4, 8, 16, 32, 64, 100)
DECODERS = ("plain", *(f"{s}-{n}" for s in SOLVERS for n in NFES))  # plain: the model's default_solver
MAX_POINTS_PER_LAYER = 1000  # a guard against a first stage far outside its data
_POINT_COUNTER = 1 << 20  # stream counters of the point noise start here (the first stage's below)
MUONS = (13, -13)
CELL_MAPPINGS = ("sum", "matched")
MATCH_MARGIN = 2  # "matched": a layer's points may move to cells this far beyond the box of their own cells
CNF_GROUP = 16  # events whose points move together: 2.6x faster than all 256 of a batch at once (docs/families/allshowers.md)


def parse_decoder(decoder: str) -> tuple[str, int]:
    solver, _, nfe = decoder.partition("-")
    if solver not in SOLVERS or not nfe.isdigit() or int(nfe) < 1:
        raise HitgenError(f"unknown decoder '{decoder}' (AllShowers: SOLVER-NFE with SOLVER one of {', '.join(SOLVERS)}, e.g. heun-32)")
    return solver, int(nfe)


def normals(keys: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """Standard normals (B, M) float32 from the events' streams: keys (B, 2), counters (B, M) int64 (Box-Muller, two uniforms each)."""
    b, m = counter.shape
    k = keys[:, None, :].expand(b, m, 2).reshape(-1, 2)
    c = counter.reshape(-1)
    u1 = streams.uniforms(k, 2 * c)
    u2 = streams.uniforms(k, 2 * c + 1)
    z = torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2 * torch.pi * u2)
    return z.reshape(b, m).float()


def integrate(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, solver: str, nfe: int) -> torch.Tensor:
    """x at t = 1 from x at t = 0 with `nfe` evaluations of velocity(x, t) (t a scalar tensor)."""
    if solver == "euler":
        steps = [(i / nfe, 1.0 / nfe) for i in range(nfe)]
        for t, h in steps:
            x = x + h * velocity(x, torch.tensor(t))
        return x
    n_steps, extra = divmod(nfe, 2)
    h = 1.0 / (n_steps + extra)
    t = 0.0
    for _ in range(n_steps):
        v1 = velocity(x, torch.tensor(t))
        if solver == "midpoint":
            x = x + h * velocity(x + 0.5 * h * v1, torch.tensor(t + 0.5 * h))
        else:
            x = x + 0.5 * h * (v1 + velocity(x + h * v1, torch.tensor(t + h)))
        t += h
    if extra:  # an odd number of evaluations: the last one as an Euler step
        x = x + h * velocity(x, torch.tensor(t))
    return x


@torch.no_grad()
def generate_showers(
    model: AllShowers,
    conditions: dict[str, np.ndarray],
    seed: int,
    batch_size: int,
    decoder: str,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
    first_event: int = 0,
    rescale: bool | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Showers for the conditions: CSR offsets and ild-ecal hit fields (layer, cell_x, cell_y, energy).
    rescale: scale e/gamma points to the first stage's layer energies (default: the model's
    scale_to_layer_energies, where it draws layer energies)."""
    model = model.to(device).eval()
    cfg = model.cfg
    solver, nfe = parse_decoder(cfg.default_solver if decoder == "plain" else decoder)
    rescale = (cfg.layer_energies and cfg.scale_to_layer_energies) if rescale is None else rescale
    if cfg.cell_mapping not in CELL_MAPPINGS:
        raise HitgenError(f"unknown cell mapping '{cfg.cell_mapping}' in the model's config (AllShowers: one of {', '.join(CELL_MAPPINGS)})")
    if cfg.cell_mapping == "matched" and cfg.point_layout != "ild":
        raise HitgenError("cell mapping 'matched' gives each point a cell of its own: it is for points that are cells (layout ild), not sub-cells")
    if rescale and not cfg.layer_energies:
        raise HitgenError("this AllShowers model draws no layer energies to scale to")
    n = len(conditions["energy"])
    cond_all = torch.from_numpy(condition_vector(conditions, cfg.stats)).to(device)
    keys_all = torch.as_tensor(streams.event_keys(seed, first_event + np.arange(n)), device=device)
    parts = []
    for lo in range(0, n, batch_size):
        hi = min(lo + batch_size, n)
        parts.append(_batch(model, cond_all[lo:hi], keys_all[lo:hi], conditions["pdg"][lo:hi], solver, nfe, rescale))
        if progress:
            progress(hi)
    counts = np.concatenate([p[0] for p in parts])
    hits = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), hits


def _batch(model: AllShowers, cond, keys, pdg, solver: str, nfe: int, rescale: bool):
    cfg = model.cfg
    net = getattr(model, "backend", None) or model  # the velocity fields in ONNX Runtime where attached
    b = len(cond)
    count_solver, count_nfe = parse_decoder(cfg.count_solver) if cfg.count_solver else (solver, nfe)
    stage, counts, layer_energy = first_stage(net, cfg, cond, keys, count_solver, count_nfe)
    # the points move in groups of events of similar length (the attention is dense over a group's
    # longest event); each event's points do not depend on its group
    order = torch.argsort(counts.sum(1), stable=True)
    points, layers, events = [], [], []
    for lo in range(0, b, CNF_GROUP):
        rows = order[lo : lo + CNF_GROUP]
        layer, valid = point_layers(counts[rows])
        x0 = point_noise(keys[rows], valid)
        x = move_points(net, x0, layer, valid, cond[rows], stage[rows], cfg.band, solver, nfe)
        points.append(to_linear(x, cond[rows], cfg, stage[rows], layer)[valid])
        layers.append(layer[valid])
        events.append(rows[:, None].expand_as(valid)[valid])
    event = torch.cat(events)
    by_event = torch.argsort(event, stable=True)  # each event's points in layer order, as drawn
    flat = (torch.cat(points)[by_event], event[by_event], torch.cat(layers)[by_event])
    return _to_cells(*flat, b, layer_energy, pdg, cfg.stats, rescale, cfg.cell_mapping, cfg.scale_muons)


def first_stage(net, cfg, cond: torch.Tensor, keys: torch.Tensor, solver: str, nfe: int):
    """The first stage's draw for the events (conditions cond, stream keys): its ODE's output at t = 1
    (B, n_stage, standardised), the points per layer (B, 30; rounded from log(n + 0.5)) and the layer
    energies (B, 30 MeV; None where the model draws none)."""
    b, k, device = len(cond), cfg.n_stage, cond.device
    x0 = normals(keys, torch.arange(k, device=device).expand(b, k))
    stage = integrate(lambda x, t: net.count_velocity(x, t.expand(b).to(device), cond), x0, solver, nfe)
    mean, std = (torch.tensor(cfg.stats[key][:k], device=device).double() for key in ("stage_mean", "stage_std"))  # float32, as trained
    raw = stage.double() * std + mean
    counts = torch.clamp(torch.round(torch.exp(raw[:, :N_LAYERS]) - 0.5), 0, MAX_POINTS_PER_LAYER).long()
    layer_energy = (torch.exp(raw[:, N_LAYERS:]) - ENERGY_FLOOR_MEV).clamp(min=0.0) if cfg.layer_energies else None
    return stage, counts, layer_energy


def point_noise(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The standard-normal starting points (B, P, 3) of the point CNF, from the events' streams: the
    numbers of point i of an event are its stream's, whatever the batch; zero at padding (valid False)."""
    row, pos = valid.nonzero(as_tuple=True)
    counter = _POINT_COUNTER + pos[:, None] * 3 + torch.arange(3, device=keys.device)[None, :]
    x0 = torch.zeros(*valid.shape, 3, device=keys.device)
    x0[row, pos] = normals(keys[row], counter)
    return x0


def move_points(net, x0, layer, valid, cond, stage, band: int, solver: str, nfe: int) -> torch.Tensor:
    """The point CNF's ODE from x0 (B, P, 3) at t = 0 to the shower's points at t = 1."""
    b = len(x0)
    attention = BandAttention(layer, valid, band)
    return integrate(lambda x, t: net.point_velocity(x, t.expand(b).to(x0.device), layer, attention, cond, stage), x0, solver, nfe)


def point_layers(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer (B, P) of every point of each event, in layer order, exactly counts[b, l] points in
    layer l, and which positions hold a point (B, P) (past them: padding, never attended to)."""
    b = len(counts)
    per_event = counts.sum(1)
    p = max(int(per_event.max()), 1) if b else 1
    pos = torch.arange(p, device=counts.device).expand(b, p).contiguous()
    layer = torch.searchsorted(counts.cumsum(1), pos, right=True).clamp(max=N_LAYERS - 1)
    return layer, pos < per_event[:, None]


def _to_cells(
    points, event, layer, b: int, layer_energy, pdg, stats, rescale: bool, cell_mapping: str = "sum", scale_muons: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Cells of b events from their points (n, 3, standardised), each point's event and layer (n,)."""
    pts = points.double().cpu().numpy() * np.array(stats["point_std"]) + np.array(stats["point_mean"])
    event, layer = event.cpu().numpy(), layer.cpu().numpy()
    energy = np.exp(pts[:, 2])
    if rescale:
        sums = np.zeros((b, N_LAYERS))
        np.add.at(sums, (event, layer), energy)
        target = layer_energy.cpu().numpy()
        scale = np.divide(target, sums, out=np.ones_like(sums), where=sums > 0)
        if not scale_muons:
            scale[np.isin(pdg, MUONS)] = 1.0
        energy = energy * scale[event, layer]
    cx, cy = ILD.cell_of(pts[:, 0]), ILD.cell_of(pts[:, 1])
    on = (cx >= 0) & (cx < ILD.n_cells) & (cy >= 0) & (cy < ILD.n_cells)
    event, layer, cx, cy, energy = event[on], layer[on], cx[on], cy[on], energy[on]
    if cell_mapping == "matched":
        cx, cy = matched_cells(pts[on, 0], pts[on, 1], energy, cx, cy, event, layer)
    cell = ((event * N_LAYERS + layer) * ILD.n_cells + cx) * ILD.n_cells + cy
    unique, inverse = np.unique(cell, return_inverse=True)
    summed = np.bincount(inverse, weights=energy, minlength=len(unique))
    cy_u = unique % ILD.n_cells
    rest = unique // ILD.n_cells
    cx_u = rest % ILD.n_cells
    rest //= ILD.n_cells
    layer_u, event_u = rest % N_LAYERS, rest // N_LAYERS
    # the cells as `hitgen simulate ild-ecal` digitises them: the threshold, the order, the dtypes
    offsets, hits, _ = digitize(offsets_from_counts(np.bincount(event_u, minlength=b)), layer_u, cx_u, cy_u, summed, summed >= ILD.threshold_mev)
    return np.diff(offsets), hits


def matched_cells(x, y, energy, cx, cy, event, layer) -> tuple[np.ndarray, np.ndarray]:
    """Cells (cx, cy) of the points (x, y in mm, energy; their own cells cx, cy) such that no two
    points of one event and layer share one: in each layer where some do, the points' assignment to
    the cells of the box around their own cells (MATCH_MARGIN more on each side, on the plane) with
    the least sum of energy x squared distance from point to cell centre (the least change of the
    layer's energy-weighted second moment: the energetic points stay, the soft ones move)."""
    from scipy.optimize import linear_sum_assignment

    cx, cy, n = cx.copy(), cy.copy(), ILD.n_cells
    group = event.astype(np.int64) * N_LAYERS + layer
    cell = (group * n + cx) * n + cy
    order = np.lexsort((cell, group))
    g, c = group[order], cell[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(g)]
    shared = np.r_[False, c[1:] == c[:-1]]  # sorted by cell within a group: a repeat shares its cell
    crowded = np.add.reduceat(shared.astype(np.int64), starts) > 0 if len(starts) else np.zeros(0, bool)
    for s, e in zip(starts[crowded].tolist(), ends[crowded].tolist(), strict=True):
        idx = order[s:e]
        i = np.arange(max(cx[idx].min() - MATCH_MARGIN, 0), min(cx[idx].max() + MATCH_MARGIN, n - 1) + 1)
        j = np.arange(max(cy[idx].min() - MATCH_MARGIN, 0), min(cy[idx].max() + MATCH_MARGIN, n - 1) + 1)
        ii, jj = np.repeat(i, len(j)), np.tile(j, len(i))
        cost = energy[idx, None] * ((x[idx, None] - ILD.cell_centre_mm(ii)) ** 2 + (y[idx, None] - ILD.cell_centre_mm(jj)) ** 2)
        rows, cols = linear_sum_assignment(cost)
        cx[idx[rows]], cy[idx[rows]] = ii[cols], jj[cols]
    return cx, cy
