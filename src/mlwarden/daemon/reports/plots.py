"""The report's plots: plotly figures as HTML fragments (the library's JavaScript is
embedded once per file by the template, so each fragment leaves it out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

__all__ = [
    "distribution_plot",
    "drift_history_plot",
    "experiment_plots",
    "performance_plot",
    "plotly_js",
]

_REFERENCE, _CURRENT = "#4c78a8", "#e45756"
_LAYOUT: dict[str, Any] = {
    "margin": {"l": 50, "r": 20, "t": 36, "b": 40},
    "height": 280,
    "template": "plotly_white",
    "legend": {"orientation": "h", "y": -0.2},
}


def plotly_js() -> str:
    """plotly.js itself, to embed once in a self-contained file."""
    return get_plotlyjs()


def _html(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(**_LAYOUT)
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displayModeBar": False, "responsive": True},
        )
    )


def _times(values: Sequence[float | None]) -> list[datetime | None]:
    return [datetime.fromtimestamp(v, UTC) if v is not None else None for v in values]


def distribution_plot(name: str, dist: dict[str, Any], div_id: str) -> str:
    """Reference against current: a histogram (bars over the reference's bins, as
    densities) for a number, bars of shares for a category."""
    fig = go.Figure()
    if dist["kind"] == "numeric":
        left, right = dist["left"], dist["right"]
        widths = [r - low for low, r in zip(left, right, strict=True)]
        centers = [low + w / 2 for low, w in zip(left, widths, strict=True)]
        for label, key, color in (("reference", "reference", _REFERENCE),
                                  ("current", "current", _CURRENT)):  # fmt: skip
            density = [s / w for s, w in zip(dist[key], widths, strict=True)]
            fig.add_bar(x=centers, y=density, width=widths, name=label, marker_color=color,
                        opacity=0.55)  # fmt: skip
        fig.update_layout(barmode="overlay", bargap=0, yaxis_title="density")
    else:
        for label, key, color in (("reference", "reference", _REFERENCE),
                                  ("current", "current", _CURRENT)):  # fmt: skip
            fig.add_bar(x=dist["categories"], y=dist[key], name=label, marker_color=color)
        fig.update_layout(barmode="group", yaxis_title="share of rows")
    fig.update_layout(title={"text": name, "font": {"size": 13}})
    return _html(fig, div_id)


def drift_history_plot(history: list[dict[str, Any]], threshold: float | None) -> str:
    fig = go.Figure()
    ts = _times([h["ts"] for h in history])
    fig.add_scatter(x=ts, y=[h["drift_score"] for h in history], mode="lines+markers",
                    name="drift score", line_color=_CURRENT)  # fmt: skip
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dash", annotation_text="threshold")
    fig.update_layout(title={"text": "Drift score over time", "font": {"size": 13}},
                      yaxis_title="share of drifted features")  # fmt: skip
    return _html(fig, "drift-history")


def performance_plot(
    history: list[dict[str, Any]], state: list[dict[str, Any]], metric: str
) -> str:
    """Each version's metric over time with its baseline; trading metrics, when
    measured, in the same figure (one trace each)."""
    fig = go.Figure()
    names: list[str] = []
    for row in history:
        for key, value in (row.get("metrics") or {}).items():
            if isinstance(value, int | float) and key not in names and key != "samples":
                names.append(key)
    chosen: list[str] = [metric] if metric in names else names[:1]
    trading: list[str] = [n for n in ("sharpe", "max_drawdown", "win_rate") if n in names]
    for version in sorted({r["version"] for r in history}):
        rows = [r for r in history if r["version"] == version]
        for key in dict.fromkeys(chosen + trading):
            values = [_number((r.get("metrics") or {}).get(key)) for r in rows]
            fig.add_scatter(x=_times([r["ts"] for r in rows]), y=values,
                            mode="lines+markers", name=f"{key} ({version})")  # fmt: skip
    for s in state:
        fig.add_hline(y=s["baseline"], line_dash="dot",
                      annotation_text=f"baseline {s['metric']} ({s['version']})")  # fmt: skip
    fig.update_layout(title={"text": "Performance over time", "font": {"size": 13}})
    return _html(fig, "performance")


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def experiment_plots(path: list[dict[str, Any]], alpha: float | None) -> dict[str, str]:
    ts = _times([p["ts"] for p in path])
    p_fig = go.Figure()
    p_fig.add_scatter(x=ts, y=[p["p_value"] for p in path], mode="lines+markers",
                      name="p-value", line_color=_CURRENT)  # fmt: skip
    if alpha is not None:
        p_fig.add_hline(y=alpha, line_dash="dash", annotation_text="significance threshold")
    p_fig.update_layout(title={"text": "Sequential p-value over time", "font": {"size": 13}},
                        yaxis_type="log")  # fmt: skip
    lift_fig = go.Figure()
    lifts = [p["lift"] for p in path]
    lows = [(p["lift_interval"] or [None, None])[0] for p in path]
    highs = [(p["lift_interval"] or [None, None])[1] for p in path]
    lift_fig.add_scatter(
        x=ts, y=lifts, mode="lines+markers", name="lift of B over A",
        error_y={"type": "data", "symmetric": False,
                 "array": [h - v if h is not None and v is not None else None
                           for h, v in zip(highs, lifts, strict=True)],
                 "arrayminus": [v - lo if lo is not None and v is not None else None
                                for lo, v in zip(lows, lifts, strict=True)]},
    )  # fmt: skip
    lift_fig.add_hline(y=0, line_dash="dot")
    lift_fig.update_layout(
        title={"text": "Lift with its confidence interval", "font": {"size": 13}}
    )
    samples = go.Figure()
    samples.add_scatter(x=ts, y=[p["samples_a"] for p in path], name="arm A", mode="lines")
    samples.add_scatter(x=ts, y=[p["samples_b"] for p in path], name="arm B", mode="lines")
    samples.update_layout(title={"text": "Samples per arm", "font": {"size": 13}})
    return {
        "p_value": _html(p_fig, "p-value-path"),
        "lift": _html(lift_fig, "lift"),
        "samples": _html(samples, "samples"),
    }
