"""What a module of the foundation model is (the `module_of` hook of `hitgen extend`,
hitgen.training.modules): an expert of a new (particle, material), with its particle's heads where
the model has none; with `[module] attention_lora = true` also a LoRA adapter of the expert's own on every block's
attention projections; with `[module] own_heads = true` also output heads of the expert's own (started
from its particle's with `[train.init_copy]`); or a new particle's LoRA adapter (every block's attention projections) and heads;
or the total-energy module of a (particle, material) the model generates (`total-<particle>-<material>`,
trained alone with [loss] total_only; one may be replaced by one trained anew)."""

from __future__ import annotations

from typing import Any

from hitgen.core.errors import HitgenError
from hitgen.families.calo_moe.tokens import EXPERT_KEYS, PARTICLES, served_by

TOTAL = "total-"


def module_of(model_config: dict[str, Any], add: str, replace: bool = False, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameter prefixes of module `add`, the grown model config, and the fields of the training
    config's [model] that change (the experts or LoRA particles, and the base's fixed standardisation).
    `replace`: a total-energy module of the model trained anew (nothing else depends on one). `options`
    (the extension config's [module] table): `total_shape = true`, a total module that also reads the
    shower's shape (model.TotalModel)."""
    experts, lora = model_config["experts"], model_config.get("lora_particles", [])
    options = dict(options or {})
    shape = options.pop("total_shape", False)
    attention = options.pop("attention_lora", False)
    own_heads = options.pop("own_heads", False)
    if options or not isinstance(shape, bool) or (shape and not add.startswith(TOTAL)):
        what = next(iter(options), "total_shape")
        raise HitgenError(f"[module] {what}: not a setting of the module {add} (a total-energy module has total_shape = true or false)")
    for name, value in (("attention_lora", attention), ("own_heads", own_heads)):
        if not isinstance(value, bool) or (value and add not in EXPERT_KEYS):
            raise HitgenError(f"[module] {name}: not a setting of the module {add} (an expert has {name} = true or false)")
    if add.startswith(TOTAL):
        return _total_module(model_config, add[len(TOTAL) :], replace, shape)
    if replace:
        raise HitgenError(f"--replace {add}: only a total-energy module may be replaced (other modules build on each other)")
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
        prefixes = [f"experts.{add}."] + ([] if has_heads else [f"heads.{particle}."]) + ([f"blocks.*.lora_*.{add}."] if attention else [])
        if own_heads and not has_heads:
            raise HitgenError(f"[module] own_heads: {particle} has no heads yet, so the expert's heads are its particle's (leave own_heads out)")
        prefixes += [f"heads.{add}."] if own_heads else []
        grown = {
            **model_config,
            "experts": [*experts, add],
            "lora_experts": [*model_config.get("lora_experts", []), *([add] if attention else [])],
            "expert_heads": [*model_config.get("expert_heads", []), *([add] if own_heads else [])],
        }
    training = _routing(grown) | {"stats": model_config["stats"]}
    return {"prefixes": prefixes, "model": grown, "training_model": training | {"totals": model_config.get("totals", [])}}


def _total_module(model_config: dict[str, Any], key: str, replace: bool, shape: bool) -> dict[str, Any]:
    """A total-energy module of the condition (with `shape`, of the shower's shape too)."""
    experts, lora, totals = model_config["experts"], model_config.get("lora_particles", []), model_config.get("totals", [])
    if key not in EXPERT_KEYS:
        raise HitgenError(f"--add {TOTAL}{key}: {key!r} is not a (particle, material) of this family (known: {', '.join(EXPERT_KEYS)})")
    if served_by(key, experts, lora) is None:
        raise HitgenError(f"--add {TOTAL}{key}: the model does not generate {key} showers (experts: {', '.join(experts)})")
    if key in totals and not replace:
        raise HitgenError(f"the model already has the total-energy module {key} (--replace trains it anew)")
    if key not in totals and replace:
        raise HitgenError(f"--replace: the model has no total-energy module {key} to replace")
    readers = [*(k for k in model_config.get("total_shape", []) if k != key), *([key] if shape else [])]
    grown = {**model_config, "totals": totals if replace else [*totals, key], "total_shape": readers}
    training = _routing(model_config) | {"stats": model_config["stats"], "totals": grown["totals"], "total_shape": readers}
    return {"prefixes": [f"totals.{key}."], "model": grown, "training_model": training, "training_loss": {"total_only": True}}


def _routing(model_config: dict[str, Any]) -> dict[str, list[str]]:
    """The fields of a model config that decide which expert and adapter a shower goes through."""
    return {k: model_config.get(k, []) for k in ("experts", "lora_particles", "lora_experts", "expert_heads")}
