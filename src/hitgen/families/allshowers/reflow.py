"""Reflow (rectified flow, "2-rectified"): a few-step point CNF learned from a trained one.

The teacher (the trainer's [train] teacher, an AllShowers model on the same standardisation) moves
each training shower's noise to points with its ODE (`[loss] reflow_solver`, heun-8 by default),
given the shower's true first-stage numbers; the student learns the straight path from that noise to
those points. Straight paths need few evaluations: the few-step sampler the paper only guesses at.

The noise of a shower is fixed: drawn from its own stream (hitgen.nn.streams, keyed by the training
seed and the shower's index in the training files), as generation draws it, and drawn again whenever
a batch needs it. The teacher's points are computed once per session, in chunks of fixed composition
(CHUNK showers of similar length: little padding), whatever batch first needs them, so they do not
depend on the order of the batches and a resumed run sees the same pairs: resume stays exact. The
first stage keeps its flow matching on the data (its MLP costs little at many evaluations: the
model's count_solver)."""

from __future__ import annotations

import numpy as np
import torch

from hitgen.core.errors import HitgenError
from hitgen.families.allshowers.data import ShowerData, same_standardisation
from hitgen.families.allshowers.loss import count_loss, point_loss
from hitgen.families.allshowers.model import AllShowers
from hitgen.families.allshowers.sampler import move_points, parse_decoder, point_noise
from hitgen.nn import streams

CHUNK = 64


class ReflowLoss:
    """loss(model, batch): the first stage's flow matching plus the points' flow matching on the
    teacher's (noise, points) pairs of the batch's showers."""

    def __init__(self, teacher: AllShowers, data: ShowerData, solver: str, seed: int, count_weight: float) -> None:
        if not same_standardisation(teacher.cfg.stats, data.stats):
            raise HitgenError("[train] teacher: its standardisation differs from these data's (train the student on the teacher's training files)")
        if not np.array_equal(data.index, np.arange(len(data))):
            raise HitgenError("reflow needs the whole training data, in file order")
        self.teacher = teacher.eval().requires_grad_(False)
        self.data, self.count_weight = data, count_weight
        self.solver, self.nfe = parse_decoder(solver)
        self.keys = torch.as_tensor(streams.event_keys(seed, np.arange(len(data))))
        order = np.argsort(data.length, kind="stable")
        self.chunks = [order[c : c + CHUNK] for c in range(0, len(order), CHUNK)]
        self.chunk_of = np.empty(len(data), np.int64)
        self.chunk_of[order] = np.arange(len(order)) // CHUNK
        self.points: dict[int, torch.Tensor] = {}  # shower index -> the teacher's points (real points only)

    @torch.no_grad()
    def _chunk(self, c: int) -> None:
        idx = self.chunks[c]
        device = next(self.teacher.parameters()).device
        b = {k: v.to(device) for k, v in self.data.batch(idx).items()}
        stage = b["stage"][:, : self.teacher.cfg.n_stage]
        x0 = point_noise(self.keys[idx].to(device), b["valid"])
        x1 = move_points(self.teacher, x0, b["layer"], b["valid"], b["cond"], stage, self.teacher.cfg.band, self.solver, self.nfe)
        for row, i in enumerate(idx):
            self.points[int(i)] = x1[row, : int(self.data.length[i])].cpu().clone()

    def targets(self, index: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise and teacher points (B, p, 3) of the showers `index`, zero past each shower's points."""
        for c in sorted({int(self.chunk_of[int(i)]) for i in index if int(i) not in self.points}):
            self._chunk(c)
        valid = torch.arange(p)[None, :] < torch.from_numpy(self.data.length[index.numpy()])[:, None]
        points = torch.zeros(len(index), p, 3)
        for row, i in enumerate(index.tolist()):
            points[row, : len(self.points[i])] = self.points[i]
        return point_noise(self.keys[index], valid), points

    def __call__(self, model: AllShowers, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        counts = count_loss(model, batch)
        self.teacher.to(batch["points"].device)  # where the student trains
        noise, target = self.targets(batch["index"].cpu(), batch["points"].shape[1])
        device = batch["points"].device
        pts = point_loss(model, batch, noise.to(device), target.to(device))
        loss = pts + self.count_weight * counts
        return loss, {"loss": loss.item(), "points": pts.item(), "counts": counts.item()}
