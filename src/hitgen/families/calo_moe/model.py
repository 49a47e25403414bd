"""The calorimetry foundation model (`calo-moe`): a decoder-only transformer over a shower's voxel
tokens with fixed-routing experts per (particle, absorber) and output heads per particle.

- Input of position 0: the prefix token, a linear map of the condition (tokens.condition_vector)
  plus the routed expert's own condition vector (so attention knows the material). Positions 1..n:
  the voxels, each the sum of embeddings of its layer, x, y and energy bin and of its depth
  feature (layer / 30 through a linear map).
- Blocks: pre-norm attention with partial rotary position embeddings (the first half of each head's
  dimensions; base 1000, the paper's best for these short sequences), shared by every expert; the
  feed-forward part is the routed expert's. Routing is fixed by the condition, never learned, and only
  the routed expert runs: rows of a batch are grouped by expert, each group through its own weights
  (the paper's code runs every expert and masks the rest, so its cost grows with the experts held).
- Heads per particle (the paper's particle vocabularies): the next voxel's layer (30 + end), then
  its x given the layer, y given both, and the energy bin given the voxel, each a small MLP over the
  position's output plus embeddings of what was drawn before. The paper's single softmax over 27 000
  voxel indices would cost five times the whole trunk per token on 2 CPU cores (d 128) and asks for
  27 000 unshared output rows from about a million training tokens; the factorised heads are exact
  (a product of conditionals) and share statistics across voxels of one layer or column.

- Total-energy modules (not in the paper; the lesson of the CLAS12 GPT and AllShowers, whose resolution came
  right once a model of its own drew the total): per (particle, material), a small MLP of the
  condition and a discretised logistic mixture over the shower's total (tokens.total_bin); the
  generated voxels' energies are scaled to the total it draws. The trunk never sees it. A module of a
  key in `total_shape` also reads the shower's shape (tokens.shape_features: mean layer, layer spread,
  mean radius), drawn after the voxels: Geant4's total follows the shape (a deeper shower reaches the
  thicker back layers and is seen less), which a total of the condition alone would cut loose.

Parameter names say what belongs to which module: `experts.<particle>-<material>.*` (an expert),
`heads.<particle>.*` (a particle's heads; `heads.<particle>-<material>.*`: an
expert's own), `totals.<particle>-<material>.*` (a total-energy module), `lora` /
everything else: the backbone.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hitgen.detectors.ild_ecal.geometry import N_LAYERS
from hitgen.detectors.ild_ecal.views import WINDOW
from hitgen.families.calo_moe.tokens import ENERGY_BINS, N_COND, N_SHAPE, TOTAL_BINS, served_by
from hitgen.nn.blocks import KVCache, init_weights
from hitgen.nn.heads import MixtureHead


@dataclass
class CaloMoEConfig:
    d_model: int = 128
    n_blocks: int = 4
    n_heads: int = 4
    d_ff: int = 384
    dropout: float = 0.0
    experts: list[str] = field(default_factory=lambda: ["gamma-W"])  # <particle>-<material>
    rope_base: float = 1000.0
    rope_fraction: float = 0.5  # share of each head's dimensions that rotate
    head_width: int = 128
    max_voxels: int = 600  # generation stops a shower at this many voxels
    # a voxel already in the shower, drawn again: "y" draws its y among the column's free cells, "xy"
    # draws x and y again, "voxel" the whole voxel (sampler.py; measured in docs/families/calo-moe.md)
    exclusion: str = "y"
    # particles added by LoRA adapters (peft) on the attention projections, rank and alpha
    lora_particles: list[str] = field(default_factory=list)
    # experts with a LoRA adapter of their own on the attention projections, named after the expert:
    # showers of that (particle, material) use it instead of their particle's (a material's module
    # that reaches the attention too, the rest still frozen)
    lora_experts: list[str] = field(default_factory=list)
    # experts with output heads of their own (`heads.<particle>-<material>`): their showers are drawn by
    # them instead of their particle's heads (a material's module that reaches the vocabulary too)
    expert_heads: list[str] = field(default_factory=list)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    totals: list[str] = field(default_factory=list)  # (particle, material) keys with a total-energy module
    total_shape: list[str] = field(default_factory=list)  # those whose total module also reads the shower's shape
    total_width: int = 128
    stats: dict[str, Any] = field(default_factory=dict)  # log energy mean and std of the base training data

    @property
    def particles(self) -> list[str]:
        """The particles with heads, in the order their experts first appear."""
        return list(dict.fromkeys(key.rsplit("-", 1)[0] for key in self.experts))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaloMoEConfig:
        return cls(**d)


def rotary(positions: torch.Tensor, n_rot: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The cosines and sines (T, n_rot / 2), float32, of the rotary angles at positions (T,): computed
    once per trunk call and shared by its blocks (per block and query/key, they took 8% of generation)."""
    half = n_rot // 2
    inv = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angle = positions.float()[:, None] * inv[None, :]
    return angle.cos(), angle.sin()


