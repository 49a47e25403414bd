"""The calorimetry foundation model: tokens, rotary embeddings, routed experts (only the routed one
runs), training on several absorbers, generation (seeded, batch-independent, ordered, no voxel twice),
and growth by modules: the base generates bit-identical showers after every addition; a module of
another backbone, an altered module, settings the model was not trained for are refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hitgen.core.errors import HitgenError
from hitgen.core.events import EventSet
from hitgen.detectors.ild_ecal.views import voxels
from hitgen.families import SamplingOptions, get_family
from hitgen.families.calo_moe.model import CaloMoE, CaloMoEConfig, rotate
from hitgen.families.calo_moe.sampler import generate_showers
from hitgen.families.calo_moe.tokens import bin_energy, energy_bin, to_cells, tokenize
from hitgen.generation.job import generate_file
from hitgen.models.io import load_model
from hitgen.simulation.runner import simulate
from hitgen.training.modules import extend
from sameness import allowed, differing_events

CONFIGS = Path(__file__).parents[1] / "configs" / "calo-moe"


def _hitgen(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "hitgen", *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Real Geant4 photon showers of 1-3 GeV in tungsten, tantalum and lead."""
    d = tmp_path_factory.mktemp("moe")
    made = {
        m: simulate("ild-ecal", 36, d / f"{m}.h5", seed=s, workers=2, particle="gamma", energy_range=(1.0, 3.0), absorber=m).path
        for m, s in (("W", 81), ("Ta", 82), ("Pb", 83))
    }
    made["e-W"] = simulate("ild-ecal", 36, d / "e-W.h5", seed=84, workers=2, particle="e-", energy_range=(1.0, 3.0)).path
    return made


@pytest.fixture(scope="module")
def base(files, tmp_path_factory) -> Path:
    """A tiny model trained on W and Ta together (one expert each)."""
    out = tmp_path_factory.mktemp("moe_run") / "base"
    _hitgen("train", str(CONFIGS / "tiny.toml"), "--data", str(files["W"]), "--data", str(files["Ta"]), "--out", str(out))
    return out


def test_tokens_are_the_cells_by_decreasing_energy(files):
    events = EventSet.read(files["Ta"])
    seq = tokenize(events)
    n = events.n_events
    assert seq.offsets[-1] == len(seq.layer) and seq.clipped == 0
    for i in range(n):
        s = slice(seq.offsets[i], seq.offsets[i + 1])
        assert np.all(np.diff(seq.ebin[s]) <= 0)  # decreasing energy
    event = np.repeat(np.arange(n), np.diff(seq.offsets))
    cx, cy = to_cells(events.conditions["entry_point"], seq.x, seq.y, event)
    got = set(zip(event.tolist(), seq.layer.tolist(), cx.tolist(), cy.tolist(), strict=True))
    h = events.hits
    columns = (events.event_index(), h["layer"], h["cell_x"], h["cell_y"])
    want = set(zip(*(c.astype(int).tolist() for c in columns), strict=True))
    outside = voxels(events)  # the voxel view, written independently: what falls outside the window
    assert got <= want and len(want - got) == int(outside.outside_hits.sum())
    assert np.allclose(seq.outside_energy, outside.outside_energy)
    inside_energy = h["energy"].sum() - seq.outside_energy.sum()
    assert np.isclose(bin_energy(seq.ebin, np.full(len(seq.ebin), 0.5)).sum(), inside_energy, rtol=0.02)
    e = np.array([0.1, 0.5, 3.0, 63.0])
    assert np.all(bin_energy(energy_bin(e), np.zeros(4)) <= e * (1 + 1e-12)) and np.all(e < bin_energy(energy_bin(e), np.ones(4)))


def test_shape_features_of_a_hand_made_shower():
    from hitgen.families.calo_moe.tokens import shape_features

    # shower 0: two voxels of one energy bin at layers 2 and 4 (x, y 15 and 18, 19): mean layer 3, spread
    # 1, mean distance from the centre (15, 15) (0 + 5) / 2; shower 1: none
    f = shape_features(np.array([0, 0]), np.array([2, 4]), np.array([15, 18]), np.array([15, 19]), np.array([100, 100]), 2)
    np.testing.assert_allclose(f, [[3.0, 1.0, 2.5], [0.0, 0.0, 0.0]], rtol=1e-6)
    g = shape_features(np.array([0, 0]), np.array([2, 4]), np.array([15, 15]), np.array([15, 15]), np.array([100, 140]), 1)
    assert 3.0 < g[0, 0] < 4.0  # weighted towards the more energetic voxel


