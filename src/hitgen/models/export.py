"""`hitgen export MODEL --format onnx`: a model's trunk as an ONNX graph with a JSON manifest, and the
onnxruntime backend of `generate` and `bench` that runs the families' own samplers over that graph.

An export folder holds trunk.onnx (hitgen.nn.onnx: the prefill and the one-step decode are one graph
with the key-value cache as explicit inputs and outputs, dynamic batch) and manifest.json: the
model it came from and the sha256 of its weights, the graph's own sha256, the tokenizer, the
conditions, the graph's inputs and outputs. The embeddings, the output heads and the sampler stay in
the model folder and in PyTorch: they are the family's, a few small dense maps and the masks of the
event structure (docs/onnx.md says what a C++ caller does with them)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hitgen.core.atomic import atomic_folder
from hitgen.core.errors import HitgenError
from hitgen.detectors import get_detector
from hitgen.models.io import LoadedModel, load_model, read_json_object, sha256_of

FORMAT = "hitgen-onnx-export"
FORMAT_VERSION = 1
BACKENDS = ("torch", "onnxruntime")
GRAPH = "trunk.onnx"


def _require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise HitgenError(f"the onnx export and the onnxruntime backend need {', '.join(missing)}: pip install 'hitgen[onnx]'")


def _check_exportable(loaded: LoadedModel) -> None:
    model = loaded.model
    if hasattr(loaded.family, "onnx_graphs"):  # a family that exports graphs of its own
        return
    if not hasattr(model, "blocks") or not hasattr(model, "ln_f"):
        raise HitgenError(f"a {loaded.config['architecture']} model has no hitgen trunk (blocks and ln_f) to export")


def export_onnx(model: str | Path, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Write the export folder of `model` (a model folder or shipped name) to `out`; its manifest."""
    _require_onnx()
    from hitgen.nn.onnx import export_trunk

    loaded = load_model(model)
    _check_exportable(loaded)
    detector = get_detector(loaded.detector)
    own = getattr(loaded.family, "onnx_graphs", None)  # a family's own graphs; else the decoding trunk
    with atomic_folder(out, overwrite) as tmp:
        graphs = own(loaded.model, tmp) if own else {"trunk": {"file": GRAPH, **export_trunk(loaded.model, tmp / GRAPH)}}
        files = {g["file"] for g in graphs.values()}
        for leftover in tmp.iterdir():  # the exporter may write the weights beside the graph
            if leftover.name not in files:
                raise HitgenError(f"the ONNX exporter wrote {leftover.name} beside the graphs; expected self-contained files")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": loaded.path.name,
            "architecture": loaded.config["architecture"],
            "detector": loaded.detector,
            "weights_sha256": loaded.weights_sha256,
            "tokenizer": loaded.family.tokenizer,
            "conditions": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "unit": f.unit} for f in detector.info.condition_fields],
            "graphs": {name: {**g, "sha256": sha256_of(tmp / g["file"])} for name, g in graphs.items()},
            "usage": getattr(loaded.family, "onnx_usage", None)
            or "prefill: past of C = 0 slots; decode: t = 1; append new_k/new_v to the past at the next free slots, "
            "past_mask true at the slots not yet written (docs/onnx.md)",
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_graphs(folder: Path, loaded: LoadedModel) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every graph of an export folder, with its manifest entry, the manifest checked against the
    model and each graph against its checksum."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise HitgenError(f"{folder}: no manifest.json; not a hitgen ONNX export (hitgen export MODEL --format onnx --out DIR)")
    manifest = read_json_object(path, "hitgen ONNX export manifest")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise HitgenError(f"{path}: not a hitgen ONNX export manifest (format {FORMAT} version {FORMAT_VERSION})")
    if manifest.get("weights_sha256") != loaded.weights_sha256:
        raise HitgenError(
            f"{folder}: exported from another model (weights sha256 {str(manifest.get('weights_sha256'))[:12]}, "
            f"this model's {loaded.weights_sha256[:12]}); export this one with hitgen export"
        )
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise HitgenError(f"{path}: lists no graphs")
    out = {}
    for name, graph in graphs.items():
        try:
            file, expected = Path(folder) / graph["file"], graph["sha256"]
        except (KeyError, TypeError):
            raise HitgenError(f"{path}: lacks the {name} graph's file or sha256") from None
        if file.parent.resolve() != Path(folder).resolve() or not file.is_file():
            raise HitgenError(f"{folder}: the manifest's graph {graph['file']} is not a file of the export folder")
        if sha256_of(file) != expected:
            raise HitgenError(f"{file}: checksum differs from manifest.json; the graph was altered or is incomplete")
        out[name] = (file, graph)
    return out


def read_manifest(folder: Path, loaded: LoadedModel) -> tuple[Path, dict[str, int]]:
    """The trunk graph of an export folder and its sizes (the decoding families' export)."""
    graphs = read_graphs(folder, loaded)
    if "trunk" not in graphs:
        raise HitgenError(f"{folder}: lacks the trunk graph")
    file, graph = graphs["trunk"]
    try:
        sizes = {k: int(v) for k, v in graph["sizes"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise HitgenError(f"{Path(folder) / 'manifest.json'}: lacks the trunk graph's sizes") from None
    return file, sizes


def attach_backend(loaded: LoadedModel, backend: str, onnx_dir: Path | None, dtype: str, device: str, decoder: str) -> LoadedModel:
    """Run the model's trunk on `backend`: torch (as loaded) or onnxruntime over the graph of
    onnx_dir (or, without one, of a fresh export in a temporary folder). Checks first."""
    if backend not in BACKENDS:
        raise HitgenError(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend == "torch":
        if onnx_dir is not None:
            raise HitgenError("--onnx applies to --backend onnxruntime")
        return loaded
    _require_onnx()
    if dtype != "fp32" or device != "cpu":
        raise HitgenError(f"--backend onnxruntime runs fp32 on the CPU (got --dtype {dtype} --device {device})")
    own = getattr(loaded.family, "onnx_backend", None)
    if own is None and decoder not in ("plain", "naive"):
        raise HitgenError(f"--backend onnxruntime decodes with the plain or naive decoder (got --decoder {decoder})")
    _check_exportable(loaded)
    from hitgen.nn.onnx import OrtTrunk

    with tempfile.TemporaryDirectory(prefix="hitgen-onnx-") as tmp:  # ONNX Runtime holds the graphs once loaded
        if onnx_dir is None:
            onnx_dir = Path(tmp) / "export"
            export_onnx(loaded.path, onnx_dir)
        if own is not None:
            own(loaded.model, {name: file for name, (file, _) in read_graphs(onnx_dir, loaded).items()})
        else:
            loaded.model.trunk_backend = OrtTrunk(*read_manifest(onnx_dir, loaded))
    return loaded
