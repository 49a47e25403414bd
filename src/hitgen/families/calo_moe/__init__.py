"""The calorimetry foundation model (`calo-moe`): voxel tokens of ild-ecal showers, a transformer
with fixed-routing experts per (particle, absorber) that grows by modules; docs/families/calo-moe.md."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.base import SamplingOptions


class CaloMoEFamily:
    name = "calo-moe"
    detector = "ild-ecal"
    tokenizer = "ild-ecal voxels of the 30x30x30 window by decreasing energy: (layer, x, y, log-energy bin) (hitgen.families.calo_moe.tokens)"
    sampling_options = ("temperature", "batch_size", "seed", "decoder")
    decoders = ("plain",)
    has_kv_cache = False  # one decoder only: no naive baseline to compare with

    @property
    def config_type(self) -> type:
        from hitgen.families.calo_moe.config import CaloMoETrainConfig

        return CaloMoETrainConfig

    def build(self, cfg, data) -> torch.nn.Module:
        from hitgen.families.calo_moe.data import check_experts
        from hitgen.families.calo_moe.model import CaloMoE, CaloMoEConfig

        check_experts(data, cfg.model.experts, cfg.model.lora_particles)
        fields = cfg.model.model_dump(exclude={"architecture", "stats"})
        model = CaloMoE(CaloMoEConfig(**fields, stats=cfg.model.stats or data.log_energy_stats()))
        for key, shape in data.shapes_of(cfg.model.total_shape).items():  # a warm start from a model that has them replaces them
            model.totals[key].fit_standardisation(torch.from_numpy(shape))
        return model

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        from hitgen.families.calo_moe.model import CaloMoE, CaloMoEConfig

        return CaloMoE(CaloMoEConfig.from_dict(model_config))

    def training_data(self, events: EventSet):
        return self.training_data_of_files([events])

    def training_data_of_files(self, parts: list[EventSet]):
        """Files of different absorbers train together: each file's showers go to their own expert."""
        from hitgen.families.calo_moe.data import VoxelData

        return VoxelData.from_parts(parts)

    def loss(self, cfg):
        from hitgen.families.calo_moe.data import moe_loss, total_loss

        if cfg.loss.total_only:
            return total_loss
        return functools.partial(moe_loss, renormalise=True) if cfg.loss.renormalise else moe_loss

    def loss_fields(self, cfg) -> tuple[str, ...]:
        from hitgen.families.calo_moe.data import LOSS_FIELDS, RENORMALISED_FIELDS, TOTAL_LOSS_FIELDS

        if cfg.loss.total_only:
            return TOTAL_LOSS_FIELDS
        return RENORMALISED_FIELDS if cfg.loss.renormalise else LOSS_FIELDS

    def settings_of(self, model_config: dict[str, Any]) -> list[dict[str, str]]:
        """The detector settings the model generates for: one absorber per material it has experts for."""
        materials = dict.fromkeys(k.rsplit("-", 1)[1] for k in model_config["experts"])
        return [{"absorber": m} for m in materials]

    def use_settings(self, model, settings: dict[str, Any]) -> None:
        """Route the following generation to the experts of this absorber."""
        model.material = settings.get("absorber", "W")

    def module_of(self, model_config: dict[str, Any], add: str, replace: bool = False, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """`hitgen extend`: what module `add` is (hitgen.families.calo_moe.modules)."""
        from hitgen.families.calo_moe.modules import module_of

        return module_of(model_config, add, replace, options or {})

    def generate(self, model, conditions, opts: SamplingOptions, device: str, progress: Callable[[int], None] | None, first_event: int):
        from hitgen.families.calo_moe.sampler import generate_showers

        material = getattr(model, "material", None) or self.settings_of(model.cfg.to_dict())[0]["absorber"]
        return generate_showers(model, conditions, material, opts.seed, opts.batch_size, device, opts.temperature, progress, first_event)

    def onnx_graphs(self, model, folder: Path) -> dict[str, dict[str, Any]]:
        """`hitgen export --format onnx`: one trunk graph per route (hitgen.families.calo_moe.onnx)."""
        from hitgen.families.calo_moe.onnx import export_graphs

        return export_graphs(model, folder)

    def onnx_backend(self, model, files: dict[str, Path]) -> None:
        """`--backend onnxruntime`: the trunk of every route in ONNX Runtime; embeddings and heads in PyTorch."""
        from hitgen.families.calo_moe.onnx import attach

        attach(model, files)

    onnx_usage = (
        "one graph per route (trunk_<particle>-<material>): prefill with a past of C = 0 slots, decode with t = 1, "
        "append new_k/new_v at the next free slots, past_mask true where not yet written (docs/onnx.md); "
        "embeddings, prefix, heads and total-energy modules: hitgen.families.calo_moe.model"
    )

    def check_conditions(self, conditions: dict[str, np.ndarray]) -> list[str]:
        from hitgen.families.calo_moe.tokens import PARTICLES

        known = np.isin(conditions["pdg"], list(PARTICLES))
        if known.all():
            return []
        return [f"particle PDG {int(conditions['pdg'][~known][0])} is not an EM particle of this model family (known: {sorted(PARTICLES)})"]

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        from hitgen.families.calo_moe.tokens import tokenize

        return np.diff(tokenize(events).offsets) + 1

    def flops_per_event(self, model_config, lengths: np.ndarray, decoder: str = "plain") -> float:
        from hitgen.families.calo_moe.flops import flops_per_shower

        return flops_per_shower(model_config, lengths)


FAMILY = CaloMoEFamily()
