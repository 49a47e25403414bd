"""The SiliconAI paper's model (`siliconai`): one token per hit feature in a shared dictionary, a sliding window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.base import SamplingOptions


class SiliconAIFamily:
    name = "siliconai"
    detector = "odd-tracker"
    tokenizer = "odd-tracker one token per feature, shared dictionary (hitgen.families.siliconai.tokenizer)"
    sampling_options = ("temperature", "batch_size", "seed")
    decoders: tuple[str, ...] = ()  # always recomputed over its sliding window: one decoder, nothing to choose
    has_kv_cache = False  # its window slides: every step recomputes it, so naive decoding is the same path

    @property
    def config_type(self) -> type:
        from hitgen.families.siliconai.config import SiliconAITrainConfig

        return SiliconAITrainConfig

    def build(self, cfg, data) -> torch.nn.Module:
        from hitgen.families.siliconai.model import SiliconAI

        return SiliconAI(cfg.model.siliconai_config(data.vocab.to_dict()))

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        from hitgen.families.siliconai.model import SiliconAI, SiliconAIConfig

        return SiliconAI(SiliconAIConfig.from_dict(model_config))

    def training_data(self, events: EventSet):
        from hitgen.families.siliconai.data import SiliconAIData

        return SiliconAIData.from_events(events)

    def loss(self, cfg):
        from hitgen.families.siliconai.model import siliconai_loss

        return siliconai_loss

    def loss_fields(self, cfg) -> tuple[str, ...]:
        from hitgen.families.siliconai import tokenizer as tok

        return ("loss", *(f"ce_{c}" for c in tok.COLUMNS))

    def generate(self, model, conditions, opts: SamplingOptions, device: str, progress: Callable[[int], None] | None, first_event: int):
        from hitgen.families.siliconai.sampler import generate_siliconai

        return generate_siliconai(model, conditions, opts.seed, opts.batch_size, device, opts.temperature, progress, first_event)

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        return events.hits_per_event() + 1  # the start row and one row per hit

    def flops_per_event(self, model_config, lengths: np.ndarray, decoder: str = "plain") -> float:
        from hitgen.families.siliconai.flops import flops_per_siliconai_track

        return flops_per_siliconai_track(model_config, lengths - 1)  # it counts hits, not positions


FAMILY = SiliconAIFamily()
