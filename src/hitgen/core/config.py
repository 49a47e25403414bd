"""The parts of a training config that every model family builds on: strict tables, the
transformer trunk, the trainer's [train] table and the family config's shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a non-finite setting is refused, not trained with


class TrunkSection(Strict):
    """The transformer trunk's fields, shared by the families built on hitgen.nn.blocks."""

    d_model: int = Field(512, gt=0)
    n_blocks: int = Field(8, gt=0)
    n_heads: int = Field(8, gt=0)
    d_ff: int = Field(2048, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        return self

    def trunk(self) -> dict[str, Any]:
        return self.model_dump(include=set(TrunkSection.model_fields))


class NoLoss(Strict):
    """The [loss] table of a family whose loss has no settings: it must stay empty."""


class TrainSection(Strict):
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
    # prefixes of the names of the parameters that train (with --init: a fine-tune of some modules on a
    # frozen model); empty: all
    train_only: list[str] = Field(default_factory=list)
    # with --init: parameters new to the configured model whose names start with a key take the init
    # model's parameter named with that prefix replaced by the value (a new expert started from another
    # one: {"experts.e--Pb." = "experts.gamma-Pb."})
    init_copy: dict[str, str] = Field(default_factory=dict)
    # with --init: prefixes of parameters not copied from the init model; they start from their own
    # initialisation (a module trained anew in place of the init model's: hitgen extend --replace)
    init_skip: list[str] = Field(default_factory=list)
    # a trained model (folder or shipped name) of the same family whose outputs the loss learns from
    # (distillation; the family's `distillation_loss` says how); none: the family's own loss
    teacher: str | None = None

    @model_validator(mode="after")
    def _divides(self) -> TrainSection:
        if self.batch_size % self.micro_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        return self


class FamilyConfig(Strict):
    """What every family's config has; a family subclasses it with its own ``model`` (whose
    ``architecture`` is a Literal of the family's name) and ``loss``."""

    model: Any
    loss: Any = NoLoss()
    train: TrainSection = TrainSection()

    @property
    def architecture(self) -> str:
        return self.model.architecture
