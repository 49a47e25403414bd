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
    # the same classifier shown the momentum and one group of features: what gives the candidate away
    ("classifier_auc_by_group.hits", "... from hit counts only (total, per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.energy", "... from energies only (total, ADC/|p|, per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.position", "... from shower positions only (mean strip per layer)", "{:.3f}", ""),
    ("classifier_auc_by_group.spread", "... from shower widths only (strip spread per layer)", "{:.3f}", ""),
]


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


TRACKER_HIT_ROWS = [  # (key in metrics.json, label, format)
    ("hits_per_track_w1", "hits per track W1", "{:.4f}"),
    ("local_u_w1", "local u W1 (mm)", "{:.4f}"),
    ("local_v_w1", "local v W1 (mm)", "{:.4f}"),
    ("x_w1", "global x W1 (mm)", "{:.4f}"),
    ("z_w1", "global z W1 (mm)", "{:.4f}"),
    ("px_w1", "px W1 (GeV)", "{:.4f}"),
    ("py_w1", "py W1 (GeV)", "{:.4f}"),
    ("pz_w1", "pz W1 (GeV)", "{:.4f}"),
]
TRACKER_TRACKING_ROWS = [
    ("seeding_efficiency", "technical seeding efficiency", "{:.4f}"),
    ("fitting_efficiency", "technical fitting efficiency", "{:.4f}"),
    ("qop_pull_width", "q/p pull width", "{:.3f}"),
    ("phi_pull_width", "phi pull width", "{:.3f}"),
]
TRACKER_VALIDITY_ROWS = [("hits_off_their_module", "hits off their module"), ("tracks_stepping_inwards", "tracks stepping back inwards")]


def summary_tables(m: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The headline tables of an evaluation as (title, column names, rows of strings), for the CLI."""
    floor = m["noise_floor"]
    if m["detector"] == "odd-tracker":
        hits = [[label, fmt_value(fmt, m[key]), fmt_value(fmt, floor[key])] for key, label, fmt in TRACKER_HIT_ROWS]
        who = ("reference", "reference_rounded", "candidate")
        tracks = [[label, *(fmt_value(fmt, m["tracking"][key][w]) for w in who)] for key, label, fmt in TRACKER_TRACKING_ROWS]
        tables = [
            ("hits vs Geant4 rounded", ["metric", "candidate", "noise floor"], hits),
            ("track reconstruction", ["", "Geant4", "Geant4 rounded", "candidate"], tracks),
        ]
        if "validity" in m:  # evaluations before it was measured lack it
            valid = [[label, *(f"{m['validity'][key][w]:.2%}" for w in ("reference", "candidate"))] for key, label in TRACKER_VALIDITY_ROWS]
            tables.append(("what real tracks never do", ["", "Geant4 rounded", "candidate"], valid))
        return tables
    rows = [[label, fmt_value(fmt, get(m, key)), fmt_value(fmt, get(floor, key)), paper] for key, label, fmt, paper in SUMMARY_ROWS]
    return [("summary", ["metric", "candidate", "noise floor", "CLAS12 paper"], rows)]


def _environment() -> Environment:
    return Environment(loader=PackageLoader("hitgen.evaluation", "templates"), autoescape=select_autoescape(["html", "j2"]))


def _embed(figures: list[tuple[str, Path]]) -> list[dict[str, str]]:
    return [{"caption": caption, "data": base64.b64encode(p.read_bytes()).decode("ascii")} for caption, p in figures]


def render_report(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    if metrics["detector"] == "odd-tracker":
        return _render_tracker(metrics, figures, path)
    env = _environment()
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
    html = env.get_template("report.html.j2").render(
        m=metrics, made_in=made_in, rows=rows, layer_rows=layer_rows, response_rows=response_rows, figures=_embed(figures)
    )
    path.write_text(html, encoding="utf-8")
    return path


def _render_tracker(metrics: dict[str, Any], figures: list[tuple[str, Path]], path: Path) -> Path:
    floor = metrics["noise_floor"]
    rows = [{"name": label, "value": fmt_value(fmt, metrics[key]), "floor": fmt_value(fmt, floor[key])} for key, label, fmt in TRACKER_HIT_ROWS]
    tracking = [
        {"name": label, **{k: fmt_value(fmt, metrics["tracking"][key][k]) for k in ("reference", "reference_rounded", "candidate")}}
        for key, label, fmt in TRACKER_TRACKING_ROWS
    ]
    template = _environment().get_template("report_tracker.html.j2")
    html = template.render(m=metrics, made_in=made_in, rows=rows, tracking=tracking, figures=_embed(figures))
    path.write_text(html, encoding="utf-8")
    return path
