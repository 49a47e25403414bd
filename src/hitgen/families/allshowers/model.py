"""AllShowers ("AllShowers: One model for all calorimeter showers"; docs/families/allshowers.md): two conditional
flow-matching models of an ild-ecal shower.

1. The first stage (the paper's PointCountFM): an MLP velocity field over the number of points of
   each of the 30 layers, log(n + 0.5) standardised per layer; here also, beyond the paper, the
   energy of each layer, log(E + 0.01 MeV) standardised (`layer_energies`).
2. The point CNF: a transformer velocity field over the shower's points (x, y in mm, log energy in
   MeV; standardised), given the flow time (Fourier features), the condition and the first stage's
   numbers as a global context added to every point, and a learned embedding of each point's layer.
   Attention is restricted to the points of layers within `band` of a point's own (the paper's
   layer mask), as a boolean mask of dense attention (the CPU path). With `cell_features`, the
   sine and cosine of a point's x and y over the 5 mm period of the cells are added to its
   embedding (through a layer that starts at zero, so a warm start begins at its init model).
   The points are ild-ecal cells (5 mm, above threshold) or, with `point_layout` "ild-fine", 2.5 mm
   sub-cells with any deposit (data.py), and generation sums them into the cells of the readout.

The CNF's x and y: the training points' mm standardised (`core_scale_mm` 0), or, with a core scale
s > 0, s asinh((x - x_entry) / s) standardised (the same for y; x_entry the particle's entry point,
a condition): linear within about s of the shower's axis, logarithmic beyond, so the narrow core,
where the energy is, fills more of the flow's space and the sparse halo less. The CNF's log E: the
training points' log E standardised (`energy_reference` "none"), or, with "layer", log E less the
log of its layer's mean point energy, log((E_layer + 0.01 MeV) / (n_layer + 0.5)) of the first
stage's numbers, standardised: how a point shares its layer's energy, the part generation keeps
when it scales the points to the first stage's layer energies; the level of every layer, which varies
over orders of magnitude from shower to shower and layer to layer, is the first stage's. The data keep
linear standardised points (data.py); `to_flow` and `to_linear` move between the two.
With `layer_features`, each point also sees its own layer's first-stage numbers (standardised count
and energy) through a layer that starts at zero.

Flow matching convention: x_t = (1 - t) x0 + t x1 with x0 standard normal and x1 the data, so the
velocity to learn is x1 - x0, and generation integrates from t = 0 to t = 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.detectors.ild_ecal.geometry import CELL_SIZE_MM, N_LAYERS, layout_of
from hitgen.nn.blocks import Block

# particles the model has an embedding for, in the order of its one-hot (PDG codes)
PARTICLE_PDGS = (22, 11, -11, 13, -13)
N_COND = len(PARTICLE_PDGS) + 1 + 3 + 2  # one-hot, standardised log energy, direction, entry point / half cell
CORE_LIMIT = 15.0  # the core coordinate's asinh is clamped to +-this: s sinh(15) is kilometres off the plane


@dataclass
class AllShowersConfig:
    d_model: int = 64
    n_blocks: int = 3
    n_heads: int = 4
    d_ff: int = 256
    dropout: float = 0.0
    band: int = 2
    count_width: int = 256
    count_depth: int = 3
    time_frequencies: int = 8
    ot_pairing: bool = True
    layer_energies: bool = True
    scale_to_layer_energies: bool = True
    scale_muons: bool = False  # muons' points scaled too (config.py)
    # the points' offsets within their cells in training (data.py): "uniform" over the cell, or
    # "centred" (normal, dequantisation_width cells wide, cut at 0.45 of a cell: never leaves it)
    dequantisation: str = "uniform"
    dequantisation_width: float = 0.15
    cell_features: bool = False  # the point's phase within its cell grid as input features
    # the ild-ecal layout of the training points (set from the data): "ild", a point per 5 mm cell
    # above threshold, or "ild-fine", a point per 2.5 mm sub-cell with any deposit; generation forms
    # ild's cells either way
    point_layout: str = "ild"
    cell_mapping: str = "sum"  # points to cells: "sum" (the paper) or "matched" (distinct cells; sampler.py)
    core_scale_mm: float = 0.0  # > 0: the CNF's x, y are s asinh((x - entry) / s), standardised (the module's doc)
    core_stats: list[float] = field(default_factory=list)  # their mean x, y and std x, y over the training points (set when built)
    energy_reference: str = "none"  # "layer": the CNF's log E is relative to the layer's mean point energy (the module's doc)
    energy_stats: list[float] = field(default_factory=list)  # its mean and std over the training points (set when built)
    layer_features: bool = False  # a point's own layer's first-stage numbers as input features
    default_solver: str = "heun-32"
    count_solver: str | None = None  # the first stage's solver where it differs from the decoder's
    # standardisation of the training data (set from it when the model is built, then fixed)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_stage(self) -> int:
        """Numbers the first stage draws: counts per layer, and energies per layer with layer_energies."""
        return N_LAYERS * (2 if self.layer_energies else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AllShowersConfig:
        return cls(**d)


def fourier(t: torch.Tensor, n: int) -> torch.Tensor:
    """Fourier features (B, 2n) of times t (B,) in [0, 1]: sin and cos of pi 2^k t."""
    f = math.pi * 2.0 ** torch.arange(n, device=t.device, dtype=t.dtype)
    a = t[:, None] * f
    return torch.cat([a.sin(), a.cos()], dim=1)


def mlp(n_in: int, width: int, depth: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else width, width), nn.GELU()]
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def xy_scale(x: torch.Tensor, stats: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation (2,) in mm of the points' x and y (their standardisation)."""
    mean, std = (torch.tensor(stats[k][:2], dtype=x.dtype, device=x.device) for k in ("point_mean", "point_std"))
    return mean, std


