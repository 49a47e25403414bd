"""ild-ecal events as AllShowers' training data: per event its conditions, the first stage's numbers
(points and, optionally, energy per layer) and its points, all standardised.

Points are the cells above threshold (layout ild), or the 2.5 mm sub-cells with any deposit (layout
ild-fine: generation sums them into ild's cells): x, y at the cell centre plus a fixed uniform offset
within the cell (dequantisation: the flow learns a continuous density, and generation maps a point back to
the cell it falls in), and log of the cell energy in MeV. The offsets come from a generator seeded by
the event's index, so the data are the same in every call (exact resume). A model with
`dequantisation = "centred"` moves the points of every training batch to their cell centres plus a
narrow normal offset (`centred_points`, fresh in every step from the trainer's generator): the
points of a shower stay apart by most of a cell, and a point that lands near its target stays in
its cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.geometry import CELL_SIZE_MM, N_LAYERS, layout_of
from hitgen.families.allshowers.model import N_COND, PARTICLE_PDGS, cell_grid, xy_scale

POINT_LAYOUTS = ("ild", "ild-fine")  # the layouts whose hits can be training points (generation writes ild's cells)
ENERGY_FLOOR_MEV = 0.01  # log(E_layer + floor): an empty layer is a finite number
_DEQUANT_SEED = 20


def particle_problems(conditions: dict[str, np.ndarray]) -> list[str]:
    """A particle without an embedding, as one line (empty when every particle is known)."""
    known = np.isin(conditions["pdg"], PARTICLE_PDGS)
    if known.all():
        return []
    return [f"particle PDG {int(conditions['pdg'][~known][0])} has no embedding in an AllShowers model (known: {list(PARTICLE_PDGS)})"]


def particle_index(pdg: np.ndarray) -> np.ndarray:
    """Index of each PDG code in PARTICLE_PDGS; one clear error for another particle."""
    problems = particle_problems({"pdg": np.asarray(pdg)})
    if problems:
        raise HitgenError(problems[0])
    lookup = {code: i for i, code in enumerate(PARTICLE_PDGS)}
    return np.array([lookup[int(p)] for p in pdg], dtype=np.int64)


def condition_vector(conditions: dict[str, np.ndarray], stats: dict) -> np.ndarray:
    """(N, N_COND) float32: particle one-hot, standardised log energy, direction, entry point / half cell."""
    n = len(conditions["energy"])
    onehot = np.zeros((n, len(PARTICLE_PDGS)), np.float32)
    onehot[np.arange(n), particle_index(conditions["pdg"])] = 1.0
    log_e = (np.log(conditions["energy"].astype(np.float64)) - stats["log_energy_mean"]) / stats["log_energy_std"]
    entry = conditions["entry_point"][:, :2].astype(np.float64) / (CELL_SIZE_MM / 2)
    out = np.concatenate([onehot, log_e[:, None], conditions["direction"].astype(np.float64), entry], axis=1).astype(np.float32)
    assert out.shape[1] == N_COND
    return out


def layer_numbers(offsets: np.ndarray, layer: np.ndarray, energy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 30) and energy in MeV (N, 30) of every layer of every event."""
    n = len(offsets) - 1
    event = np.repeat(np.arange(n), np.diff(offsets))
    counts = np.zeros((n, N_LAYERS))
    np.add.at(counts, (event, layer), 1)
    energies = np.zeros((n, N_LAYERS))
    np.add.at(energies, (event, layer), energy)
    return counts, energies


