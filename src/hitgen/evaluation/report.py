"""The evaluation report: one self-contained HTML page (plots embedded), from a Jinja2 template."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_ROWS = [  # (key, label, format, paper column)
    ("table2.shower_position_w1_strips", "shower position W1 (strips)", "{:.3f}", "0.12"),
    ("table2.hits_per_event_w1", "hits per event W1", "{:.3f}", "0.27"),
    ("table2.per_hit_log10_adc_w1", "per-hit log10(ADC) W1", "{:.4f}", "0.017"),
    ("table2.energy_scale_ratio", "energy scale (mean cand/ref over |p| bins)", "{:.4f}", "within 1-2%"),
    ("table2.energy_scale_max_dev", "energy scale, largest |ratio - 1|", "{:.4f}", ""),
    ("occupancy_max_abs_diff", "largest layer-occupancy difference", "{:.4f}", ""),
    ("classifier_auc", "classifier ROC AUC", "{:.3f}", ""),
]


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _fmt(fmt: str, value: Any) -> str:
    return "n/a" if value is None or value != value else fmt.format(value)


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    env = Environment(loader=PackageLoader("hitgen.evaluation", "templates"), autoescape=select_autoescape(["html", "j2"]))
    floor = metrics["noise_floor"]
    rows = [
        {"name": label, "value": _fmt(fmt, _get(metrics, key)), "floor": _fmt(fmt, _get(floor, key)), "paper": paper}
        for key, label, fmt, paper in _ROWS
    ]
    layers = metrics["per_layer"]
    layer_rows = [
        {
            "name": name,
            "occ_ref": f"{layers['occupancy_reference'][i]:.4f}",
            "occ_cand": f"{layers['occupancy_candidate'][i]:.4f}",
            "hits_ref": f"{layers['hits_reference'][i]:.2f}",
            "hits_cand": f"{layers['hits_candidate'][i]:.2f}",
            "w1_strip": _fmt("{:.3f}", layers["shower_position_w1_strips"][i]),
            "w1_adc": _fmt("{:.4f}", layers["per_hit_log10_adc_w1"][i]),
        }
        for i, name in enumerate(layers["names"])
    ]
    resp = metrics["energy_response"]
    edges = resp["edges"]
    response_rows = [
        {
            "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
            "n_ref": resp["n_reference"][i],
            "n_cand": resp["n_candidate"][i],
            "mean_ref": _fmt("{:.4g}", resp["mean_reference"][i]),
            "mean_cand": _fmt("{:.4g}", resp["mean_candidate"][i]),
            "ratio": _fmt("{:.4f}", resp["ratio"][i]),
        }
        for i in range(len(edges) - 1)
    ]
    embedded = [{"caption": caption, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for caption, p in figures]
    html = env.get_template("report.html.j2").render(m=metrics, rows=rows, layer_rows=layer_rows, response_rows=response_rows, figures=embedded)
    path.write_text(html, encoding="utf-8")
    return path
