"""The model report's data: verdict, per-feature drift and distributions, history.

:func:`model_report` gathers it as plain JSON data (what ``format=json`` answers and
the HTML template renders): the verdict and recommendation of the period's latest
drift check, every feature with its methods' scores and p-values (drifted features
first, then by their largest statistic), the reference and current distribution of
each feature, the drift and performance history, the data-quality findings, and the
versions, transitions, rollouts, experiments and alerts of the period.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from ...errors import NotFound
from ..core.config import Config
from ..core.store import Store
from ..ingest.interfaces import WindowSource
from ..profiles.profile import Profile
from .history import History
from .period import Period, iso

__all__ = ["RECOMMENDATION_TEXT", "distributions", "model_report"]

logger = logging.getLogger(__name__)

RECOMMENDATION_TEXT = {
    "NO_ACTION_NEEDED": "No action needed: no feature has drifted beyond its threshold.",
    "RETRAIN_SOON": "Retrain soon: some features have drifted.",
    "RETRAIN_IMMEDIATELY": "Retrain now: the drift is large or reaches the prediction or target.",
}


async def known_model(config: Config, history: History, model: str) -> None:
    """NotFound unless ``model`` is configured or has a registered version."""
    if config.model(model) is None and model not in await history.model_names():
        known = sorted({m.name for m in config.models} | set(await history.model_names()))
        raise NotFound(f"model {model!r} is neither configured nor registered (known: {known})")


def _feature_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    sections = {name: (name, drift) for name, drift in (report.get("feature_drifts") or {}).items()}
    prediction = report.get("prediction_drift")
    if prediction:
        column = prediction.get("column", "prediction")
        sections[f"{column} (prediction)"] = (column, prediction)
    for name, (column, drift) in sections.items():
        methods = [
            {"method": method, **score} for method, score in (drift.get("methods") or {}).items()
        ]
        ratio = max(
            (m["statistic"] / m["threshold"] for m in methods if m.get("threshold")),
            default=0.0,
        )
        rows.append(
            {
                "name": name,
                "column": column,
                "kind": drift.get("kind", ""),
                "drifted": bool(drift.get("drifted")),
                "methods": methods,
                "score": ratio,
                "error": drift.get("error"),
            }
        )
    rows.sort(key=lambda r: (not r["drifted"], -r["score"], r["name"]))
    return rows


def distributions(reference: Profile, current: Profile) -> dict[str, dict[str, Any]]:
    """Per feature, the reference and current shares over the same bins or categories."""
    out: dict[str, dict[str, Any]] = {}
    layout = reference.layout
    for i, name in enumerate(layout.numeric):
        if layout.edges is None:
            continue
        edges = np.asarray(layout.edges[i], dtype=float)
        ref = np.asarray(reference.hist[i][1:-1], dtype=float)
        cur = np.asarray(current.hist[i][1:-1], dtype=float)
        keep = np.diff(edges) > 0
        if not keep.any():
            continue
        out[name] = {
            "kind": "numeric",
            "left": edges[:-1][keep].tolist(),
            "right": edges[1:][keep].tolist(),
            "reference": _shares(ref)[keep].tolist(),
            "current": _shares(cur)[keep].tolist(),
            "reference_rows": int(reference.rows),
            "current_rows": int(current.rows),
        }
    for i, name in enumerate(layout.categorical):
        ref_data = reference._categorical_data(name, i)
        cur_data = current._categorical_data(name, i)
        labels = [*ref_data.categories[:-1], "(other)"] if ref_data.categories else []
        out[name] = {
            "kind": "categorical",
            "categories": list(labels),
            "reference": _shares(np.asarray(ref_data.counts, float)).tolist(),
            "current": _shares(np.asarray(cur_data.counts, float)).tolist(),
            "reference_rows": int(reference.rows),
            "current_rows": int(current.rows),
        }
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


async def _distributions(
    windows: WindowSource, model: str, since: float, until: float
) -> tuple[dict[str, dict[str, Any]], str]:
    """The distributions of the window [since, until) against the reference, and why
    there are none when there are none."""
    if model not in windows.watched():
        return {}, f"model {model!r} has no reference profile loaded"
    state = await windows.watched_model(model)
    if state.reference is None:
        return {}, f"no reference profile ({state.reference_status})"
    current = await windows.window(model, since, until)
    if current.rows == 0:
        return {}, f"no predictions between {iso(since)} and {iso(until)}"
    reference = state.reference.profile
    data = await asyncio.to_thread(distributions, reference, current)
    return data, ""


async def model_report(
    config: Config, store: Store, windows: WindowSource, model: str, period: Period, now: float
) -> dict[str, Any]:
    """The model report of ``model`` over ``period`` as JSON data (see module docstring)."""
    history = History(store, period)
    await known_model(config, history, model)
    drift = await history.drift_reports(model)
    checked = [r for r in drift if r.get("status", "ok") == "ok"]
    latest = checked[-1] if checked else (drift[-1] if drift else None)
    performance = await history.performance(model)
    versions = await history.versions([model])
    transitions = await history.transitions([model])
    rollouts = await history.rollouts([model])
    experiments = await history.experiments([model])
    alerts = await history.alerts([model])
    verdict: dict[str, Any] | None = None
    features: list[dict[str, Any]] = []
    dists: dict[str, dict[str, Any]] = {}
    dist_note = ""
    if latest is not None:
        verdict = {
            "checked_at": latest.get("checked_at"),
            "checked_at_iso": iso(latest.get("checked_at")),
            "status": latest.get("status", "ok"),
            "message": latest.get("message"),
            "drift_detected": bool(latest.get("drift_detected")),
            "drift_score": latest.get("drift_score"),
            "threshold": latest.get("threshold"),
            "recommendation": latest.get("recommendation", "NO_ACTION_NEEDED"),
            "recommendation_text": RECOMMENDATION_TEXT.get(
                latest.get("recommendation", ""), latest.get("recommendation", "")
            ),
            "drifted_features": latest.get("drifted_features") or [],
            "rows": latest.get("rows"),
            "window": latest.get("window"),
        }
        features = _feature_rows(latest)
        window = latest.get("window") or {}
        since = window.get("start", latest["checked_at"] - config.monitoring.window_hours * 3600)
        until = window.get("end", latest["checked_at"])
        try:
            dists, dist_note = await _distributions(windows, model, since, until)
        except Exception as exc:  # the report still says what it can
            logger.warning("distributions of %s: %s", model, exc)
            dist_note = f"distributions unavailable: {exc}"
    for feature in features:
        feature["distribution"] = dists.get(feature["column"])
    sections = {
        "drift checks": drift, "performance windows": performance, "versions": versions,
        "transitions": transitions, "rollouts": rollouts, "experiments": experiments,
        "alerts": alerts,
    }  # fmt: skip
    empty = not any(sections.values())
    model_config = config.model(model)
    return {
        "kind": "model",
        "model": model,
        "period": period.to_dict(),
        "generated_at": now,
        "generated_at_iso": iso(now),
        "empty": empty,
        "message": (
            f"no data for model {model!r} between {iso(period.since)} and {iso(period.until)}: "
            "no drift checks, performance windows, versions, rollouts, experiments or alerts"
            if empty
            else ("no drift check in the period" if latest is None else "")
        ),
        "verdict": verdict,
        "features": features,
        "distributions_note": dist_note,
        "drift_history": [
            {
                "id": r.get("id"),
                "ts": r.get("checked_at"),
                "drift_score": r.get("drift_score"),
                "drift_detected": bool(r.get("drift_detected")),
                "recommendation": r.get("recommendation"),
                "status": r.get("status", "ok"),
                "drifted_features": r.get("drifted_features") or [],
            }
            for r in drift
        ],
        "data_quality": (latest or {}).get("data_quality") or {},
        "performance": {
            "metric": (model_config.performance_metric if model_config else "") or "",
            "history": performance,
            "state": await history.performance_state(model),
            "trading": bool(model_config and model_config.trading),
        },
        "versions": versions,
        "transitions": transitions,
        "rollouts": rollouts,
        "experiments": experiments,
        "alerts": alerts,
    }
