"""Shipping a trained model: copy its files into models/<name>/ with its evaluation and a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

from hitgen.errors import HitgenError
from hitgen.evaluation.report import summary_tables
from hitgen.models.io import load_model


def _markdown_tables(metrics: dict[str, Any]) -> str:
    """The evaluation's headline tables (as `hitgen evaluate` prints them) in Markdown."""
    out = []
    for title, columns, rows in summary_tables(metrics):
        out.append(f"{title[0].upper()}{title[1:]}:\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def ship(run: Path, dest: Path, evaluation: Path | None = None, notes: str = "") -> Path:
    """Copy config.json + model.safetensors of a finished run into dest, with the evaluation's
    metrics.json (if given) and a README.md model card written from what the files record."""
    loaded = load_model(run)  # verifies the checksum before anything is copied
    metrics = None
    if evaluation is not None:
        path = evaluation / "metrics.json"
        if not path.is_file():
            raise HitgenError(f"{evaluation}: no metrics.json (run hitgen evaluate first)")
        metrics = json.loads(path.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(run / name, dest / name)
    if metrics is not None:
        shutil.copy2(evaluation / "metrics.json", dest / "metrics.json")
    cfg = loaded.config
    env = Environment(loader=PackageLoader("hitgen.models", "templates"), autoescape=False, keep_trailing_newline=True)
    card = env.get_template("model_card.md.j2").render(
        name=dest.name,
        cfg=cfg,
        n_parameters=loaded.model.n_parameters(),
        metrics=metrics,
        tables=_markdown_tables(metrics) if metrics else "",
        notes=notes,
    )
    (dest / "README.md").write_text(card, encoding="utf-8")
    return dest
