"""Conditional flow matching of both stages, with the noise of each shower's points paired to its
points by optimal transport within each layer (POT's exact solver on squared distances)."""

from __future__ import annotations

import numpy as np
import ot
import torch

from hitgen.families.allshowers.model import AllShowers, BandAttention


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


def flow_matching_loss(model: AllShowers, batch: dict[str, torch.Tensor], count_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    cond, stage = batch["cond"], batch["stage"][:, : model.cfg.n_stage]
    points, layer, valid = batch["points"], batch["layer"], batch["valid"]
    b = len(cond)
    # first stage: straight paths from noise to the standardised numbers of every layer
    x0 = torch.randn_like(stage)
    t = torch.rand(b, device=stage.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * stage
    count_loss = ((model.count_velocity(xt, t, cond) - (stage - x0)) ** 2).mean()
    # the points, given the true first-stage numbers
    noise = torch.randn_like(points)
    if model.cfg.ot_pairing:
        noise = ot_pairing(noise, points, layer, valid)
    t2 = torch.rand(b, device=points.device)
    xt = (1 - t2[:, None, None]) * noise + t2[:, None, None] * points
    v = model.point_velocity(xt, t2, layer, BandAttention(layer, valid, model.cfg.band), cond, stage)
    point_loss = ((v - (points - noise)) ** 2).sum(-1)[valid].mean() / 3
    loss = point_loss + count_weight * count_loss
    return loss, {"loss": loss.item(), "points": point_loss.item(), "counts": count_loss.item()}
