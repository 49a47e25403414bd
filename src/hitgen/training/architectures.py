"""What the trainer needs from each model architecture: the model, its data, its loss, its log columns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hitgen.events import EventSet
from hitgen.models.gpt import HitGPT
from hitgen.models.siliconai import SiliconAI, siliconai_loss
from hitgen.models.track_gpt import TrackGPT, track_loss
from hitgen.tokenizers import odd_tracker
from hitgen.tokenizers import siliconai as siliconai_tok
from hitgen.training.config import TrainConfig
from hitgen.training.data import TokenData
from hitgen.training.losses import compute_loss
from hitgen.training.siliconai_data import SiliconAIData
from hitgen.training.track_data import TrackData


@dataclass(frozen=True)
class Architecture:
    name: str
    detector: str
    tokenizer: str
    build: Callable[[Any], torch.nn.Module]  # from the training data (a tokenizer may depend on it)
    data: Callable[[EventSet], Any]
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]
    loss_fields: tuple[str, ...]  # the parts of the loss, as logged


def for_config(cfg: TrainConfig) -> Architecture:
    if cfg.model.architecture == "track-gpt":
        return Architecture(
            "track-gpt",
            "odd-tracker",
            "odd-tracker deviations from the propagated helix (hitgen.tokenizers.odd_tracker)",
            lambda data: TrackGPT(cfg.model.track_config()),
            TrackData.from_events,
            track_loss,
            ("loss", "ce_which", *(f"ce_{k}" for k in odd_tracker.VALUE_STREAMS)),
        )
    if cfg.model.architecture == "siliconai":
        return Architecture(
            "siliconai",
            "odd-tracker",
            "odd-tracker one token per feature, shared dictionary (hitgen.tokenizers.siliconai)",
            lambda data: SiliconAI(cfg.model.siliconai_config(data.vocab.to_dict())),
            SiliconAIData.from_events,
            siliconai_loss,
            ("loss", *(f"ce_{c}" for c in siliconai_tok.COLUMNS)),
        )
    weights = cfg.loss.weights()
    return Architecture(
        "clas12-gpt",
        "clas12-ecal",
        "clas12-ecal three-stream (hitgen.tokenizers.clas12_ecal)",
        lambda data: HitGPT(cfg.model.gpt_config()),
        TokenData.from_events,
        lambda model, batch: compute_loss(model, batch, weights),
        ("loss", "ce_strip", "ce_adc", "ce_tdc", "occupancy", "length", "distribution"),
    )
