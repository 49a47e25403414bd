"""AllShowers (`allshowers`): one flow-matching model of the showers of every particle in ild-ecal
(a count-per-layer flow, then a point-cloud transformer CNF); docs/families/allshowers.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hitgen.core.events import EventSet
from hitgen.families.base import SamplingOptions


class AllShowersFamily:
    name = "allshowers"
    detector = "ild-ecal"
    tokenizer = (
        "ild-ecal cells as points (x, y mm dequantised within the cell, log E MeV), counts and energies per layer (hitgen.families.allshowers.data)"
    )
    sampling_options = ("batch_size", "seed", "decoder")
    has_kv_cache = False

    @property
    def decoders(self) -> tuple[str, ...]:
        from hitgen.families.allshowers.sampler import DECODERS

        return DECODERS

    @property
    def config_type(self) -> type:
        from hitgen.families.allshowers.config import AllShowersTrainConfig

        return AllShowersTrainConfig

    def build(self, cfg, data) -> torch.nn.Module:
        from hitgen.families.allshowers.model import AllShowers, AllShowersConfig, flow_statistics

        config = AllShowersConfig(**cfg.model.model_dump(exclude={"architecture"}), stats=data.stats, point_layout=data.layout)
        for key, value in flow_statistics(data.points, data.layer, data.cond, data.stage, data.offsets, config).items():
            setattr(config, key, value)
        return AllShowers(config)

    def model_from_config(self, model_config: dict[str, Any]) -> torch.nn.Module:
        from hitgen.families.allshowers.model import AllShowers, AllShowersConfig

        return AllShowers(AllShowersConfig.from_dict(model_config))

    def generates_for(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The detector spec of the showers a model trained on files of `spec` generates: ild's cells,
        also where its training points were ild-fine's sub-cells."""
        from hitgen.detectors.ild_ecal.geometry import ILD, INFO, layout_of

        return spec if layout_of(spec) == ILD else {**spec, **ILD.spec_extra(), "hit_fields": INFO.spec()["hit_fields"]}

    def training_data(self, events: EventSet):
        from hitgen.families.allshowers.data import ShowerData

        return ShowerData.from_events(events)

    def loss(self, cfg):
        from hitgen.families.allshowers.loss import flow_matching_loss

        counts, points = cfg.loss.count_weight, cfg.loss.point_weight
        return lambda model, batch: flow_matching_loss(model, batch, counts, points)

    def check_warm_start(self, model, loaded_model) -> None:
        """--init: the weights must have been trained on data standardised as these are (the same
        training files); a CNF would move other numbers than it learned."""
        from hitgen.core.errors import HitgenError
        from hitgen.families.allshowers.data import same_standardisation

        if model.cfg.point_layout != loaded_model.cfg.point_layout:
            raise HitgenError(f"--init: that model's points are cells of layout {loaded_model.cfg.point_layout}, these {model.cfg.point_layout}")
        if not same_standardisation(model.cfg.stats, loaded_model.cfg.stats):
            raise HitgenError("--init: that model's data were standardised otherwise (warm-start it on its own training files)")

    def distillation_loss(self, cfg, teacher, data):
        """With a [train] teacher: reflow of its point CNF (hitgen.families.allshowers.reflow)."""
        from hitgen.core.errors import HitgenError
        from hitgen.families.allshowers.reflow import ReflowLoss

        theirs = (teacher.cfg.core_scale_mm, teacher.cfg.energy_reference)
        ours = (cfg.model.core_scale_mm, cfg.model.energy_reference)
        if theirs != ours:
            scales = f"core_scale_mm {theirs[0]:g}, energy_reference {theirs[1]}; these {ours[0]:g}, {ours[1]}"
            raise HitgenError(f"[train] teacher: its points move in other coordinates ({scales})")
        if cfg.loss.point_weight != 1.0:
            raise HitgenError("[loss] point_weight: reflow trains the points at weight 1 (leave it out with a teacher)")

        return ReflowLoss(teacher, data, cfg.loss.reflow_solver, cfg.train.seed, cfg.loss.count_weight)

    def loss_fields(self, cfg) -> tuple[str, ...]:
        return ("loss", "points", "counts")

    def generate(self, model, conditions, opts: SamplingOptions, device: str, progress: Callable[[int], None] | None, first_event: int):
        from hitgen.families.allshowers.sampler import generate_showers

        return generate_showers(model, conditions, opts.seed, opts.batch_size, opts.decoder, device, progress, first_event)

    def onnx_graphs(self, model, folder: Path) -> dict[str, dict[str, Any]]:
        """`hitgen export --format onnx`: the two velocity fields (hitgen.families.allshowers.onnx)."""
        from hitgen.families.allshowers.onnx import export_graphs

        return export_graphs(model, folder)

    def onnx_backend(self, model, files: dict[str, Path]) -> None:
        """`--backend onnxruntime`: the sampler's velocity fields run over the exported graphs."""
        from hitgen.families.allshowers.onnx import OrtVelocities

        model.backend = OrtVelocities(files)

    onnx_usage = "see hitgen.families.allshowers.onnx"

    def check_conditions(self, conditions: dict[str, np.ndarray]) -> list[str]:
        from hitgen.families.allshowers.data import particle_problems

        return particle_problems(conditions)

    def sequence_lengths(self, events: EventSet) -> np.ndarray:
        return events.hits_per_event()

    def flops_per_event(self, model_config, lengths: np.ndarray, decoder: str = "plain") -> float:
        from hitgen.families.allshowers.flops import flops_per_shower

        return flops_per_shower(model_config, lengths, decoder)


FAMILY = AllShowersFamily()
