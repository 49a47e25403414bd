"""What a model family provides to the shared machinery (the ``Family`` protocol), and the sampling
options every generator is called with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from hitgen.core.events import EventSet


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0
    top_k: int = 20  # strip stream: the paper's value; 0 = no top-k
    # ADC and TDC streams. Top-k over 5000 fine ADC bins (0.00066 decades each; 20 bins = 3% in ADC)
    # against a per-hit ADC spread of tens of percent keeps only the mode and biases the energy
    # scale: measured on the CLAS12 GPT (docs/families/clas12-gpt.md), so the value streams are sampled in full by default
    value_top_k: int = 0
    batch_size: int = 256
    seed: int = 0
    # plain: batch by batch with a growing key-value cache (the default: the fastest on 2 CPU cores,
    # docs/performance.md); static: the engine (hitgen.families.clas12_gpt.engine): preallocated key-value cache, continuous
    # batching; naive: no cache, the whole sequence is recomputed at every step (the way the
    # SiliconAI and OmniJet-alpha-C codes generate; the baseline of `hitgen bench`). All three draw
    # the same events (per-event random streams).
    decoder: str = "plain"


class TrainingData(Protocol):
    """A family's training events, tokenised or otherwise prepared: indexable by event."""

    length: np.ndarray  # (N,) sequence length of each event (the trainer groups similar lengths)

    def __len__(self) -> int: ...

    def subset(self, idx: np.ndarray) -> TrainingData: ...

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]: ...


LossFunction = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


@runtime_checkable
class Family(Protocol):
    """Everything the shared machinery knows about a model family."""

    name: str  # the `architecture` of its configs and model folders
    detector: str  # the detector whose event files it trains on and generates
    tokenizer: str  # one line recorded in every model folder: what the events become
    config_type: type  # pydantic model of its training config: [model] (with architecture = name), [loss], [train]
    sampling_options: tuple[str, ...]  # the SamplingOptions fields its generator uses
    decoders: tuple[str, ...]  # its values of SamplingOptions.decoder (the first is the plain one)
    has_kv_cache: bool  # whether `naive` decoding (no cache) is a different path to compare with

    def build(self, cfg: Any, data: TrainingData) -> torch.nn.Module:
        """A new model for this training config (some tokenizers depend on the data)."""
        ...

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        """The model of a model folder's config.json "model" entry (weights loaded by the caller)."""
        ...

    def training_data(self, events: EventSet) -> TrainingData: ...

    def loss(self, cfg: Any) -> LossFunction: ...

    def loss_fields(self, cfg: Any) -> tuple[str, ...]:
        """The names of the loss parts the loss function returns, as logged (the first is 'loss')."""
        ...

    def generate(
        self,
        model: torch.nn.Module,
        conditions: dict[str, np.ndarray],
        opts: SamplingOptions,
        device: str,
        progress: Callable[[int], None] | None,
        first_event: int,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """CSR offsets and hits for these conditions; event i draws from the stream of (seed, first_event + i)."""
        ...

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        """Positions each generated event took to decode (for the FLOP count)."""
        ...

    def flops_per_event(self, model_config: Any, lengths: np.ndarray, decoder: str = "plain") -> float:
        """FLOPs of one event at the decoder `bench` ran (a family whose cost does not depend on it ignores it)."""
        ...
