"""The foundation model's training config: the trunk, the experts it holds, the rotary settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hitgen.core.config import FamilyConfig, Strict, TrunkSection
from hitgen.families.calo_moe.tokens import EXPERT_KEYS


class ModelSection(TrunkSection):
    architecture: Literal["calo-moe"]
    experts: list[str] = Field(min_length=1)  # <particle>-<material>, e.g. gamma-W
    rope_base: float = Field(1000.0, gt=0)
    rope_fraction: float = Field(0.5, gt=0, le=1)
    head_width: int = Field(128, gt=0)
    max_voxels: int = Field(600, gt=0)
    exclusion: Literal["y", "xy", "voxel"] = "y"  # how generation keeps a voxel from being drawn twice (sampler.py)
    lora_particles: list[str] = Field(default_factory=list)  # particles added by LoRA (hitgen extend --add PARTICLE)
    lora_experts: list[str] = Field(default_factory=list)  # experts with an attention adapter of their own ([module] attention_lora)
    expert_heads: list[str] = Field(default_factory=list)  # experts with output heads of their own ([module] own_heads)
    lora_rank: int = Field(8, gt=0)
    lora_alpha: float = Field(16.0, gt=0)
    totals: list[str] = Field(default_factory=list)  # (particle, material) keys with a total-energy module (--add total-KEY)
    total_shape: list[str] = Field(default_factory=list)  # totals whose module also reads the shower's shape (model.TotalModel)
    total_width: int = Field(128, gt=0)
    # a fixed standardisation of the log energy (an extension keeps its base's); None: from the data
    stats: dict[str, float] | None = None

    @field_validator("experts", "totals")
    @classmethod
    def _known(cls, experts: list[str]) -> list[str]:
        unknown = [k for k in experts if k not in EXPERT_KEYS]
        if unknown:
            raise ValueError(f"unknown (particle, material) {unknown[0]!r} (known: {', '.join(EXPERT_KEYS)})")
        if len(set(experts)) != len(experts):
            twice = next(k for k in experts if experts.count(k) > 1)
            raise ValueError(f"{twice!r}: a (particle, material) is named twice")
        return experts


class LossSection(Strict):
    # train the total-energy modules alone on the showers' totals (a total module: the trunk is not run)
    total_only: bool = False
    # the cross entropy of the heads renormalised over the voxels not yet in the shower: the distribution
    # that generation with exclusion "voxel" draws (data.moe_loss)
    renormalise: bool = False


class CaloMoETrainConfig(FamilyConfig):
    model: ModelSection
    loss: LossSection = LossSection()

    @model_validator(mode="after")
    def _renormalised_for_voxel_exclusion(self) -> CaloMoETrainConfig:
        without = sorted(set(self.model.total_shape) - set(self.model.totals))
        if without:
            raise ValueError(f"total_shape {without[0]!r} has no total-energy module (totals)")
        for name in ("lora_experts", "expert_heads"):
            stray = sorted(set(getattr(self.model, name)) - set(self.model.experts))
            if stray:
                raise ValueError(f"{name} {stray[0]!r} is not an expert of the model (experts)")
        if self.loss.renormalise and self.model.exclusion != "voxel":
            raise ValueError(f'[loss] renormalise trains what exclusion "voxel" draws, not exclusion "{self.model.exclusion}"')
        return self
