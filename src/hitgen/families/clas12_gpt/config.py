"""The CLAS12 GPT's training config: its [model] fields beyond the trunk, and its [loss] weights."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hitgen.core.config import FamilyConfig, Strict, TrunkSection
from hitgen.families.clas12_gpt.loss import LossWeights
from hitgen.families.clas12_gpt.model import GPTConfig


class ModelSection(TrunkSection):
    architecture: Literal["clas12-gpt"]
    condition_every_position: bool = False  # see hitgen.families.clas12_gpt.model
    value_heads_see_strip: bool = False  # see hitgen.families.clas12_gpt.model
    value_heads_see_axis: bool = False
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
    energy_lead: Literal["trunk", "mlp", "total"] = "trunk"  # see hitgen.families.clas12_gpt.lead
    lead_width: int = Field(256, ge=1)
    lead_depth: int = Field(3, ge=1)

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
    lead_only: bool = False

    def weights(self) -> LossWeights:
        return LossWeights(**self.model_dump())


class Clas12GPTConfig(FamilyConfig):
    model: ModelSection
    loss: LossSection = LossSection()

    @model_validator(mode="after")
    def _lead(self) -> Clas12GPTConfig:
        m = self.model
        if m.energy_lead != "trunk" and (not m.energy_first or m.energy_total_first):
            raise ValueError(f"energy_lead = {m.energy_lead} needs energy_first (and not energy_total_first)")
        if m.value_heads_see_axis and not m.value_heads_see_strip:
            raise ValueError("value_heads_see_axis needs value_heads_see_strip")
        if self.loss.lead_only and m.energy_lead == "trunk":
            raise ValueError("loss.lead_only trains the lead model: it needs model.energy_lead = mlp or total")
        return self
