"""The process group of a run under torchrun (training and generation): rank and world size."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def local_device(self, device: torch.device) -> torch.device:
        """One GPU per process (LOCAL_RANK) under torchrun; the CPU stays the CPU."""
        if self.world > 1 and device.type == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return device
