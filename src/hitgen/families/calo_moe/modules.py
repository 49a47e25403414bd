"""What a module of the foundation model is (the `module_of` hook of `hitgen extend`,
hitgen.training.modules): an expert of a new (particle, material), with its particle's heads where
the model has none; or a new particle's LoRA adapter (every block's attention projections) and heads;
or the total-energy module of a (particle, material) the model generates (`total-<particle>-<material>`,
trained alone with [loss] total_only)."""

from __future__ import annotations

from typing import Any

from hitgen.core.errors import HitgenError
from hitgen.families.calo_moe.tokens import EXPERT_KEYS, PARTICLES, served_by

TOTAL = "total-"


def module_of(model_config: dict[str, Any], add: str) -> dict[str, Any]:
    """The parameter prefixes of module `add`, the grown model config, and the fields of the training
    config's [model] that change (the experts or LoRA particles, and the base's fixed standardisation)."""
    experts, lora = model_config["experts"], model_config.get("lora_particles", [])
    if add.startswith(TOTAL):
        return _total_module(model_config, add[len(TOTAL) :])
    if add not in EXPERT_KEYS and add not in PARTICLES.values():
        raise HitgenError(f"--add {add}: neither an expert nor a particle of this family (experts: {', '.join(EXPERT_KEYS)})")
    if add in experts or add in lora:
        raise HitgenError(f"the model already has the {'particle' if add in PARTICLES.values() else 'expert'} {add}")
    if add in PARTICLES.values():
        if any(k.rsplit("-", 1)[0] == add for k in experts):
            raise HitgenError(f"{add} has experts of its own already; add it per material (--add {add}-MATERIAL)")
        prefixes = [f"blocks.*.lora_*.{add}.", f"heads.{add}."]
        grown = {**model_config, "lora_particles": [*lora, add]}
    else:
        particle = add.rsplit("-", 1)[0]
        has_heads = particle in lora or any(k.rsplit("-", 1)[0] == particle for k in experts)
        prefixes = [f"experts.{add}."] + ([] if has_heads else [f"heads.{particle}."])
        grown = {**model_config, "experts": [*experts, add]}
    training = {"experts": grown["experts"], "lora_particles": grown.get("lora_particles", []), "stats": model_config["stats"]}
    return {"prefixes": prefixes, "model": grown, "training_model": training | {"totals": model_config.get("totals", [])}}


def _total_module(model_config: dict[str, Any], key: str) -> dict[str, Any]:
    experts, lora, totals = model_config["experts"], model_config.get("lora_particles", []), model_config.get("totals", [])
    if key not in EXPERT_KEYS:
        raise HitgenError(f"--add {TOTAL}{key}: {key!r} is not a (particle, material) of this family (known: {', '.join(EXPERT_KEYS)})")
    if served_by(key, experts, lora) is None:
        raise HitgenError(f"--add {TOTAL}{key}: the model does not generate {key} showers (experts: {', '.join(experts)})")
    if key in totals:
        raise HitgenError(f"the model already has the total-energy module {key}")
    grown = {**model_config, "totals": [*totals, key]}
    training = {"experts": experts, "lora_particles": lora, "stats": model_config["stats"], "totals": grown["totals"]}
    return {"prefixes": [f"totals.{key}."], "model": grown, "training_model": training, "training_loss": {"total_only": True}}
