"""Shipping a trained model: copy its files into models/<name>/ with its evaluation and a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from jinja2 import Environment, PackageLoader

from hitgen.core.atomic import atomic_folder, check_new_output
from hitgen.core.errors import HitgenError
from hitgen.detectors import get_detector
from hitgen.models.io import load_model


def _markdown_tables(metrics: dict[str, Any]) -> str:
    """The evaluation's headline tables (as `hitgen evaluate` prints them) in Markdown."""
    out = []
    for title, columns, rows in get_detector(metrics["detector"]).summary_tables(metrics):
        out.append(f"{title[0].upper()}{title[1:]}:\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def _loss_weights(loaded) -> dict[str, Any]:
    """The [loss] settings the model's family has, as its training recorded them."""
    own = loaded.family.config_type.model_fields["loss"].default.model_dump()
    return {k: v for k, v in loaded.config.get("training", {}).get("loss", {}).items() if k in own}


def ship(run: Path, dest: Path, evaluation: Path | None = None, notes: str = "", overwrite: bool = False) -> Path:
    """Copy config.json + model.safetensors of a finished run into the new folder dest, with the
    evaluation's metrics.json (if given) and a README.md model card written from what the files
    record. An existing dest is replaced only with overwrite; dest appears when it is complete."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise HitgenError(f"{dest.parent}: cannot create the models folder ({e.strerror or e})") from None
    check_new_output(dest, overwrite, "model folder", folder=True)
    loaded = load_model(run)  # verifies the checksum before anything is copied
    bad = [k for k, v in loaded.model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise HitgenError(f"{run}: weight {bad[0]} (and {len(bad) - 1} more) holds non-finite values; a model like this is not shipped")
    metrics = None
    if evaluation is not None:
        path = evaluation / "metrics.json"
        if not path.is_file():
            raise HitgenError(f"{evaluation}: no metrics.json (run hitgen evaluate first)")
        try:
            metrics = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise HitgenError(f"{path}: not valid JSON") from None
        if not isinstance(metrics, dict) or "detector" not in metrics:
            raise HitgenError(f"{path}: not the metrics.json of hitgen evaluate")
    with atomic_folder(dest, overwrite) as folder:
        for name in ("config.json", "model.safetensors"):
            shutil.copy2(Path(run) / name, folder / name)
        for module in loaded.config.get("modules") or []:  # a model grown by modules (checked by load_model)
            (folder / module["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(run) / module["file"], folder / module["file"])
        if metrics is not None:
            shutil.copy2(evaluation / "metrics.json", folder / "metrics.json")
        (folder / "README.md").write_text(_card(loaded, dest.name, metrics, notes), encoding="utf-8")
    return dest


def _card(loaded, name: str, metrics: dict | None, notes: str) -> str:
    cfg = loaded.config
    detector = get_detector(loaded.detector)
    env = Environment(loader=PackageLoader("hitgen.models", "templates"), autoescape=False, keep_trailing_newline=True)
    return env.get_template("model_card.md.j2").render(
        name=name,
        cfg=cfg,
        n_parameters=loaded.model.n_parameters(),
        metrics=metrics,
        tables=_markdown_tables(metrics) if metrics else "",
        notes=notes,
        # options of simulate that the model cannot sample conditions with are not in its records
        loss_weights=_loss_weights(loaded),
        kinematics_in_notes=bool(set(o.name for o in detector.options) - set(detector.generation_options)),
    )
