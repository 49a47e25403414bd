"""The track GPT's training config: the trunk only; its loss has no settings."""

from __future__ import annotations

from typing import Literal

from hitgen.core.config import FamilyConfig, NoLoss, TrunkSection
from hitgen.families.track_gpt.model import TrackGPTConfig


class ModelSection(TrunkSection):
    architecture: Literal["track-gpt"]

    def track_config(self) -> TrackGPTConfig:
        return TrackGPTConfig(**self.trunk())


class TrackGPTTrainConfig(FamilyConfig):
    model: ModelSection
    loss: NoLoss = NoLoss()
