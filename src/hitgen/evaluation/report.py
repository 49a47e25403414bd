"""The evaluation report: one self-contained HTML page (plots embedded), rendered from the
detector's own Jinja2 template; and the small formatting helpers every detector's tables share."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from hitgen.core.atomic import write_text_atomic


def get(d: dict[str, Any], dotted: str) -> Any:
    """d["a"]["b"] for "a.b"; None where a key is missing (metrics written before it was measured)."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def fmt_value(fmt: str, value: Any) -> str:
    return "n/a" if value is None or value != value else fmt.format(value)


def made_in(timing: dict[str, Any] | None) -> str:
    """'12.3 s, 812 events/s (2 workers, AMD EPYC ...)' from an event file's timing note; '' when absent."""
    if not timing:
        return ""
    how = [f"{timing['workers']} workers" if "workers" in timing else "", timing.get("device", ""), timing.get("machine", {}).get("cpu", "")]
    if timing.get("machine", {}).get("gpu"):
        how[-1] = timing["machine"]["gpu"]
    where = ", ".join(h for h in how if h)
    return f"{timing['seconds']:.1f} s, {timing['events_per_s']:.1f} events/s" + (f" ({where})" if where else "")


def embed(figures: list[tuple[str, Path]]) -> list[dict[str, str]]:
    return [{"caption": caption, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for caption, p in figures]


def render_template(package: str, template: str, path: Path, metrics: dict[str, Any], figures: list[tuple[str, Path]], **context: Any) -> Path:
    """Render ``template`` of ``package`` (a detector's folder) with the metrics, the embedded figures
    and the detector's own rows, and write it atomically to ``path``."""
    env = Environment(loader=PackageLoader(package, ""), autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template(template).render(m=metrics, made_in=made_in, figures=embed(figures), **context)
    return write_text_atomic(path, html)
