"""The track GPT (`track-gpt`): odd-tracker hits as deviations from the propagated helix, one position per hit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.base import SamplingOptions


class TrackGPTFamily:
    name = "track-gpt"
    detector = "odd-tracker"
    tokenizer = "odd-tracker deviations from the propagated helix (hitgen.families.track_gpt.tokenizer)"
    sampling_options = ("temperature", "batch_size", "seed", "decoder")
    decoders = ("plain", "naive")
    has_kv_cache = True

    @property
    def config_type(self) -> type:
        from hitgen.families.track_gpt.config import TrackGPTTrainConfig

        return TrackGPTTrainConfig

    def build(self, cfg, data) -> torch.nn.Module:
        from hitgen.families.track_gpt.model import TrackGPT

        return TrackGPT(cfg.model.track_config())

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        from hitgen.families.track_gpt.model import TrackGPT, TrackGPTConfig

        return TrackGPT(TrackGPTConfig.from_dict(model_config))

    def training_data(self, events: EventSet):
        from hitgen.families.track_gpt.data import TrackData

        return TrackData.from_events(events)

    def loss(self, cfg):
        from hitgen.families.track_gpt.model import track_loss

        return track_loss

    def loss_fields(self, cfg) -> tuple[str, ...]:
        from hitgen.families.track_gpt import tokenizer as tok

        return ("loss", "ce_which", *(f"ce_{k}" for k in tok.VALUE_STREAMS))

    def generate(self, model, conditions, opts: SamplingOptions, device: str, progress: Callable[[int], None] | None, first_event: int):
        from hitgen.families.track_gpt.sampler import generate_tracks

        cache = opts.decoder != "naive"
        return generate_tracks(model, conditions, opts.seed, opts.batch_size, device, opts.temperature, progress, first_event, cache=cache)

    def check_conditions(self, conditions: dict[str, np.ndarray]) -> list[str]:
        """The particles it has an embedding for."""
        from hitgen.families.track_gpt import tokenizer as tok

        known = np.isin(np.abs(conditions["pdg"]), list(tok.PARTICLE_TYPES))
        return (
            []
            if known.all()
            else [f"particle PDG {int(conditions['pdg'][~known][0])} has no embedding in a track GPT (known: {sorted(tok.PARTICLE_TYPES)})"]
        )

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        return events.hits_per_event() + 1  # the start and one position per hit

    def flops_per_event(self, model_config, lengths: np.ndarray, decoder: str = "plain") -> float:
        from hitgen.families.track_gpt.flops import flops_per_track

        return flops_per_track(model_config, lengths)


FAMILY = TrackGPTFamily()
