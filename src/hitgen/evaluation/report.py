"""The evaluation report: one self-contained HTML page (plots embedded), from a Jinja2 template."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

SUMMARY_ROWS = [  # (key in metrics.json, label, format, the CLAS12 paper's value)
    ("table2.shower_position_w1_strips", "shower position W1 (strips)", "{:.3f}", "0.12"),
    ("table2.hits_per_event_w1", "hits per event W1", "{:.3f}", "0.27"),
    ("table2.per_hit_log10_adc_w1", "per-hit log10(ADC) W1", "{:.4f}", "0.017"),
    ("table2.energy_scale_ratio", "energy scale (mean response ratio)", "{:.4f}", "within 1-2%"),
    ("table2.energy_scale_max_dev", "energy scale, largest |ratio - 1|", "{:.4f}", ""),
    ("occupancy_max_abs_diff", "largest layer-occupancy difference", "{:.4f}", ""),
    ("classifier_auc", "classifier ROC AUC", "{:.3f}", ""),
]


def get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
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


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    env = Environment(loader=PackageLoader("hitgen.evaluation", "templates"), autoescape=select_autoescape(["html", "j2"]))
    floor = metrics["noise_floor"]
    rows = [
        {"name": label, "value": fmt_value(fmt, get(metrics, key)), "floor": fmt_value(fmt, get(floor, key)), "paper": paper}
        for key, label, fmt, paper in SUMMARY_ROWS
    ]
    layers = metrics["per_layer"]
    layer_rows = [
        {
            "name": name,
            "occ_ref": f"{layers['occupancy_reference'][i]:.4f}",
            "occ_cand": f"{layers['occupancy_candidate'][i]:.4f}",
            "hits_ref": f"{layers['hits_reference'][i]:.2f}",
            "hits_cand": f"{layers['hits_candidate'][i]:.2f}",
            "w1_strip": fmt_value("{:.3f}", layers["shower_position_w1_strips"][i]),
            "w1_adc": fmt_value("{:.4f}", layers["per_hit_log10_adc_w1"][i]),
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
            "mean_ref": fmt_value("{:.4g}", resp["mean_reference"][i]),
            "mean_cand": fmt_value("{:.4g}", resp["mean_candidate"][i]),
            "ratio": fmt_value("{:.4f}", resp["ratio"][i]),
        }
        for i in range(len(edges) - 1)
    ]
    embedded = [{"caption": caption, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for caption, p in figures]
    html = env.get_template("report.html.j2").render(
        m=metrics, made_in=made_in, rows=rows, layer_rows=layer_rows, response_rows=response_rows, figures=embedded
    )
    path.write_text(html, encoding="utf-8")
    return path