def stage_raw(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """The first stage's numbers before standardisation: log(n + 0.5), then log(E + floor), per
    layer (a model without layer_energies uses the first 30)."""
    return np.concatenate([np.log(counts + 0.5), np.log(energies + ENERGY_FLOOR_MEV)], axis=1)


def dequantised_points(events: EventSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y (mm, cell centre plus a fixed offset within the cell), log E (MeV), and the layers of all hits."""
    geometry = layout_of(events.detector_spec)
    h = events.hits
    n_hits = len(h["layer"])
    rng = np.random.default_rng(_DEQUANT_SEED)
    offset = rng.uniform(-0.5, 0.5, (n_hits, 2)) * geometry.cell_size_mm
    x = geometry.cell_centre_mm(h["cell_x"]) + offset[:, 0]
    y = geometry.cell_centre_mm(h["cell_y"]) + offset[:, 1]
    return np.stack([x, y, np.log(h["energy"].astype(np.float64))], axis=1), h["layer"].astype(np.int64), h["energy"].astype(np.float64)


def compute_stats(pts: np.ndarray, stage: np.ndarray, energy_gev: np.ndarray) -> dict:
    """The standardisation of a training sample (recorded in the model's config): of its points
    (dequantised_points), first-stage numbers (stage_raw) and incident energies."""
    log_e = np.log(energy_gev.astype(np.float64))
    return {
        "point_mean": pts.mean(0).tolist(),
        "point_std": np.maximum(pts.std(0), 1e-3).tolist(),
        "stage_mean": stage.mean(0).tolist(),
        "stage_std": np.maximum(stage.std(0), 1e-2).tolist(),
        "log_energy_mean": float(log_e.mean()),
        "log_energy_std": float(max(log_e.std(), 1e-3)),
    }


def same_standardisation(a: dict, b: dict) -> bool:
    """Whether two models' (or data's) standardisations are the same numbers."""
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=1e-6, atol=0) for k in a)


@dataclass
class ShowerData:
    cond: np.ndarray  # (N, N_COND) float32
    stage: np.ndarray  # (N, 60) float32, standardised
    offsets: np.ndarray  # (N+1,) int64
    points: np.ndarray  # (hits, 3) float32, standardised, sorted by layer within each event
    layer: np.ndarray  # (hits,) int64
    stats: dict
    index: np.ndarray  # (N,) int64: each shower's index in the training files (fixed across subsets)
    layout: str = "ild"  # the layout of the points' cells (POINT_LAYOUTS)

    @property
    def length(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.cond)

    @classmethod
    def from_events(cls, events: EventSet, stats: dict | None = None) -> ShowerData:
        layout = layout_of(events.detector_spec).name
        if layout not in POINT_LAYOUTS:
            raise HitgenError(f"AllShowers trains on ild-ecal events of layout {' or '.join(POINT_LAYOUTS)}; these are of layout '{layout}'")
        pts, layer, energy = dequantised_points(events)
        stage = stage_raw(*layer_numbers(events.offsets, layer, energy))
        stats = stats or compute_stats(pts, stage, events.conditions["energy"])
        stage = (stage - np.array(stats["stage_mean"])) / np.array(stats["stage_std"])
        pts = (pts - np.array(stats["point_mean"])) / np.array(stats["point_std"])
        event = np.repeat(np.arange(events.n_events), np.diff(events.offsets))
        order = np.lexsort((layer, event))  # hits come sorted by (layer, x, y) already; made sure here
        return cls(
            condition_vector(events.conditions, stats),
            stage.astype(np.float32),
            events.offsets.astype(np.int64),
            pts[order].astype(np.float32),
            layer[order],
            stats,
            np.arange(events.n_events, dtype=np.int64),
            layout,
        )

    def subset(self, idx: np.ndarray) -> ShowerData:
        idx = np.asarray(idx)
        lengths = self.length[idx]
        take = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return ShowerData(self.cond[idx], self.stage[idx], offsets, self.points[take], self.layer[take], self.stats, self.index[idx], self.layout)

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx)
        lengths = self.length[idx]
        p = max(int(lengths.max()), 1)
        pts = np.zeros((len(idx), p, 3), np.float32)
        layer = np.zeros((len(idx), p), np.int64)
        valid = np.zeros((len(idx), p), bool)
        for row, i in enumerate(idx):
            s, e = self.offsets[i], self.offsets[i + 1]
            pts[row, : e - s] = self.points[s:e]
            layer[row, : e - s] = self.layer[s:e]
            layer[row, e - s :] = self.layer[e - 1] if e > s else 0
            valid[row, : e - s] = True
        return {
            "cond": torch.from_numpy(self.cond[idx]),
            "stage": torch.from_numpy(self.stage[idx]),
            "points": torch.from_numpy(pts),
            "layer": torch.from_numpy(layer),
            "valid": torch.from_numpy(valid),
            "index": torch.from_numpy(self.index[idx]),
        }


def centred_points(points: torch.Tensor, stats: dict, width: float, cut: float = 0.45, point_layout: str = "ild") -> torch.Tensor:
    """Standardised points (..., 3) with x and y moved to their cell's centre plus a normal offset of
    `width` cells, cut at `cut` of a cell (so every point stays in its cell); log E unchanged. The
    cells are those of the points' layout (cell_grid: their size and where one is centred)."""
    mean, std = xy_scale(points, stats)
    size, c0 = cell_grid(point_layout)
    xy = points[..., :2] * std + mean
    centre = torch.floor((xy - c0) / size + 0.5) * size + c0
    offset = (torch.randn_like(xy) * width).clamp(-cut, cut) * size
    return torch.cat([(centre + offset - mean) / std, points[..., 2:]], dim=-1)
