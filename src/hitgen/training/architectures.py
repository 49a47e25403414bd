"""What the trainer needs from each model architecture: the model, its data, its loss, its log columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hitgen.events import EventSet
from hitgen.models.gpt import HitGPT
from hitgen.models.track_gpt import TrackGPT, track_loss
from hitgen.tokenizers import odd_tracker
from hitgen.training.config import TrainConfig
from hitgen.training.data import TokenData
from hitgen.training.losses import compute_loss
from hitgen.training.track_data import TrackData


@dataclass(frozen=True)
class Architecture:
    name: str
    detector: str
    tokenizer: str
    build: Callable[[], torch.nn.Module]
    data: Callable[[EventSet], Any]
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
    loss_fields: tuple[str, ...]  # the parts of the loss, as logged


def for_config(cfg: TrainConfig) -> Architecture:
    if cfg.model.architecture == "track-gpt":
        return Architecture(
            "track-gpt",
            "odd-tracker",
            "odd-tracker deviations from the propagated helix (hitgen.tokenizers.odd_tracker)",
            lambda: TrackGPT(cfg.model.track_config()),
            TrackData.from_events,
            track_loss,
            ("loss", "ce_which", *(f"ce_{k}" for k in odd_tracker.VALUE_STREAMS)),
        )
    weights = cfg.loss.weights()
    return Architecture(
        "clas12-gpt",
        "clas12-ecal",
        "clas12-ecal three-stream (hitgen.tokenizers.clas12_ecal)",
        lambda: HitGPT(cfg.model.gpt_config()),
        TokenData.from_events,
        lambda model, batch: compute_loss(model, batch, weights),
        ("loss", "ce_strip", "ce_adc", "ce_tdc", "occupancy", "length", "distribution"),
    )
