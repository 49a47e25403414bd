"""Conditional flow matching of both stages, with the noise of each shower's points paired to its
points by optimal transport within each layer (POT's exact solver on squared distances)."""

from __future__ import annotations

import numpy as np
import ot
import torch

from hitgen.families.allshowers.data import centred_points
from hitgen.families.allshowers.model import AllShowers, BandAttention, to_flow


def ot_pairing(noise: torch.Tensor, points: torch.Tensor, layer: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The noise (B, P, 3) permuted within every (shower, layer) so that the sum of squared distances
    to the points is smallest; padding stays where it is."""
    out = noise.clone()
    n_np, p_np = noise.detach().cpu().numpy().astype(np.float64), points.detach().cpu().numpy().astype(np.float64)
    layer_np, valid_np = layer.cpu().numpy(), valid.cpu().numpy()
    for b in range(len(valid_np)):
        m = int(valid_np[b].sum())
        if m < 2:
            continue
        ls = layer_np[b, :m]
        bounds = np.flatnonzero(np.diff(ls)) + 1  # points are sorted by layer
        for s, e in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [m]]), strict=True):
            if e - s < 2:
                continue
            cost = ot.dist(p_np[b, s:e], n_np[b, s:e])  # squared Euclidean
            w = np.full(e - s, 1.0 / (e - s))
            plan = ot.emd(w, w, cost)
            perm = plan.argmax(axis=1)  # point i takes noise perm[i]
            out[b, s:e] = noise[b, s:e][torch.from_numpy(perm)]
    return out


def count_loss(model: AllShowers, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The first stage's flow matching: straight paths from noise to the standardised numbers of every layer."""
    cond, stage = batch["cond"], batch["stage"][:, : model.cfg.n_stage]
    x0 = torch.randn_like(stage)
    t = torch.rand(len(cond), device=stage.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * stage
    return ((model.count_velocity(xt, t, cond) - (stage - x0)) ** 2).mean()


def point_loss(model: AllShowers, batch: dict[str, torch.Tensor], noise: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Flow matching of the point CNF on straight paths from `noise` to `target` (B, P, 3), given the
    shower's true first-stage numbers; the mean over real points and coordinates."""
    cond, stage = batch["cond"], batch["stage"][:, : model.cfg.n_stage]
    layer, valid = batch["layer"], batch["valid"]
    t = torch.rand(len(cond), device=noise.device)
    xt = (1 - t[:, None, None]) * noise + t[:, None, None] * target
    v = model.point_velocity(xt, t, layer, BandAttention(layer, valid, model.cfg.band), cond, stage)
    return ((v - (target - noise)) ** 2).sum(-1)[valid].mean() / 3


def flow_matching_loss(
    model: AllShowers, batch: dict[str, torch.Tensor], count_weight: float = 1.0, point_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    counts = count_loss(model, batch)
    if point_weight == 0:  # the first stage alone: the point CNF is not run
        loss = count_weight * counts
        return loss, {"loss": loss.item(), "points": 0.0, "counts": counts.item()}
    points = batch["points"]
    if model.cfg.dequantisation == "centred":
        points = centred_points(points, model.cfg.stats, model.cfg.dequantisation_width, point_layout=model.cfg.point_layout)
    points = to_flow(points, batch["cond"], model.cfg, batch["stage"], batch["layer"])
    noise = torch.randn_like(points)
    if model.cfg.ot_pairing:
        noise = ot_pairing(noise, points, batch["layer"], batch["valid"])
    pts = point_loss(model, batch, noise, points)
    loss = point_weight * pts + count_weight * counts
    return loss, {"loss": loss.item(), "points": pts.item(), "counts": counts.item()}