def cell_grid(point_layout: str) -> tuple[float, float]:
    """The cell size and the x (= y) of a cell centre in mm of the training points' layout."""
    layout = layout_of({"layout": point_layout})
    return layout.cell_size_mm, float(layout.cell_centre_mm(layout.n_cells // 2))


def cell_phase(xy: torch.Tensor, point_layout: str = "ild") -> torch.Tensor:
    """(..., 4): sin and cos of 2 pi (x - c) / s and of 2 pi (y - c) / s, xy (..., 2) in mm, s the cell
    size and c a cell centre of the points' layout."""
    size, centre = cell_grid(point_layout)
    a = (xy - centre) * (2 * math.pi / size)
    return torch.cat([a.sin(), a.cos()], dim=-1)


def entry_mm(cond: torch.Tensor) -> torch.Tensor:
    """The entry point's x, y in mm (B, 1, 2) from the conditions (B, N_COND)."""
    return cond[:, None, -2:] * (CELL_SIZE_MM / 2)


def _core(cfg: AllShowersConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.tensor(cfg.core_stats, dtype=like.dtype, device=like.device)
    return c[:2], c[2:]


def xy_mm(x: torch.Tensor, cond: torch.Tensor, cfg: AllShowersConfig) -> torch.Tensor:
    """x, y in mm (B, P, 2) of points (B, P, 3) in the CNF's coordinates."""
    if not cfg.core_scale_mm:
        mean, std = xy_scale(x, cfg.stats)
        return x[..., :2] * std + mean
    mean, std = _core(cfg, x)
    s = cfg.core_scale_mm
    z = ((x[..., :2] * std + mean) / s).clamp(-CORE_LIMIT, CORE_LIMIT)
    return entry_mm(cond).to(x.dtype) + s * 0.5 * (torch.exp(z) - torch.exp(-z))  # sinh, written out: ONNX export has no aten::sinh


def layer_reference(stage: torch.Tensor, cfg: AllShowersConfig) -> torch.Tensor:
    """log((E_l + 0.01 MeV) / (n_l + 0.5)) (B, 30) of every layer l, from the standardised first-stage
    numbers (B, >= 60): the log of the layer's mean point energy in MeV."""
    mean, std = (torch.tensor(cfg.stats[k][: 2 * N_LAYERS], dtype=stage.dtype, device=stage.device) for k in ("stage_mean", "stage_std"))
    raw = stage[:, : 2 * N_LAYERS] * std + mean
    return raw[:, N_LAYERS:] - raw[:, :N_LAYERS]


def _raw_flow(points: torch.Tensor, entry: torch.Tensor, reference: torch.Tensor | None, cfg: AllShowersConfig) -> torch.Tensor:
    """The CNF's coordinates before their standardisation, of linear standardised points (..., 3) with
    the entry point in mm (..., 2) and their layer's reference (...; None without energy_reference)."""
    mean, std = (torch.tensor(cfg.stats[k], dtype=points.dtype, device=points.device) for k in ("point_mean", "point_std"))
    lin = points * std + mean
    xy = lin[..., :2]
    if cfg.core_scale_mm:
        s = cfg.core_scale_mm
        xy = s * torch.asinh((xy - entry) / s)
    log_e = lin[..., 2:] if reference is None else lin[..., 2:] - reference[..., None]
    return torch.cat([xy, log_e], dim=-1)


def _flow_scale(cfg: AllShowersConfig, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std (3,) of the CNF's raw coordinates (those that are not the data's own are set when built)."""
    mean = torch.tensor(cfg.stats["point_mean"], dtype=like.dtype, device=like.device)
    std = torch.tensor(cfg.stats["point_std"], dtype=like.dtype, device=like.device)
    if cfg.core_scale_mm:
        mean[:2], std[:2] = _core(cfg, like)
    if cfg.energy_reference == "layer":
        mean[2], std[2] = cfg.energy_stats
    return mean, std


def _reference(stage: torch.Tensor | None, layer: torch.Tensor | None, cfg: AllShowersConfig) -> torch.Tensor | None:
    """Each point's layer_reference (B, P), or None without energy_reference."""
    if cfg.energy_reference != "layer":
        return None
    return torch.gather(layer_reference(stage, cfg), 1, layer)


def to_flow(
    points: torch.Tensor, cond: torch.Tensor, cfg: AllShowersConfig, stage: torch.Tensor | None = None, layer: torch.Tensor | None = None
) -> torch.Tensor:
    """Linear standardised points (B, P, 3; data.py) of layers `layer` (B, P), showers of conditions
    cond and first-stage numbers stage (standardised), in the CNF's coordinates."""
    if not cfg.core_scale_mm and cfg.energy_reference != "layer":
        return points
    mean, std = _flow_scale(cfg, points)
    return (_raw_flow(points, entry_mm(cond).to(points.dtype), _reference(stage, layer, cfg), cfg) - mean) / std


def to_linear(
    x: torch.Tensor, cond: torch.Tensor, cfg: AllShowersConfig, stage: torch.Tensor | None = None, layer: torch.Tensor | None = None
) -> torch.Tensor:
    """Points (B, P, 3) in the CNF's coordinates as linear standardised points (to_flow's inverse)."""
    if not cfg.core_scale_mm and cfg.energy_reference != "layer":
        return x
    pmean, pstd = xy_scale(x, cfg.stats)
    xy = (xy_mm(x, cond, cfg) - pmean) / pstd
    if cfg.energy_reference != "layer":
        return torch.cat([xy, x[..., 2:]], dim=-1)
    emean, estd = cfg.energy_stats
    log_e = x[..., 2] * estd + emean + _reference(stage, layer, cfg)
    return torch.cat([xy, ((log_e - cfg.stats["point_mean"][2]) / cfg.stats["point_std"][2])[..., None]], dim=-1)


def flow_statistics(
    points: np.ndarray, layer: np.ndarray, cond: np.ndarray, stage: np.ndarray, offsets: np.ndarray, cfg: AllShowersConfig
) -> dict[str, list[float]]:
    """core_stats and energy_stats of a model configured as cfg (stats set), over training points
    (hits, 3; linear standardised) of layers `layer`, of showers with conditions cond (N, N_COND), first-stage
    numbers stage (N, 60; standardised) and CSR offsets: the mean and std of the CNF's raw coordinates."""
    event = torch.from_numpy(np.repeat(np.arange(len(cond)), np.diff(offsets)))
    pts = torch.from_numpy(points).double()
    entry = entry_mm(torch.from_numpy(cond).double())[event, 0]
    reference = None
    if cfg.energy_reference == "layer":
        reference = layer_reference(torch.from_numpy(stage).double(), cfg)[event, torch.from_numpy(layer)]
    raw = _raw_flow(pts, entry, reference, cfg)
    mean, std = raw.mean(0).tolist(), raw.std(0, unbiased=False).clamp(min=1e-3).tolist()
    return {
        "core_stats": [*mean[:2], *std[:2]] if cfg.core_scale_mm else [],
        "energy_stats": [mean[2], std[2]] if cfg.energy_reference == "layer" else [],
    }


class BandAttention:
    """Attention of Block (the cache protocol: attend(index, q, k, v)) over the points of layers
    within `band` of each point's own; padding is never attended to (a padded row attends to itself,
    so it stays finite, and is ignored by the loss and the sampler)."""

    def __init__(self, layer: torch.Tensor, valid: torch.Tensor, band: int) -> None:
        self.valid = valid
        near = (layer[:, :, None] - layer[:, None, :]).abs() <= band
        allowed = near & valid[:, None, :]
        index = torch.arange(layer.shape[1], device=layer.device)
        allowed = allowed | (index[:, None] == index[None, :])[None]
        self.mask = allowed[:, None]  # (B, 1, P, P): broadcast over heads

    def attend(self, index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)


class AllShowers(nn.Module):
    def __init__(self, cfg: AllShowersConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, nf, k = cfg.d_model, 2 * cfg.time_frequencies, cfg.n_stage
        self.count_net = mlp(k + nf + N_COND, cfg.count_width, cfg.count_depth, k)
        self.point_in = nn.Linear(3, d)
        if cfg.cell_features:
            self.cell_in = nn.Linear(4, d)
            nn.init.zeros_(self.cell_in.weight)
            nn.init.zeros_(self.cell_in.bias)
        self.layer_emb = nn.Embedding(N_LAYERS, d)
        if cfg.layer_features:
            self.layer_in = nn.Linear(k // N_LAYERS, d)
            nn.init.zeros_(self.layer_in.weight)
            nn.init.zeros_(self.layer_in.bias)
        self.context = mlp(N_COND + k + nf, d, 2, d)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_blocks)])
        self.ln_f = nn.LayerNorm(d)
        self.point_out = nn.Linear(d, 3)
        nn.init.zeros_(self.point_out.weight)  # the flow starts at zero velocity
        nn.init.zeros_(self.point_out.bias)
        nn.init.normal_(self.layer_emb.weight, std=0.02)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def count_velocity(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """First stage: velocity (B, K) at x (B, K), times t (B,), conditions (B, N_COND)."""
        return self.count_net(torch.cat([x, fourier(t, self.cfg.time_frequencies), cond], dim=1))

    def point_velocity(
        self, x: torch.Tensor, t: torch.Tensor, layer: torch.Tensor, attention: BandAttention, cond: torch.Tensor, stage: torch.Tensor
    ) -> torch.Tensor:
        """Point CNF: velocity (B, P, 3) at points x (B, P, 3) of layers `layer` (B, P), times t (B,)."""
        ctx = self.context(torch.cat([cond, stage, fourier(t, self.cfg.time_frequencies)], dim=1))
        h = self.point_in(x) + self.layer_emb(layer) + ctx[:, None, :]
        if self.cfg.cell_features:
            h = h + self.cell_in(cell_phase(xy_mm(x, cond, self.cfg), self.cfg.point_layout))
        if self.cfg.layer_features:  # the standardised count (and energy) of each point's own layer
            own = [torch.gather(stage[:, i * N_LAYERS : (i + 1) * N_LAYERS], 1, layer) for i in range(self.cfg.n_stage // N_LAYERS)]
            h = h + self.layer_in(torch.stack(own, dim=-1))
        for i, block in enumerate(self.blocks):
            h = block(h, attention, i)
        return self.point_out(self.ln_f(h))
