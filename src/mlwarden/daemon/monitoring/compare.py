"""Two versions of a model side by side: registered metrics and params, live performance,
drift (``GET /api/models/compare``, ``Warden.compare_models``)."""

from __future__ import annotations

from typing import Any

from ...errors import NotFound
from ..registry.interfaces import VersionRecord, VersionRecords
from .drift import MonitorService
from .performance import PerformanceService

__all__ = ["compare_versions"]


async def compare_versions(
    registry: VersionRecords,
    performance: PerformanceService,
    monitor: MonitorService,
    a: tuple[str, str],
    b: tuple[str, str],
    *,
    hours: float,
    now: float,
) -> dict[str, Any]:
    """Two versions side by side over the ``hours`` before ``now``: registered metrics,
    params diff, live performance, drift."""
    records = [await registry.get(*a), await registry.get(*b)]
    metrics = {}
    for key in sorted(set(records[0]["metrics"]) | set(records[1]["metrics"])):
        va, vb = records[0]["metrics"].get(key), records[1]["metrics"].get(key)
        diff = vb - va if va is not None and vb is not None else None
        metrics[key] = {"a": va, "b": vb, "diff": diff}
    pa, pb = records[0]["params"], records[1]["params"]
    params = {
        "changed": {
            k: {"a": pa[k], "b": pb[k]} for k in sorted(set(pa) & set(pb)) if pa[k] != pb[k]
        },
        "only_a": {k: pa[k] for k in sorted(set(pa) - set(pb))},
        "only_b": {k: pb[k] for k in sorted(set(pb) - set(pa))},
        "same": sorted(k for k in set(pa) & set(pb) if pa[k] == pb[k]),
    }
    until = now
    since = until - hours * 3600
    live: dict[str, dict[str, Any]] = {}
    drift: dict[str, dict[str, Any]] = {}
    for side, (name, version) in zip(("a", "b"), (a, b), strict=True):
        live[side] = await _performance(performance, name, version, since, until)
        drift[side] = await _drift(monitor, name, version, since, until)
    return {
        "a": _summary(records[0]),
        "b": _summary(records[1]),
        "window": {"since": since, "until": until, "hours": hours},
        "metrics": metrics,
        "params": params,
        "performance": live,
        "drift": drift,
    }


def _summary(record: VersionRecord) -> dict[str, Any]:
    keys = ("model", "version", "mlflow_version", "status", "framework", "model_uri", "created_at")
    return {k: record.get(k) for k in keys} | {"aliases": record.get("aliases", [])}


async def _performance(
    performance: PerformanceService, model: str, version: str, since: float, until: float
) -> dict[str, Any]:
    try:
        return await performance.window_metrics(model, version, since=since, until=until)
    except NotFound as exc:
        return {"available": False, "reason": str(exc)}


async def _drift(
    monitor: MonitorService, model: str, version: str, since: float, until: float
) -> dict[str, Any]:
    """Drift over the same window, from the monitor's stored reports.

    Reports of a check restricted to this version are preferred; the model-wide
    reports of the window (what the monitor loop stores) are used otherwise.
    """
    try:
        reports = await monitor.history(model, days=(until - since) / 86400)
    except Exception as exc:
        return {"available": False, "reason": str(exc)}
    reports = [r for r in reports if since <= _checked_at(r) <= until]
    own = [r for r in reports if (r.get("window") or {}).get("version") == version]
    chosen = own or [r for r in reports if not (r.get("window") or {}).get("version")]
    if not chosen:
        return {"available": False, "reason": "no drift check in the window"}
    latest = chosen[-1]
    scores = [score for r in chosen if (score := r.get("drift_score")) is not None]
    return {
        "available": True,
        "scope": "version" if own else "model",
        "checks": len(chosen),
        "drift_detected_checks": sum(1 for r in chosen if r.get("drift_detected")),
        "max_drift_score": max(scores) if scores else None,
        "latest": {
            key: latest.get(key)
            for key in ("checked_at", "drift_detected", "drift_score", "recommendation")
        },
    }


def _checked_at(report: dict[str, Any]) -> float:
    value = report.get("checked_at")
    if isinstance(value, int | float):
        return float(value)
    return float((report.get("window") or {}).get("end") or 0.0)
