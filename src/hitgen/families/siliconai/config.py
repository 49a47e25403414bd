"""The SiliconAI model's training config: the trunk only (its vocabulary comes from the data)."""

from __future__ import annotations

from typing import Any, Literal

from hitgen.core.config import FamilyConfig, NoLoss, TrunkSection
from hitgen.families.siliconai.model import SiliconAIConfig


class ModelSection(TrunkSection):
    architecture: Literal["siliconai"]

    def siliconai_config(self, vocabulary: dict[str, Any]) -> SiliconAIConfig:
        return SiliconAIConfig(vocabulary=vocabulary, **self.trunk())


class SiliconAITrainConfig(FamilyConfig):
    model: ModelSection
    loss: NoLoss = NoLoss()
