"""The CLAS12 GPT's training config: its [model] fields beyond the trunk, and its [loss] weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hitgen.core.config import FamilyConfig, Strict, TrunkSection
from hitgen.families.clas12_gpt.loss import LossWeights
from hitgen.families.clas12_gpt.model import GPTConfig


class ModelSection(TrunkSection):
    architecture: Literal["clas12-gpt"]
    condition_every_position: bool = False  # see hitgen.families.clas12_gpt.model
    value_heads_see_strip: bool = False  # see hitgen.families.clas12_gpt.model
    tdc_sees_hit: bool = False  # see hitgen.families.clas12_gpt.model
    tdc_in_bin: bool = False
    tdc_threshold_rule: bool = False
    deposit_feature: bool = False  # see hitgen.families.clas12_gpt.model
    value_head: Literal["flat", "factorised"] = "flat"  # see hitgen.nn.heads
    value_group: int = Field(50, gt=1)
    energy_first: bool = False  # see hitgen.families.clas12_gpt.model
    layer_energy_feature: bool = True
    rescale_to_layer_energy: bool = False
    energy_total_first: bool = False
    energy_head: Literal["flat", "mixture"] = "mixture"
    energy_components: int = Field(8, ge=1)

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(**self.model_dump(exclude={"architecture"}))


class LossSection(Strict):
    sep_weight: float = Field(4.5, ge=0)
    eos_weight: float = Field(3.0, ge=0)
    occupancy: float = Field(3.0, ge=0)
    length: float = Field(0.4, ge=0)
    length_huber_delta: float = Field(3.0, gt=0)
    length_tail: bool = True
    distribution: float = Field(0.1, ge=0)
    energy: float = Field(1.0, ge=0)

    def weights(self) -> LossWeights:
        return LossWeights(**self.model_dump())


class Clas12GPTConfig(FamilyConfig):
    model: ModelSection
    loss: LossSection = LossSection()
