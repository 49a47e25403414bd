"""Training data of the foundation model: voxel token sequences of one or more event files, each file
routed to the expert of its (particle, absorber), and the loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.families.calo_moe.tokens import (
    EOS_LAYER,
    EXPERT_KEYS,
    condition_vector,
    expert_key,
    particle_names,
    served_by,
    shape_features,
    tokenize,
    total_bin,
)

IGNORE = -100


def expert_names(events: EventSet) -> np.ndarray:
    """The expert key of every event: its particle and the file's absorber."""
    material = events.detector_spec.get("absorber", "W")
    return np.array([expert_key(p, material) for p in particle_names(events.conditions["pdg"])])


@dataclass
class VoxelData:
    offsets: np.ndarray
    layer: np.ndarray
    x: np.ndarray
    y: np.ndarray
    ebin: np.ndarray
    cond: np.ndarray  # (N, N_COND) float32
    expert: np.ndarray  # (N,) int64 index into tokens.EXPERT_KEYS
    total: np.ndarray  # (N,) int64 the total-energy module's token of the window's total (tokens.total_bin)
    shape: np.ndarray  # (N, N_SHAPE) float32 tokens.shape_features of the voxels

    @property
    def length(self) -> np.ndarray:
        return np.diff(self.offsets) + 1  # the prefix and one position per voxel

    def __len__(self) -> int:
        return len(self.cond)

    @classmethod
    def from_parts(cls, parts: list[EventSet]) -> VoxelData:
        pieces = []
        for events in parts:
            seq = tokenize(events)
            codes = np.array([EXPERT_KEYS.index(k) for k in expert_names(events)], dtype=np.int64)
            total = total_bin(seq.window_energy / events.conditions["energy"].astype(np.float64))
            event = np.repeat(np.arange(events.n_events), np.diff(seq.offsets))
            shape = shape_features(event, seq.layer, seq.x, seq.y, seq.ebin, events.n_events)
            pieces.append(cls(seq.offsets, seq.layer, seq.x, seq.y, seq.ebin, condition_vector(events.conditions), codes, total, shape))
        if len(pieces) == 1:
            return pieces[0]
        starts = np.cumsum([0] + [p.offsets[-1] for p in pieces[:-1]])
        offsets = np.concatenate([pieces[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(pieces, starts, strict=True)])
        cat = {k: np.concatenate([getattr(p, k) for p in pieces]) for k in ("layer", "x", "y", "ebin", "cond", "expert", "total", "shape")}
        return cls(offsets=offsets, **cat)

    def experts(self) -> list[str]:
        return [EXPERT_KEYS[c] for c in np.unique(self.expert)]

    def shapes_of(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The shape features of the showers of each key (those the data hold)."""
        rows = {k: self.expert == EXPERT_KEYS.index(k) for k in keys}
        return {k: self.shape[r] for k, r in rows.items() if r.any()}

    def log_energy_stats(self) -> dict[str, float]:
        log_e = self.cond[:, 0].astype(np.float64)
        return {"log_energy_mean": float(log_e.mean()), "log_energy_std": float(max(log_e.std(), 1e-3))}

    def subset(self, idx: np.ndarray) -> VoxelData:
        idx = np.asarray(idx)
        counts = np.diff(self.offsets)[idx]
        take = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) if len(idx) else np.zeros(0, np.int64)
        return VoxelData(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            self.layer[take],
            self.x[take],
            self.y[take],
            self.ebin[take],
            self.cond[idx],
            self.expert[idx],
            self.total[idx],
            self.shape[idx],
        )

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """Inputs (B, T) of the voxel positions, targets (B, T + 1) of every position (the end at the
        last; IGNORE past it, and for x, y, energy at the end)."""
        idx = np.asarray(idx)
        n = np.diff(self.offsets)[idx]
        t = int(n.max()) if len(n) else 0
        b = len(idx)
        fields = {k: np.zeros((b, t), np.int64) for k in ("layer", "x", "y", "ebin")}
        targets = {k: np.full((b, t + 1), IGNORE, np.int64) for k in ("layer", "x", "y", "ebin")}
        for r, i in enumerate(idx):
            s = slice(self.offsets[i], self.offsets[i + 1])
            for k in fields:
                fields[k][r, : n[r]] = getattr(self, k)[s]
                targets[k][r, : n[r]] = getattr(self, k)[s]
            targets["layer"][r, n[r]] = EOS_LAYER
        out = {k: torch.from_numpy(v) for k, v in fields.items()}
        out |= {f"t_{k}": torch.from_numpy(v) for k, v in targets.items()}
        out["cond"] = torch.from_numpy(self.cond[idx])
        out["expert"] = torch.from_numpy(self.expert[idx])
        out["total"] = torch.from_numpy(self.total[idx])
        out["shape"] = torch.from_numpy(self.shape[idx])
        return out


def check_experts(data: VoxelData, experts: list[str], lora_particles: list[str]) -> None:
    missing = [k for k in data.experts() if served_by(k, experts, lora_particles) is None]
    if missing:
        raise HitgenError(f"the training data hold {missing[0]} showers, but the model config has no expert for them (experts: {experts})")


LOSS_FIELDS = ("loss", "ce_layer", "ce_x", "ce_y", "ce_energy")
TOTAL_LOSS_FIELDS = ("loss", "nll_total")


def total_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The total-energy modules' negative log-likelihood of the showers' totals, per shower ([loss] total_only:
    a total module; the trunk is not run). Every shower must have a total module in the model; a module
    of a key in total_shape reads the showers' shape features (their Geant4 voxels')."""
    experts = [EXPERT_KEYS[c] for c in batch["expert"].tolist()]
    missing = sorted(k for k in set(experts) if k not in model.totals)
    if missing:
        raise HitgenError(
            f"the training data hold {missing[0]} showers, but the model has no total-energy module for them (it has: {list(model.totals)})"
        )
    cond = model.standardised(batch["cond"])
    nll = cond.new_zeros(())
    for key in dict.fromkeys(experts):
        rows = torch.tensor([r for r, k in enumerate(experts) if k == key], device=cond.device)
        nll = nll - model.totals[key].log_prob(cond[rows], batch["total"][rows], batch["shape"][rows]).sum()
    nll = nll / len(experts)
    return nll, {"loss": float(nll.detach()), "nll_total": float(nll.detach())}


RENORMALISED_FIELDS = (*LOSS_FIELDS, "log_free")


def taken_pairs(layer: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For one shower's voxels (in sequence order): every (position j, column) such that the column
    (layer, x) holds a voxel before position j (j = 0 ... n, n the end), as j, the column's layer and x,
    and which y of the column are taken before j (pairs, WINDOW)."""
    n = len(layer)
    column = layer.astype(np.int64) * WINDOW + x
    ids, first, col_of = np.unique(column, return_index=True, return_inverse=True)
    taken_at = np.full((len(ids), WINDOW), n + 1, np.int64)  # where each (column, y) is taken
    np.minimum.at(taken_at, (col_of.ravel(), y), np.arange(n))
    j, c = np.nonzero(first[None, :] < np.arange(n + 1)[:, None])
    return j, ids[c] // WINDOW, ids[c] % WINDOW, taken_at[c] < j[:, None]


def _head_parts(mlp: torch.nn.Sequential, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A head's first layer on h (with its bias) and its weight: the head of h + e is
    second(gelu(first(h) + weight @ e)), so that embeddings added to h cost a gather, not a matmul."""
    return F.linear(h, mlp[0].weight, mlp[0].bias), mlp[0].weight


def taken_mass(heads, h: torch.Tensor, layer_logp: torch.Tensor, pairs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(B, T + 1) the mass M the heads put on voxels already in each shower at each position,
    p(layer) p(x | layer) p(y | layer, x) summed over them; pairs: row, position, layer, x and taken-y
    mask of every (position, column holding a voxel before it) (taken_pairs)."""
    r, j, lc, xc, mask = pairs
    a_x, w_x = _head_parts(heads.x, h)
    a_y, w_y = _head_parts(heads.y, h)
    e_l, e_x = heads.emb_layer.weight, heads.emb_x.weight
    # p(layer) and p(x | layer) depend on the pair's (row, position, layer) only, which many pairs
    # share (every column of a layer): computed once per triple, gathered for each pair
    t1, n_layers = h.shape[1], len(e_l)
    triple, of_pair = torch.unique((r * t1 + j) * n_layers + lc, return_inverse=True)
    tr, tj, tl = triple // (t1 * n_layers), (triple // n_layers) % t1, triple % n_layers
    hx = F.gelu(a_x[tr, tj] + F.linear(e_l, w_x)[tl])
    log_p = (torch.log_softmax(heads.x[2](hx), -1) + layer_logp[tr, tj, tl, None])[of_pair, xc]
    column = (F.linear(e_l, w_y)[:, None, :] + F.linear(e_x, w_y)[None, :, :]).flatten(0, 1)  # (layer, x) -> the y head's input
    hy = F.gelu(a_y[r, j] + column[lc * len(e_x) + xc])
    in_column = (torch.softmax(heads.y[2](hy), -1) * mask).sum(1)
    m = torch.exp(log_p) * in_column
    return h.new_zeros(h.shape[:2]).index_put_((r, j), m, accumulate=True)


def _batch_pairs(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """taken_pairs of the batch's rows, with each pair's row, on the batch's device."""
    n = (batch["t_x"][rows] != IGNORE).sum(1).tolist()
    layer, x, y = (batch[k][rows].cpu().numpy() for k in ("layer", "x", "y"))
    parts = [taken_pairs(layer[r, : n[r]], x[r, : n[r]], y[r, : n[r]]) for r in range(len(n))]
    r = np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)])
    arrays = (r, *(np.concatenate([p[i] for p in parts]) for i in range(4)))
    return tuple(torch.from_numpy(a).to(rows.device) for a in arrays)


def moe_loss(model, batch: dict[str, torch.Tensor], renormalise: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross entropy per position of the four heads (layer or end; x, y and energy bin of a voxel),
    summed over heads and averaged over positions; each part per position as logged.

    renormalise ([loss] renormalise): the cross entropy of the distribution that generation with
    exclusion "voxel" draws from, the heads' renormalised over the voxels not yet in the shower: the
    voxel's -log p plus log(1 - M) at each position (M: taken_mass), logged as log_free."""
    experts = [EXPERT_KEYS[c] for c in batch["expert"].tolist()]
    h = model(batch, experts)
    drawn_by = [model.heads_of(k) for k in experts]
    sums = {k: h.new_zeros(()) for k in (RENORMALISED_FIELDS if renormalise else LOSS_FIELDS)[1:]}
    for name in dict.fromkeys(drawn_by):
        rows = torch.tensor([r for r, p in enumerate(drawn_by) if p == name], device=h.device)
        heads = model.heads[name]
        hp = h[rows]
        t_layer = batch["t_layer"][rows]
        layer_logits = heads.layer(hp)
        sums["ce_layer"] = sums["ce_layer"] + F.cross_entropy(layer_logits.flatten(0, 1), t_layer.flatten(), ignore_index=IGNORE, reduction="sum")
        if renormalise:
            m = taken_mass(heads, hp, torch.log_softmax(layer_logits.float(), -1), _batch_pairs(batch, rows))
            free = torch.log1p(-m.clamp(max=1 - 1e-6))
            sums["log_free"] = sums["log_free"] + free[t_layer != IGNORE].sum()
        vox = batch["t_x"][rows] != IGNORE
        hv = hp[vox]
        hl = heads.after_layer(hv, t_layer[vox])
        hx = heads.after_x(hl, batch["t_x"][rows][vox])
        hy = heads.after_y(hx, batch["t_y"][rows][vox])
        sums["ce_x"] = sums["ce_x"] + F.cross_entropy(heads.x(hl), batch["t_x"][rows][vox], reduction="sum")
        sums["ce_y"] = sums["ce_y"] + F.cross_entropy(heads.y(hx), batch["t_y"][rows][vox], reduction="sum")
        sums["ce_energy"] = sums["ce_energy"] + F.cross_entropy(heads.energy(hy), batch["t_ebin"][rows][vox], reduction="sum")
    positions = (batch["t_layer"] != IGNORE).sum().clamp(min=1)
    parts = {k: v / positions for k, v in sums.items()}
    loss = sum(parts.values())
    return loss, {"loss": float(loss.detach())} | {k: float(v.detach()) for k, v in parts.items()}