def apply_rotary(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2 * cos.shape[-1] dimensions of q (B, heads, T, head dim) by the angles of rotary()."""
    half = cos.shape[-1]
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)
    a, b = q[..., :half], q[..., half : 2 * half]
    return torch.cat([a * cos - b * sin, a * sin + b * cos, q[..., 2 * half :]], dim=-1)


def rotate(q: torch.Tensor, positions: torch.Tensor, n_rot: int, base: float) -> torch.Tensor:
    """Rotary embedding of the first n_rot dimensions of q (B, heads, T, head dim) at positions (T,)."""
    return apply_rotary(q, *rotary(positions.to(q.device), n_rot, base))


class FeedForward(nn.Sequential):
    def __init__(self, d: int, d_ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d), nn.Dropout(dropout))


class Expert(nn.Module):
    """One (particle, material): its condition vector and a feed-forward block per transformer block."""

    def __init__(self, cfg: CaloMoEConfig) -> None:
        super().__init__()
        self.cond = nn.Parameter(torch.zeros(cfg.d_model))
        self.ffn = nn.ModuleList(FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout) for _ in range(cfg.n_blocks))


def _mlp(d: int, width: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, width), nn.GELU(), nn.Linear(width, n_out))


class Heads(nn.Module):
    """One particle's output vocabulary: layer (or end), x | layer, y | layer, x, energy bin | voxel."""

    def __init__(self, cfg: CaloMoEConfig) -> None:
        super().__init__()
        d, w = cfg.d_model, cfg.head_width
        self.layer = _mlp(d, w, N_LAYERS + 1)
        self.x = _mlp(d, w, WINDOW)
        self.y = _mlp(d, w, WINDOW)
        self.energy = _mlp(d, w, ENERGY_BINS)
        self.emb_layer = nn.Embedding(N_LAYERS, d)
        self.emb_x = nn.Embedding(WINDOW, d)
        self.emb_y = nn.Embedding(WINDOW, d)

    def after_layer(self, h: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        return h + self.emb_layer(layer)

    def after_x(self, h_l: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return h_l + self.emb_x(x)

    def after_y(self, h_lx: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return h_lx + self.emb_y(y)


class TotalModel(nn.Module):
    """One (particle, material)'s total-energy module: p(total | condition), or with `shape`
    p(total | condition, the shower's shape features), an MLP and a mixture of 8 logistics over
    TOTAL_BINS bins (and the empty window). The shape features enter clipped to the range of the
    module's training showers (a generated shower outside it is read at its edge: the module is never
    asked where it saw no data) and standardised by them (buffers, in its file; fit_standardisation)."""

    def __init__(self, cfg: CaloMoEConfig, shape: bool = False) -> None:
        super().__init__()
        w = cfg.total_width
        self.shape = shape
        n_in = N_COND + (N_SHAPE if shape else 0)
        self.mlp = nn.Sequential(nn.Linear(n_in, w), nn.GELU(), nn.Linear(w, w), nn.GELU(), nn.Linear(w, w), nn.GELU())
        self.head = MixtureHead(w, TOTAL_BINS, 1)
        if shape:
            for name, value in (("shape_mean", 0.0), ("shape_std", 1.0), ("shape_lo", -torch.inf), ("shape_hi", torch.inf)):
                self.register_buffer(name, torch.full((N_SHAPE,), value))

    def fit_standardisation(self, shape: torch.Tensor) -> None:
        """The shape features' mean, spread and range over the module's training showers (N, N_SHAPE)."""
        self.shape_mean.copy_(shape.mean(0))
        if len(shape) > 1:
            self.shape_std.copy_(shape.std(0).clamp(min=1e-3))
        self.shape_lo.copy_(shape.min(0).values)
        self.shape_hi.copy_(shape.max(0).values)

    def _inputs(self, cond: torch.Tensor, shape: torch.Tensor | None) -> torch.Tensor:
        if not self.shape:
            return cond
        if shape is None:
            raise ValueError("this total-energy module reads the shower's shape features")
        inside = torch.minimum(torch.maximum(shape, self.shape_lo), self.shape_hi)
        return torch.cat([cond, (inside - self.shape_mean) / self.shape_std], dim=1)

    def log_prob(self, cond: torch.Tensor, total: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        """log p (B,) of the total tokens (B,) given standardised conditions (B, N_COND) (and shape features (B, N_SHAPE))."""
        return self.head.log_prob(self.mlp(self._inputs(cond, shape)), total)

    def log_probs(self, cond: torch.Tensor, shape: torch.Tensor | None = None) -> torch.Tensor:
        """(B, TOTAL_BINS + 1) log-probabilities of every total token."""
        return self.head.log_probs(self.mlp(self._inputs(cond, shape)))


class MoEBlock(nn.Module):
    """Pre-norm block: shared causal attention with partial rotary embeddings, routed feed-forward."""

    def __init__(self, cfg: CaloMoEConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        head_dim = cfg.d_model // cfg.n_heads
        self.n_rot = 2 * int(head_dim * cfg.rope_fraction / 2)
        self.base = cfg.rope_base
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout

    def attention(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache | None, index: int, adapters=None) -> torch.Tensor:
        b, t, d = x.shape
        kw = {} if adapters is None else {"adapter_names": adapters}  # LoRA per row (peft's mixed batch)
        q, k, v = self.qkv(x, **kw).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            y = cache.attend(index, q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, t, d), **kw)

    def forward(self, x, rope, route, index: int, cache: KVCache | None = None) -> torch.Tensor:
        """rope: rotary(positions, n_rot, base) of the positions of x."""
        x = x + self.drop(self.attention(self.ln1(x), rope, cache, index, route.adapters))
        return x + route(self.ln2(x), index)


class Route:
    """The rows' routing through the trunk: each row's expert feed-forward (only the routed experts
    run: rows are grouped by expert) and, where the model has LoRA adapters, each row's adapter
    (adapter_of: its expert's own, its particle's, or "__base__")."""

    def __init__(self, model: CaloMoE, experts: list[str]) -> None:
        served = [model.expert_of(k) for k in experts]
        missing = [k for k, e in zip(experts, served, strict=True) if e is None]
        if missing:
            raise KeyError(f"no expert for {missing[0]}")
        self.model = model
        groups: dict[str, list[int]] = {}
        for row, key in enumerate(served):
            groups.setdefault(key, []).append(row)
        self.single = served[0] if len(groups) == 1 else None
        self.single_key = experts[0] if len(set(experts)) == 1 else None  # the route of an ONNX graph
        self.groups = {k: torch.tensor(rows) for k, rows in groups.items()}
        any_lora = model.cfg.lora_particles or model.cfg.lora_experts
        self.adapters = [model.adapter_of(k) or "__base__" for k in experts] if any_lora else None

    def __call__(self, h: torch.Tensor, i: int) -> torch.Tensor:
        if self.single is not None:
            return self.model.experts[self.single].ffn[i](h)
        out = torch.empty_like(h)
        for key, rows in self.groups.items():
            rows = rows.to(h.device)
            out[rows] = self.model.experts[key].ffn[i](h[rows])
        return out


class CaloMoE(nn.Module):
    def __init__(self, cfg: CaloMoEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.cond_proj = nn.Linear(N_COND, d)
        self.emb_layer = nn.Embedding(N_LAYERS, d)
        self.emb_x = nn.Embedding(WINDOW, d)
        self.emb_y = nn.Embedding(WINDOW, d)
        self.emb_energy = nn.Embedding(ENERGY_BINS, d)
        self.depth = nn.Linear(1, d)
        self.blocks = nn.ModuleList(MoEBlock(cfg) for _ in range(cfg.n_blocks))
        self.ln_f = nn.LayerNorm(d)
        self.apply(init_weights)
        for name in (*cfg.lora_particles, *cfg.lora_experts):
            self._inject_lora(name)
        self.experts = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        for key in cfg.experts:
            self.add_expert(key)
        for particle in cfg.lora_particles:
            self._add_heads(particle)
        for key in cfg.expert_heads:
            self._add_heads(key)
        self.totals = nn.ModuleDict()
        for key in cfg.totals:
            self.add_total(key)

    def add_total(self, key: str) -> None:
        """A total-energy module for showers of `key` (particle-material), initialised from the torch seed."""
        if key in self.totals:
            return
        self.totals[key] = TotalModel(self.cfg, shape=key in self.cfg.total_shape)
        if key not in self.cfg.totals:
            self.cfg.totals.append(key)

    def _add_heads(self, name: str) -> None:
        """Heads `name`: a particle's, or an expert's own (expert_heads)."""
        if name not in self.heads:
            heads = Heads(self.cfg)
            heads.apply(init_weights)
            self.heads[name] = heads

    def heads_of(self, key: str) -> str:
        """The heads that draw showers of `key` (particle-material): the expert's own where it has
        them, else its particle's."""
        return key if key in self.cfg.expert_heads else key.rsplit("-", 1)[0]

    def _inject_lora(self, name: str) -> None:
        """A LoRA adapter `name` (a particle or an expert) on every block's attention projections (peft;
        its B starts at zero, so the adapter starts as the identity)."""
        from peft import LoraConfig, inject_adapter_in_model

        lora = LoraConfig(r=self.cfg.lora_rank, lora_alpha=self.cfg.lora_alpha, target_modules=["qkv", "proj"], lora_dropout=0.0)
        with warnings.catch_warnings():  # peft warns of a second adapter in one model: here that is the design
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(lora, self.blocks, adapter_name=name)

    def adapter_of(self, key: str) -> str | None:
        """The LoRA adapter showers of `key` (particle-material) go through: the expert's own where it
        has one, else the particle's, else none (the backbone's projections)."""
        particle = key.rsplit("-", 1)[0]
        return key if key in self.cfg.lora_experts else particle if particle in self.cfg.lora_particles else None

    def add_particle(self, particle: str) -> None:
        """A particle through a LoRA adapter and heads of its own (showers of it in a material use the
        material's photon expert until the particle has an expert there)."""
        if particle in self.cfg.lora_particles:
            return
        self.cfg.lora_particles.append(particle)
        self._inject_lora(particle)
        self._add_heads(particle)

    # peft moves a wrapped projection's weights to `<name>.base_layer.*`; files keep the plain names, so
    # that a base model's weights load into its extension and back
    def state_dict(self, *args, **kwargs):
        sd = super().state_dict(*args, **kwargs)
        return type(sd)((k.replace(".base_layer.", "."), v) for k, v in sd.items())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        alias = {k.replace(".base_layer.", "."): k for k in super().state_dict()}
        return super().load_state_dict({alias.get(k, k): v for k, v in state_dict.items()}, strict=strict, assign=assign)

    def add_expert(self, key: str) -> None:
        """A new expert (and the heads of its particle, where it has none), initialised as a model's own
        modules are: deterministic given the torch seed at the time of the call."""
        if key in self.experts:
            return
        expert = Expert(self.cfg)
        expert.apply(init_weights)
        self.experts[key] = expert
        self._add_heads(key.rsplit("-", 1)[0])
        if key not in self.cfg.experts:
            self.cfg.experts.append(key)

    def standardised(self, cond: torch.Tensor) -> torch.Tensor:
        """tokens.condition_vector with its log energy standardised by the base's training data."""
        st = self.cfg.stats
        return torch.cat([(cond[:, :1] - st["log_energy_mean"]) / st["log_energy_std"], cond[:, 1:]], dim=1)

    def prefix(self, cond: torch.Tensor, experts: list[str]) -> torch.Tensor:
        """(B, 1, d) inputs of position 0 (cond: tokens.condition_vector, its log energy standardised here)."""
        cond = self.standardised(cond)
        experts = [self.expert_of(k) for k in experts]
        vec = torch.stack([self.experts[k].cond for k in experts]) if len(set(experts)) > 1 else self.experts[experts[0]].cond[None]
        return (self.cond_proj(cond) + vec)[:, None, :]

    def embed(self, layer, x, y, ebin) -> torch.Tensor:
        """(B, T, d) inputs of voxel positions."""
        depth = (layer.float() / N_LAYERS)[..., None]
        return self.emb_layer(layer) + self.emb_x(x) + self.emb_y(y) + self.emb_energy(ebin) + self.depth(depth)

    def n_parameters(self) -> int:
        return parameter_count(self)

    def expert_of(self, key: str) -> str | None:
        """The expert that serves showers of `key` (tokens.served_by)."""
        return served_by(key, list(self.experts), self.cfg.lora_particles)

    def router(self, experts: list[str]) -> Route:
        return Route(self, experts)

    def new_cache(self, route: Route):
        """An empty key-value cache for a batch of this route: a KVCache, or the ONNX Runtime trunk's."""
        ort = self.__dict__.get("ort")
        return KVCache(len(self.blocks)) if ort is None else ort[route.single_key].new_cache()

    def trunk(self, inputs: torch.Tensor, start: int, route, cache: KVCache | None = None) -> torch.Tensor:
        ort = self.__dict__.get("ort")
        if ort is not None:  # ONNX Runtime (onnx.attach): one graph per route, positions from the cache
            return ort[route.single_key].trunk(inputs, cache)
        positions = torch.arange(start, start + inputs.shape[1], device=inputs.device)
        rope = rotary(positions, self.blocks[0].n_rot, self.cfg.rope_base)
        h = inputs
        for i, block in enumerate(self.blocks):
            h = block(h, rope, route, i, cache)
        return self.ln_f(h)

    def forward(self, batch: dict[str, torch.Tensor], experts: list[str]) -> torch.Tensor:
        """(B, T + 1, d) outputs: position p predicts voxel p + 1 (or the end)."""
        inputs = torch.cat([self.prefix(batch["cond"], experts), self.embed(batch["layer"], batch["x"], batch["y"], batch["ebin"])], dim=1)
        return self.trunk(inputs, 0, self.router(experts))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def active_parameters(model: CaloMoE, expert: str) -> int:
    """Parameters a token of one (particle, material) passes through: the backbone, its expert, its heads."""
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("experts.", "heads.", "totals.")))
    return backbone + parameter_count(model.experts[expert]) + parameter_count(model.heads[model.heads_of(expert)])
