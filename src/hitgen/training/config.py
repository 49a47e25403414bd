"""Training configuration: one TOML file with [model], [loss] and [train] tables, validated."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hitgen.errors import HitgenError
from hitgen.models.gpt import GPTConfig
from hitgen.models.siliconai import SiliconAIConfig
from hitgen.models.track_gpt import TrackGPTConfig
from hitgen.training.losses import LossWeights


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


CLAS12_ONLY = {"condition_every_position": False, "value_heads_see_strip": False, "deposit_feature": False, "value_head": "flat", "value_group": 50}


TRUNK = {"d_model", "n_blocks", "n_heads", "d_ff", "dropout"}  # the fields every architecture shares


class ModelSection(_Strict):
    architecture: Literal["clas12-gpt", "track-gpt", "siliconai"] = "clas12-gpt"
    d_model: int = Field(512, gt=0)
    n_blocks: int = Field(8, gt=0)
    n_heads: int = Field(8, gt=0)
    d_ff: int = Field(2048, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    condition_every_position: bool = False  # see hitgen.models.gpt
    value_heads_see_strip: bool = False  # see hitgen.models.gpt
    deposit_feature: bool = False  # see hitgen.models.gpt
    value_head: Literal["flat", "factorised"] = "flat"  # see hitgen.models.heads
    value_group: int = Field(50, gt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSection:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.architecture != "clas12-gpt":
            for name, default in CLAS12_ONLY.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name} is an option of clas12-gpt, not of {self.architecture}")
        return self

    def gpt_config(self) -> GPTConfig:
        return GPTConfig(**self.model_dump(exclude={"architecture"}))

    def track_config(self) -> TrackGPTConfig:
        return TrackGPTConfig(**self.model_dump(include=TRUNK))

    def siliconai_config(self, vocabulary: dict[str, Any]) -> SiliconAIConfig:
        return SiliconAIConfig(vocabulary=vocabulary, **self.model_dump(include=TRUNK))


class LossSection(_Strict):
    sep_weight: float = Field(4.5, ge=0)
    eos_weight: float = Field(3.0, ge=0)
    occupancy: float = Field(3.0, ge=0)
    length: float = Field(0.4, ge=0)
    length_huber_delta: float = Field(3.0, gt=0)
    length_tail: bool = True
    distribution: float = Field(0.1, ge=0)

    def weights(self) -> LossWeights:
        return LossWeights(**self.model_dump())


class TrainSection(_Strict):
    batch_size: int = Field(400, gt=0)  # events per optimiser step (the global batch)
    micro_batch_size: int = Field(400, gt=0)  # events per forward pass (gradient accumulation below it)
    lr: float = Field(4e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    warmup_steps: int = Field(1000, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    max_steps: int = Field(20000, gt=0)
    grad_clip: float = Field(1.0, gt=0)
    val_fraction: float = Field(0.05, gt=0, lt=1)
    val_events: int = Field(2000, gt=0)  # validation loss on at most this many held-out events
    eval_every: int = Field(500, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    seed: int = Field(0, ge=0)
    bf16: bool = False
    threads: int = Field(0, ge=0)  # torch intra-op threads; 0 = torch's default

    @model_validator(mode="after")
    def _divides(self) -> TrainSection:
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        return self


class TrainConfig(_Strict):
    model: ModelSection = ModelSection()
    loss: LossSection = LossSection()
    train: TrainSection = TrainSection()


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HitgenError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise HitgenError(f"{path}: not valid TOML ({e})") from None
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HitgenError(f"{path}: {where}: {first['msg']}") from None
