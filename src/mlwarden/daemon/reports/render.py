"""Reports as self-contained HTML: Jinja2 templates (package data under templates/),
plotly figures, and plotly.js embedded once per file, so the file opens offline."""

from __future__ import annotations

import functools
import json
from typing import Any

import jinja2
from markupsafe import Markup

from .period import iso
from .plots import (
    distribution_plot,
    drift_history_plot,
    experiment_plots,
    performance_plot,
    plotly_js,
)

__all__ = ["render_html"]


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlwarden.daemon.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = iso
    env.filters["num"] = _num
    env.filters["weights"] = _weights
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
    return env


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _weights(table: Any) -> str:
    """A traffic table as ``1.1.0 10% / 1.0.0 90%`` (``none`` when nothing is routed)."""
    if not isinstance(table, dict) or not table:
        return "none"
    return " / ".join(f"{version} {weight * 100:.4g}%" for version, weight in table.items())


def render_html(data: dict[str, Any]) -> str:
    """The report ``data`` (a model, experiment or compliance report) as one HTML file.

    Blocking (plotly builds its figures, Jinja2 renders): call it in a thread.
    """
    kind = data["kind"]
    plots: dict[str, Any] = dict.fromkeys(
        ("drift_history", "performance", "p_value", "lift", "samples"), ""
    )
    plots["features"] = {}
    if kind == "model":
        plots["features"] = {
            f["name"]: Markup(distribution_plot(f["name"], f["distribution"], f"dist-{i}"))
            for i, f in enumerate(data["features"])
            if f.get("distribution")
        }
        if data["drift_history"]:
            threshold = (data["verdict"] or {}).get("threshold")
            plots["drift_history"] = Markup(drift_history_plot(data["drift_history"], threshold))
        perf = data["performance"]
        if perf["history"]:
            plots["performance"] = Markup(
                performance_plot(perf["history"], perf["state"], perf["metric"])
            )
    elif kind == "experiment" and data["path"]:
        figures = experiment_plots(data["path"], data["significance_threshold"])
        plots.update({k: Markup(v) for k, v in figures.items()})
    template = _environment().get_template(f"{kind}.html.j2")
    has_plots = any(plots.values())
    return template.render(
        report=data, plots=plots, plotly_js=Markup(plotly_js()) if has_plots else ""
    )