def test_partial_rotary_embedding_depends_on_relative_position_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 1, 16), torch.randn(1, 2, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        return (rotate(q, torch.tensor([m]), 8, 1000.0) * rotate(k, torch.tensor([n]), 8, 1000.0)).sum(-1)

    assert torch.allclose(score(3, 1), score(12, 10), atol=1e-5) and not torch.allclose(score(3, 1), score(3, 2), atol=1e-3)
    r = rotate(q, torch.tensor([5]), 8, 1000.0)
    assert torch.equal(r[..., 8:], q[..., 8:])  # the other half does not rotate
    assert torch.allclose(r.norm(dim=-1), q.norm(dim=-1))


def _tiny(experts: list[str]) -> CaloMoE:
    torch.manual_seed(0)
    cfg = CaloMoEConfig(d_model=32, n_blocks=2, n_heads=2, d_ff=64, experts=list(experts), head_width=32, max_voxels=40)
    cfg.stats = {"log_energy_mean": 0.7, "log_energy_std": 0.4}
    return CaloMoE(cfg).eval()


def test_only_the_routed_expert_runs_and_the_cost_per_token_does_not_grow():
    model = _tiny(["gamma-W", "gamma-Ta"])
    calls: dict[str, int] = {}
    for key, expert in model.experts.items():
        for ffn in expert.ffn:
            ffn.register_forward_hook(lambda m, i, o, key=key: calls.__setitem__(key, calls.get(key, 0) + i[0].shape[0] * i[0].shape[1]))
    batch = {"cond": torch.randn(3, 5), **{k: torch.randint(0, 30, (3, 7)) for k in ("layer", "x", "y", "ebin")}}
    with torch.no_grad():
        mixed = model(batch, ["gamma-W", "gamma-Ta", "gamma-W"])
        assert calls == {"gamma-W": 2 * 2 * 8, "gamma-Ta": 2 * 1 * 8}  # blocks x rows x positions, routed rows only
        alone = model({k: v[1:2] for k, v in batch.items()}, ["gamma-Ta"])
        assert torch.allclose(mixed[1:2], alone, atol=1e-6)
        calls.clear()
        model.add_expert("gamma-Pb")
        model.add_expert("e--W")
        model.eval()
        again = model(batch, ["gamma-W", "gamma-Ta", "gamma-W"])
    assert torch.equal(again, mixed)  # more experts held: the same outputs, the same work per token
    assert calls == {"gamma-W": 32, "gamma-Ta": 16}


def test_generation_is_seeded_batch_independent_ordered_and_never_repeats_a_voxel(files):
    model = _tiny(["gamma-W"])
    cond = EventSet.read(files["W"]).select(np.arange(6)).conditions
    off_a, hits_a = generate_showers(model, cond, "W", seed=3, batch_size=6)
    batched = generate_showers(model, cond, "W", seed=3, batch_size=2)
    assert len(differing_events((off_a, hits_a), batched)) <= allowed(6)  # tests/sameness.py
    off_c, hits_c = generate_showers(model, cond, "W", seed=4, batch_size=6)
    assert not (np.array_equal(off_a, off_c) and np.array_equal(hits_a["energy"], hits_c["energy"]))
    counts = np.diff(off_a)
    assert counts.max() <= model.cfg.max_voxels and counts.sum() > 0
    for i in range(6):
        s = slice(off_a[i], off_a[i + 1])
        cells = set(zip(hits_a["layer"][s].tolist(), hits_a["cell_x"][s].tolist(), hits_a["cell_y"][s].tolist(), strict=True))
        assert len(cells) == counts[i]  # every voxel once
    assert hits_a["energy"].min() >= 0.1
    with pytest.raises(HitgenError, match="no expert for gamma-Pb"):
        generate_showers(model, cond, "Pb", seed=3, batch_size=6)


@pytest.mark.parametrize("exclusion", ["y", "voxel"])
def test_a_shower_with_a_total_module_is_empty_only_when_its_total_says_so(files, exclusion):
    """The heads made to end most showers at once (the end's logit raised): without a total-energy
    module most showers come out empty; with one that never draws its empty-window token none does,
    and the showers that were not empty are the same voxels (rejection touches no other row); with
    one that always draws it, every shower is empty."""
    model = _tiny(["gamma-W"])
    model.cfg.exclusion = exclusion
    with torch.no_grad():
        model.heads["gamma"].layer[-1].bias[-1] += 4.0
    cond = EventSet.read(files["W"]).select(np.arange(24)).conditions
    off_a, hits_a = generate_showers(model, cond, "W", seed=5, batch_size=8)
    empty = np.diff(off_a) == 0
    assert 6 <= empty.sum() < 24
    model.add_total("gamma-W")
    special = model.totals["gamma-W"].head.out.bias
    with torch.no_grad():
        special[0] = -40.0  # the empty window never drawn
    off_b, hits_b = generate_showers(model, cond, "W", seed=5, batch_size=8)
    assert (np.diff(off_b) > 0).all()
    for e in np.flatnonzero(~empty):  # the same cells, their energies scaled to the drawn total
        a, b = slice(off_a[e], off_a[e + 1]), slice(off_b[e], off_b[e + 1])
        cells_a = set(zip(hits_a["layer"][a].tolist(), hits_a["cell_x"][a].tolist(), hits_a["cell_y"][a].tolist(), strict=True))
        cells_b = set(zip(hits_b["layer"][b].tolist(), hits_b["cell_x"][b].tolist(), hits_b["cell_y"][b].tolist(), strict=True))
        assert cells_b <= cells_a and len(cells_b) > 0
    with torch.no_grad():
        special[0] = 40.0  # always drawn
    off_c, _ = generate_showers(model, cond, "W", seed=5, batch_size=8)
    assert (np.diff(off_c) == 0).all()


def _crowded(exclusion: str) -> CaloMoE:
    """A tiny model whose heads want a 2 x 2 patch of layer 3 and never the end: every shower soon
    asks for voxels it already holds."""
    model = _tiny(["gamma-W"])
    model.cfg.exclusion = exclusion
    heads = model.heads["gamma"]
    with torch.no_grad():
        for head, favoured, boost in ((heads.layer, [3], 8.0), (heads.x, [14, 15], 6.0), (heads.y, [14, 15], 6.0)):
            head[-1].bias[favoured] += boost
        heads.layer[-1].bias[-1] -= 20.0  # the end
    return model


@pytest.mark.parametrize("exclusion", ["y", "xy", "voxel"])
def test_a_voxel_drawn_twice_is_drawn_again_as_configured(files, exclusion):
    cond = EventSet.read(files["W"]).select(np.arange(4)).conditions
    model = _crowded(exclusion)
    off, hits = generate_showers(model, cond, "W", seed=5, batch_size=4)
    assert np.array_equal(np.diff(off), [model.cfg.max_voxels] * 4)
    for i in range(4):
        s = slice(off[i], off[i + 1])
        cells = set(zip(hits["layer"][s].tolist(), hits["cell_x"][s].tolist(), hits["cell_y"][s].tolist(), strict=True))
        assert len(cells) == model.cfg.max_voxels  # every voxel once, though the heads want 4 of them
    assert len(differing_events((off, hits), generate_showers(model, cond, "W", seed=5, batch_size=1))) <= allowed(4)
    in_layer_3 = np.mean(hits["layer"] == 3)
    x_per_shower = [len(np.unique(hits["cell_x"][off[i] : off[i + 1]])) for i in range(4)]
    if exclusion == "y":  # only y moves: x stays in the two columns the heads want
        assert max(x_per_shower) <= 4 and in_layer_3 > 0.99
    elif exclusion == "xy":  # x and y move, the layer stays
        assert min(x_per_shower) > 4 and in_layer_3 > 0.99
    else:  # the whole voxel moves, now and then out of the crowded layer
        assert min(x_per_shower) > 4 and in_layer_3 < 0.99


@pytest.mark.parametrize("keep_layer", [False, True])
def test_the_redraws_of_taken_voxels_draw_the_heads_renormalised_over_the_free(keep_layer):
    """Rejection as the sampler runs it (redraws in chunks) against the distribution written out:
    p(layer) p(x | layer) p(y | layer, x) over the end and all 27 000 voxels, the taken voxels set to
    zero and the rest renormalised (exclusion "voxel"; "xy" keeps the layer: renormalised within it)."""
    from scipy.stats import chisquare

    from hitgen.families.calo_moe.sampler import _draw_voxel, redraw_taken
    from hitgen.nn.streams import event_keys, uniforms

    model = _tiny(["gamma-W"])
    heads = model.heads["gamma"]
    with torch.no_grad():
        for head, favoured, boost in ((heads.layer, [3, 4], 4.0), (heads.x, [14, 15], 4.0), (heads.y, [14, 15], 4.0)):
            head[-1].bias[favoured] += boost
    n = 20000
    torch.manual_seed(1)
    h = torch.randn(1, 32).expand(n, -1)
    taken = [(3, 14, 14), (3, 14, 15), (3, 15, 14), (4, 15, 15), (4, 14, 15)]
    used = torch.zeros((n, 30 * 30 * 30), dtype=torch.bool)
    for lv, xv, yv in taken:
        used[:, (lv * 30 + xv) * 30 + yv] = True
    keys = torch.from_numpy(event_keys(11, np.arange(n)))
    u = [uniforms(keys, torch.tensor(100 + d)) for d in range(3)]
    with torch.no_grad():
        logp = torch.log_softmax(heads.layer(h), -1)
        allowed = torch.ones_like(logp, dtype=torch.bool)
        drawn = _draw_voxel(heads, h, logp, allowed, 1.0, *u, None)
        layer, x, y, _ = redraw_taken(heads, h, logp, allowed, 1.0, keys, 7, used, drawn, keep_layer, u[2])
        h1 = h[:1]
        p_layer = torch.softmax(heads.layer(h1), -1)[0]
        p_x = torch.softmax(heads.x(heads.after_layer(h1, torch.arange(30))), -1)  # (layer, x)
        columns = torch.arange(900)
        p_y = torch.softmax(heads.y(heads.after_x(heads.after_layer(h1, columns // 30), columns % 30)), -1).view(30, 30, 30)
    within = p_x[..., None] * p_y  # p(x, y | layer)
    for lv, xv, yv in taken:
        within[lv, xv, yv] = 0.0
    if keep_layer:
        expected = torch.cat([(p_layer[:30, None, None] * within / within.sum((1, 2), keepdim=True)).flatten(), p_layer[30:]])
    else:
        joint = torch.cat([(p_layer[:30, None, None] * within).flatten(), p_layer[30:]])
        expected = joint / joint.sum()
        assert 0.2 < 1 - float(joint.sum()) < 0.6  # the taken voxels hold a good share: many rows redraw
    flat = torch.where(layer < 30, (layer.clamp(max=29) * 30 + x) * 30 + y, 27000)
    assert not any(((layer == lv) & (x == xv) & (y == yv)).any() for lv, xv, yv in taken)
    counts = torch.bincount(flat, minlength=27001).double()
    e = expected.double() * n
    big = e >= 5
    observed = torch.cat([counts[big], counts[~big].sum()[None]]).numpy()
    predicted = torch.cat([e[big], e[~big].sum()[None]]).numpy()
    assert int(big.sum()) > 20 and chisquare(observed, predicted * observed.sum() / predicted.sum()).pvalue > 1e-3


def test_training_on_two_absorbers_lowers_the_loss_and_records_both(base):
    rows = (base / "log.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[2]) for r in rows]
    assert losses[-1] < losses[0]
    config = json.loads((base / "config.json").read_text())
    assert config["model"]["experts"] == ["gamma-W", "gamma-Ta"]
    assert [s["absorber"] for s in config["detector_specs"]] == ["W", "Ta"]


def _extend(base: Path, add: str, data: Path, out: Path) -> None:
    extend(str(base), add, [data], out, CONFIGS / "tiny-extend.toml")


def _generated(model: Path, conditions: Path, out: Path) -> EventSet:
    return EventSet.read(generate_file(str(model), out, conditions, opts=SamplingOptions(seed=5)).path)


def test_a_module_grows_the_model_and_the_base_stays_bit_identical(base, files, tmp_path):
    ext = tmp_path / "ext"
    _extend(base, "gamma-Pb", files["Pb"], ext)
    config = json.loads((ext / "config.json").read_text())
    assert (ext / "model.safetensors").read_bytes() == (base / "model.safetensors").read_bytes()
    (module,) = config["modules"]
    assert module["name"] == "gamma-Pb" and module["backbone_sha256"] == config["weights_sha256"]
    # a particle: electrons through a LoRA adapter (peft) and heads of their own, over the grown model
    ext2 = tmp_path / "ext2"
    _extend(ext, "e-", files["e-W"], ext2)
    config2 = json.loads((ext2 / "config.json").read_text())
    assert [m["name"] for m in config2["modules"]] == ["gamma-Pb", "e-"] and config2["model"]["lora_particles"] == ["e-"]
    assert config2["modules"][1]["prefixes"] == ["blocks.*.lora_*.e-.", "heads.e-."]
    for m in ("W", "Ta"):
        cond = tmp_path / f"cond_{m}.h5"
        EventSet.read(files[m]).select(np.arange(12)).write(cond)
        a, b, c = (_generated(model, cond, tmp_path / f"{model.name}_{m}.h5") for model in (base, ext, ext2))
        for other in (b, c):  # the base's showers, bit for bit, after each addition
            assert np.array_equal(a.offsets, other.offsets) and all(np.array_equal(a.hits[k], other.hits[k]) for k in a.hits)
    EventSet.read(files["e-W"]).select(np.arange(8)).write(tmp_path / "cond_e.h5")
    electrons = _generated(ext2, tmp_path / "cond_e.h5", tmp_path / "electrons.h5")
    assert electrons.n_hits > 0
    pb = generate_file(str(ext), tmp_path / "pb.h5", options={"particle": "gamma"}, n_events=4, settings={"absorber": "Pb"})
    assert EventSet.read(pb.path).detector_spec["absorber"] == "Pb"
    r = _hitgen("generate", str(base), "--events", "4", "--particle", "gamma", "--absorber", "Pb", "--out", str(tmp_path / "no.h5"), check=False)
    assert r.returncode != 0 and "not for absorber Pb" in r.stderr and len(r.stderr.strip().splitlines()) == 1

    # a module of another backbone, an altered module: one line each
    other = tmp_path / "other"
    shutil.copytree(ext, other, ignore=shutil.ignore_patterns("run"))
    cfg = json.loads((other / "config.json").read_text())
    cfg["modules"][0]["backbone_sha256"] = "0" * 64
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HitgenError, match="trained on backbone 000000000000"):
        load_model(other)
    cfg["modules"][0]["backbone_sha256"] = cfg["weights_sha256"]
    (other / "config.json").write_text(json.dumps(cfg))
    load_model(other)
    data = bytearray((other / "modules" / "gamma-Pb.safetensors").read_bytes())
    data[-1] ^= 1
    (other / "modules" / "gamma-Pb.safetensors").write_bytes(bytes(data))
    with pytest.raises(HitgenError, match="module gamma-Pb was altered"):
        load_model(other)
    with pytest.raises(HitgenError, match="already has the expert gamma-Pb"):
        _extend(ext, "gamma-Pb", files["Pb"], tmp_path / "x")


def test_a_new_expert_can_start_from_another_of_the_base(base, files, tmp_path):
    from safetensors.torch import load_file

    config = tmp_path / "copy.toml"
    config.write_text((CONFIGS / "tiny-extend.toml").read_text() + '\n[train.init_copy]\n"experts.gamma-Pb." = "experts.gamma-W."\n')
    run = extend(str(base), "gamma-Pb", [files["Pb"]], tmp_path / "copied", config, stop_after=1)
    init = json.loads((run / "init.json").read_text())
    assert init["parameters_copied_from"]["experts.gamma-Pb.cond"] == "experts.gamma-W.cond"
    start, after = load_file(str(base / "model.safetensors")), load_file(str(run / "model.safetensors"))
    pairs = [(k, "experts.gamma-W." + k.removeprefix("experts.gamma-Pb.")) for k in after if k.startswith("experts.gamma-Pb.")]
    assert len(pairs) == len(init["parameters_copied_from"]) > 2
    # one AdamW step of lr 2e-3 from the tungsten expert (a random start would be far from it)
    assert max(float((after[k] - start[src]).abs().max()) for k, src in pairs) < 5e-3
    config.write_text((CONFIGS / "tiny-extend.toml").read_text() + '\n[train.init_copy]\n"experts.gamma-Pb." = "experts.gamma-Cu."\n')
    with pytest.raises(HitgenError, match="has no experts.gamma-Cu"):
        extend(str(base), "gamma-Pb", [files["Pb"]], tmp_path / "bad", config)


def test_an_expert_with_an_attention_adapter_of_its_own_changes_only_its_showers(base, files, tmp_path):
    """[module] attention_lora: the new expert and a LoRA adapter (peft) named after it on every block's
    attention projections, the rest frozen; the base's showers stay bit-identical, Pb showers go
    through the adapter, and electrons keep their particle's adapter."""
    from safetensors.torch import load_file

    config = tmp_path / "lora.toml"
    config.write_text((CONFIGS / "tiny-extend.toml").read_text() + "\n[module]\nattention_lora = true\n")
    ext = extend(str(base), "gamma-Pb", [files["Pb"]], tmp_path / "ext", config)
    grown = json.loads((ext / "config.json").read_text())
    (module,) = grown["modules"]
    assert module["prefixes"] == ["experts.gamma-Pb.", "blocks.*.lora_*.gamma-Pb."] and grown["model"]["lora_experts"] == ["gamma-Pb"]
    tensors = load_file(str(ext / module["file"]))
    lora_b = [v for k, v in tensors.items() if ".lora_B.gamma-Pb." in k]
    assert len(lora_b) == 2 * grown["model"]["n_blocks"] and all(float(v.abs().max()) > 0 for v in lora_b)  # qkv and proj, trained
    for m in ("W", "Ta"):
        cond = tmp_path / f"cond_{m}.h5"
        EventSet.read(files[m]).select(np.arange(8)).write(cond)
        a, b = (_generated(model, cond, tmp_path / f"{model.name}_{m}.h5") for model in (base, ext))
        assert np.array_equal(a.offsets, b.offsets) and all(np.array_equal(a.hits[k], b.hits[k]) for k in a.hits)
    from hitgen.families.calo_moe.onnx import RouteGraph

    loaded = load_model(ext).model
    assert loaded.adapter_of("gamma-Pb") == "gamma-Pb" and loaded.adapter_of("gamma-W") is None
    assert loaded.router(["gamma-Pb", "gamma-W"]).adapters == ["gamma-Pb", "__base__"]
    base_qkv = loaded.blocks[0].qkv.base_layer.weight
    assert torch.equal(RouteGraph(loaded, "gamma-W").qkv[0].weight, base_qkv)  # the ONNX route graphs: merged for Pb only
    assert not torch.equal(RouteGraph(loaded, "gamma-Pb").qkv[0].weight, base_qkv)
    loaded.add_particle("e-")
    assert loaded.adapter_of("e--Pb") == "e-" and loaded.adapter_of("gamma-Pb") == "gamma-Pb"
    with pytest.raises(HitgenError, match="attention_lora: not a setting of the module e-"):
        extend(str(base), "e-", [files["e-W"]], tmp_path / "bad", config)


def test_an_expert_with_heads_of_its_own_draws_its_showers_with_them(base, files, tmp_path):
    """[module] own_heads: the new expert and heads named after it, started from the photon heads
    ([train.init_copy]); Pb showers are drawn and trained by them, the base's stay bit-identical."""
    from hitgen.families.calo_moe.data import VoxelData, moe_loss
    from hitgen.families.calo_moe.sampler import _heads_rows

    config = tmp_path / "heads.toml"
    copy = '\n[train.init_copy]\n"heads.gamma-Pb." = "heads.gamma."\n'
    config.write_text((CONFIGS / "tiny-extend.toml").read_text() + "\n[module]\nown_heads = true\n" + copy)
    ext = extend(str(base), "gamma-Pb", [files["Pb"]], tmp_path / "ext", config)
    grown = json.loads((ext / "config.json").read_text())
    (module,) = grown["modules"]
    assert module["prefixes"] == ["experts.gamma-Pb.", "heads.gamma-Pb."] and grown["model"]["expert_heads"] == ["gamma-Pb"]
    start, tensors = load_file(str(base / "model.safetensors")), load_file(str(ext / module["file"]))
    own = [k for k in tensors if k.startswith("heads.gamma-Pb.")]
    assert len(own) == len([k for k in start if k.startswith("heads.gamma.")]) > 8
    moved = [float((tensors[k] - start["heads.gamma." + k.removeprefix("heads.gamma-Pb.")]).abs().max()) for k in own]
    assert 0 < max(moved) < 2e-2  # four AdamW steps of lr 2e-3 from the photon heads
    cond = tmp_path / "cond_W.h5"
    EventSet.read(files["W"]).select(np.arange(8)).write(cond)
    a, b = (_generated(model, cond, tmp_path / f"{model.name}_W.h5") for model in (base, ext))
    assert np.array_equal(a.offsets, b.offsets) and all(np.array_equal(a.hits[k], b.hits[k]) for k in a.hits)
    model = load_model(ext).model
    assert model.heads_of("gamma-Pb") == "gamma-Pb" and model.heads_of("gamma-W") == "gamma"
    assert {k: v.tolist() for k, v in _heads_rows(model, ["gamma-W", "gamma-Pb", "gamma-W"], "cpu").items()} == {"gamma": [0, 2], "gamma-Pb": [1]}
    data = VoxelData.from_parts([EventSet.read(files["W"]), EventSet.read(files["Pb"])])
    rows = np.r_[np.arange(4), len(data) - np.arange(1, 5)]
    batch = data.batch(rows)
    loss, _ = moe_loss(model, batch)
    loss.backward()
    grads = {name: sum(float(p.grad.abs().sum()) for p in model.heads[name].parameters() if p.grad is not None) for name in ("gamma", "gamma-Pb")}
    assert grads["gamma"] > 0 and grads["gamma-Pb"] > 0  # W rows through the photon heads, Pb rows through their own
    with pytest.raises(HitgenError, match="own_heads: not a setting of the module e-"):
        extend(str(base), "e-", [files["e-W"]], tmp_path / "bad", config)


def test_a_total_energy_module_learns_the_totals_of_its_showers(files):
    from hitgen.families.calo_moe.data import VoxelData, total_loss
    from hitgen.families.calo_moe.sampler import draw_totals
    from hitgen.families.calo_moe.tokens import bin_total
    from hitgen.nn.streams import event_keys

    data = VoxelData.from_parts([EventSet.read(files["W"])])
    model = _tiny(["gamma-W"])
    model.add_total("gamma-W")
    batch = data.batch(np.arange(len(data)))
    opt = torch.optim.AdamW(model.totals.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss, parts = total_loss(model, batch)
        first = first if first is not None else parts["nll_total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["nll_total"] < first - 1.0
    truth = bin_total(data.total, np.full(len(data), 0.5))  # MeV per GeV, 24-26 for these photons
    keys, shape = torch.from_numpy(event_keys(1, np.arange(len(data)))), torch.from_numpy(data.shape)
    drawn = draw_totals(model, torch.from_numpy(data.cond), ["gamma-W"] * len(data), keys, 1.0, shape)
    assert abs(drawn.mean() / truth.mean() - 1) < 0.05 and 0.3 < drawn.std() / truth.std() < 3.0
    with pytest.raises(HitgenError, match="no total-energy module for them"):
        total_loss(_tiny(["gamma-W"]), batch)


def test_a_total_module_scales_its_showers_and_changes_no_other(base, files, tmp_path):
    total_cfg = tmp_path / "total.toml"
    total_cfg.write_text((CONFIGS / "tiny-extend.toml").read_text().replace("max_steps = 4", "max_steps = 100").replace("lr = 2e-3", "lr = 1e-2"))
    ext = tmp_path / "total"
    extend(str(base), "total-gamma-Ta", [files["Ta"]], ext, total_cfg)
    config = json.loads((ext / "config.json").read_text())
    assert config["model"]["totals"] == ["gamma-Ta"] and config["modules"][0]["prefixes"] == ["totals.gamma-Ta."]
    assert config["modules"][0]["train"]["train_only"] == ["totals.gamma-Ta."]
    for m in ("W", "Ta"):
        cond = tmp_path / f"cond_{m}.h5"
        EventSet.read(files[m]).select(np.arange(10)).write(cond)
        a, b = (_generated(model, cond, tmp_path / f"{model.name}_{m}.h5") for model in (base, ext))
        if m == "W":  # no total module for W: the base's showers, bit for bit
            assert np.array_equal(a.offsets, b.offsets) and all(np.array_equal(a.hits[k], b.hits[k]) for k in a.hits)
            continue
        checked = 0
        for e in range(10):  # the base's voxels, each shower's scaled by one factor (those below threshold dropped)
            ha, hb = (ev.hits for ev in (a.select([e]), b.select([e])))
            cells = [h["layer"].astype(np.int64) * 10**6 + h["cell_x"].astype(np.int64) * 10**3 + h["cell_y"] for h in (ha, hb)]
            if len(cells[0]) == 0:  # the base ended the shower at once; with a total module only its total may
                assert len(cells[1]) > 0  # (its empty-window token, which 36 Ta showers taught it not to draw)
                continue
            kept = np.isin(cells[0], cells[1])
            assert np.array_equal(cells[0][kept], cells[1])
            if kept.any():
                ratio = hb["energy"] / ha["energy"][kept]
                np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
                assert np.all(ha["energy"][~kept] * ratio[0] < 0.1)
                checked += 1
        assert checked >= 8
    with pytest.raises(HitgenError, match="already has the total-energy module gamma-Ta"):
        extend(str(ext), "total-gamma-Ta", [files["Ta"]], tmp_path / "x", total_cfg)
    with pytest.raises(HitgenError, match="does not generate gamma-Pb showers"):
        extend(str(base), "total-gamma-Pb", [files["Pb"]], tmp_path / "y", total_cfg)
    # --replace with [module] total_shape: the module trained anew in its place, reading the showers' shape
    # standardised by its training showers' (in its file); the rest of the model as it was
    from hitgen.families.calo_moe.data import VoxelData

    assert config["model"]["total_shape"] == []
    shape_cfg = tmp_path / "shape.toml"
    shape_cfg.write_text("[module]\ntotal_shape = true\n\n" + total_cfg.read_text())
    again = tmp_path / "again"
    extend(str(ext), "total-gamma-Ta", [files["Ta"]], again, shape_cfg, replace=True)
    grown = json.loads((again / "config.json").read_text())
    assert [m["name"] for m in grown["modules"]] == ["total-gamma-Ta"] and grown["model"]["totals"] == ["gamma-Ta"]
    assert grown["model"]["total_shape"] == ["gamma-Ta"] and grown["weights_sha256"] == config["weights_sha256"]
    module = load_file(str(again / grown["modules"][0]["file"]))
    assert set(module) <= set(json.loads((again / "run" / "init.json").read_text())["parameters_new"])  # nothing of the old one copied
    shape = torch.from_numpy(VoxelData.from_parts([EventSet.read(files["Ta"])]).shape)
    torch.testing.assert_close(module["totals.gamma-Ta.shape_mean"], shape.mean(0))
    torch.testing.assert_close(module["totals.gamma-Ta.shape_std"], shape.std(0))
    torch.testing.assert_close(module["totals.gamma-Ta.shape_hi"], shape.max(0).values)
    w_base, w_again = (_generated(m, tmp_path / "cond_W.h5", tmp_path / f"{m.name}_W_again.h5") for m in (base, again))
    assert np.array_equal(w_base.offsets, w_again.offsets) and all(np.array_equal(w_base.hits[k], w_again.hits[k]) for k in w_base.hits)
    ta_ext, ta_again = (_generated(m, tmp_path / "cond_Ta.h5", tmp_path / f"{m.name}_Ta_again.h5") for m in (ext, again))
    assert np.array_equal(ta_ext.hits["layer"][:5], ta_again.hits["layer"][:5]) and not np.array_equal(ta_ext.hits["energy"], ta_again.hits["energy"])
    with pytest.raises(HitgenError, match="only a total-energy module may be replaced"):
        extend(str(ext), "gamma-Pb", [files["Pb"]], tmp_path / "z", total_cfg, replace=True)
    with pytest.raises(HitgenError, match="total_shape: not a setting of the module gamma-Pb"):
        extend(str(ext), "gamma-Pb", [files["Pb"]], tmp_path / "z", shape_cfg)
    with pytest.raises(HitgenError, match="no total-energy module gamma-W to replace"):
        extend(str(ext), "total-gamma-W", [files["W"]], tmp_path / "z", total_cfg, replace=True)


def test_onnx_export_one_graph_per_route_and_onnxruntime_draws_the_same_showers(base, files, tmp_path):
    from hitgen.models.export import export_onnx

    manifest = export_onnx(str(base), tmp_path / "onnx")
    assert sorted(manifest["graphs"]) == ["trunk_gamma-Ta", "trunk_gamma-W"]
    cond = tmp_path / "cond.h5"
    events = EventSet.read(files["W"]).select(np.arange(8))
    EventSet.concatenate([events]).write(cond)
    got = {}
    for backend, folder in (("torch", None), ("onnxruntime", tmp_path / "onnx")):
        out = generate_file(str(base), tmp_path / f"{backend}.h5", cond, opts=SamplingOptions(seed=2), backend=backend, onnx_dir=folder)
        e = EventSet.read(out.path)
        got[backend] = (e.offsets, e.hits)
    assert len(differing_events(got["torch"], got["onnxruntime"])) <= allowed(8)


def test_the_renormalised_loss_is_the_cross_entropy_of_the_free_voxels_by_brute_force(files):
    """[loss] renormalise against the whole joint written out: p(layer) p(x | layer) p(y | layer, x) of
    the end and all 27 000 voxels at every position, the voxels already in the shower set to zero, the
    rest renormalised; its cross entropy of the true next token is the loss, position by position."""
    from hitgen.families.calo_moe.data import IGNORE, VoxelData, moe_loss, taken_pairs

    model = _tiny(["gamma-W"])
    data = VoxelData.from_parts([EventSet.read(files["W"]).select(np.arange(2))])
    batch = data.batch(np.arange(2))
    with torch.no_grad():
        plain, parts = moe_loss(model, batch)
        renormalised, rparts = moe_loss(model, batch, renormalise=True)
        h = model(batch, ["gamma-W"] * 2)
        heads = model.heads["gamma"]
        layers, columns = torch.arange(30), torch.arange(30 * 30)
        total, positions = 0.0, 0
        for r in range(2):
            n = int((batch["t_x"][r] != IGNORE).sum())
            hj = h[r, : n + 1, None, :]  # every position of the shower, the end's included
            p_layer = torch.softmax(heads.layer(hj[:, 0]), -1)
            p_x = torch.softmax(heads.x(heads.after_layer(hj, layers)), -1)  # (position, layer, x)
            hl = heads.after_layer(hj, columns // 30)
            p_y = torch.softmax(heads.y(heads.after_x(hl, columns % 30)), -1).view(n + 1, 30, 30, 30)
            joint = p_layer[:, :30, None, None] * p_x[..., None] * p_y  # (position, layer, x, y)
            voxel = (batch["layer"][r, :n], batch["x"][r, :n], batch["y"][r, :n])
            for k in range(n):  # voxel k is in the shower from position k + 1 on
                joint[k + 1 :, voxel[0][k], voxel[1][k], voxel[2][k]] = 0.0
            free = joint.flatten(1).sum(1) + p_layer[:, 30]
            target = torch.cat([joint[torch.arange(n), *voxel], p_layer[n, 30:]])
            total += float(-torch.log(target / free).sum())
            positions += n + 1
    assert renormalised.item() - rparts["ce_energy"] == pytest.approx(total / positions, rel=1e-4)  # the energy bin: as before
    assert rparts["log_free"] < 0 and renormalised < plain  # the taken voxels' mass is given back
    assert renormalised.item() == pytest.approx(parts["loss"] + rparts["log_free"], rel=1e-5)
    # the pairs of a hand-made shower: voxels (layer 0, x 1, y 2), (0, 1, 3), (2, 0, 0)
    j, lc, xc, mask = taken_pairs(np.array([0, 0, 2]), np.array([1, 1, 0]), np.array([2, 3, 0]))
    assert j.tolist() == [1, 2, 3, 3] and lc.tolist() == [0, 0, 0, 2] and xc.tolist() == [1, 1, 1, 0]
    assert [np.flatnonzero(m).tolist() for m in mask] == [[2], [2, 3], [2, 3], [0]]


def test_training_with_the_renormalised_loss_logs_it_and_lowers_it(files, tmp_path):
    from hitgen.training.trainer import train

    raw = (CONFIGS / "tiny.toml").read_text().replace("max_voxels = 80", 'max_voxels = 80\nexclusion = "voxel"')
    (tmp_path / "cfg.toml").write_text(raw + "\n[loss]\nrenormalise = true\n")
    run = train(tmp_path / "cfg.toml", [files["W"], files["Ta"]], tmp_path / "run")
    header, *rows = (run / "log.csv").read_text().splitlines()
    fields = header.split(",")
    assert "log_free" in fields and json.loads((run / "config.json").read_text())["model"]["exclusion"] == "voxel"
    log = [dict(zip(fields, r.split(","), strict=True)) for r in rows]
    assert float(log[-1]["loss"]) < float(log[0]["loss"]) and all(float(r["log_free"]) < 0 for r in log)


def test_config_refuses_an_unknown_expert():
    raw = tomllib.loads((CONFIGS / "tiny.toml").read_text())
    raw["model"]["experts"] = ["gamma-W", "pi+-W"]
    with pytest.raises(ValueError, match="unknown \\(particle, material\\) 'pi\\+-W'"):
        get_family("calo-moe").config_type.model_validate(raw)
    raw["model"]["experts"] = ["gamma-W"]
    raw["loss"] = {"renormalise": True}
    with pytest.raises(ValueError, match='trains what exclusion "voxel" draws'):
        get_family("calo-moe").config_type.model_validate(raw)


def test_the_shipped_model_composes_its_modules_and_generates_for_every_absorber(tmp_path):
    from hitgen.models.io import SHIPPED

    if not (SHIPPED / "ild-ecal-moe" / "config.json").is_file():
        pytest.skip("no shipped foundation model")
    loaded = load_model("ild-ecal-moe")
    pairs = ["gamma-W", "gamma-Ta", "gamma-Pb", "e--W", "e--Ta", "e--Pb"]
    assert [m["name"] for m in loaded.config["modules"]] == ["gamma-Pb", "e-", "e--Ta", "e--Pb", *(f"total-{p}" for p in pairs)]
    for particle, absorber in (("gamma", "W"), ("gamma", "Ta"), ("gamma", "Pb"), ("e-", "W"), ("e-", "Ta"), ("e-", "Pb")):
        options = {"particle": particle, "energy_range": (1.0, 1.5)}  # short showers: a short test
        out = generate_file("ild-ecal-moe", tmp_path / f"{particle}_{absorber}.h5", options=options, n_events=3, settings={"absorber": absorber})
        events = EventSet.read(out.path)
        visible = events.hits["energy"].sum() / events.n_events
        # Geant4, 1-1.5 GeV photons and electrons in W, Ta, Pb: 16-72 MeV visible (seeds 6001, 6002, 8102-8113); within a factor 2
        assert events.detector_spec["absorber"] == absorber and 8 < visible < 145, (particle, absorber, visible)
