"""The CLAS12 GPT (`clas12-gpt`): strip, ADC and TDC tokens of clas12-ecal, conditioned on the photon momentum."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.base import SamplingOptions


class Clas12GPT:
    name = "clas12-gpt"
    detector = "clas12-ecal"
    tokenizer = "clas12-ecal three-stream (hitgen.families.clas12_gpt.tokenizer)"
    sampling_options = tuple(f.name for f in fields(SamplingOptions))
    decoders = ("plain", "static", "naive")
    has_kv_cache = True

    @property
    def config_type(self) -> type:
        from hitgen.families.clas12_gpt.config import Clas12GPTConfig

        return Clas12GPTConfig

    def build(self, cfg, data) -> torch.nn.Module:
        from hitgen.families.clas12_gpt.model import HitGPT

        return HitGPT(cfg.model.gpt_config())

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        from hitgen.families.clas12_gpt.model import GPTConfig, HitGPT

        return HitGPT(GPTConfig.from_dict(model_config))

    def training_data(self, events: EventSet):
        from hitgen.families.clas12_gpt.data import TokenData

        return TokenData.from_events(events)

    def loss(self, cfg):
        from hitgen.families.clas12_gpt.loss import compute_loss

        weights = cfg.loss.weights()
        return lambda model, batch: compute_loss(model, batch, weights)

    def loss_fields(self, cfg) -> tuple[str, ...]:
        if cfg.loss.lead_only:
            return ("loss", "ce_energy")
        energy = ("ce_energy",) if cfg.model.energy_first else ()
        return ("loss", "ce_strip", "ce_adc", "ce_tdc", *energy, "occupancy", "length", "distribution")

    def generate(self, model, conditions, opts: SamplingOptions, device: str, progress: Callable[[int], None] | None, first_event: int):
        from hitgen.families.clas12_gpt.generate import generate

        return generate(model, conditions["momentum"], opts, device, progress, first_event=first_event)

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        from hitgen.families.clas12_gpt import tokenizer as tok

        return events.hits_per_event() + tok.N_LAYERS + 1  # SOS, the hits, the 8 separators, EOS

    def flops_per_event(self, model_config, lengths: np.ndarray, decoder: str = "plain") -> float:
        from hitgen.families.clas12_gpt.flops import flops_per_event

        return flops_per_event(model_config, lengths)


FAMILY = Clas12GPT()
