"""Promote, roll back and compare model versions.

Until the rollout controller takes them over, ``promote`` and ``rollback`` are a direct
switch of the champion: the version enters ``production`` (the ``champion`` alias
follows) and the version that held production is deprecated.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidInput, NotFound
from .semver import parse_semver
from .status import Status

if TYPE_CHECKING:
    from ..warden import Warden

__all__ = ["compare_versions", "parse_ref", "promote", "rollback"]

logger = logging.getLogger(__name__)


async def promote(
    warden: Warden, model: str, version: str, *, strategy: str | None = None, actor: str
) -> dict[str, Any]:
    """Put ``version`` in production (from validation through passing gates, or staging)."""
    registry = warden.service("registry")
    if strategy is not None and (not isinstance(strategy, str) or not strategy):
        raise InvalidInput(f"strategy: expected a strategy name, got {strategy!r}")
    record = await registry.get(model, version)
    config = warden.config.model(model)
    chosen = strategy or (config.strategy if config else "")
    rollouts: Any = warden.services.get("rollouts")
    if rollouts is not None and chosen and chosen != "direct":
        # A strategy (asked for, or the model's) hands over to the rollout controller.
        return await rollouts.start(model, version, strategy=chosen, actor=actor)
    previous = await registry.production(model)
    if record["status"] == Status.PRODUCTION:
        raise Conflict(f"model {model!r} version {version} is already in production")
    reason = f"promoted by {actor}" + (f" (strategy {strategy})" if strategy else "")
    if record["status"] == Status.VALIDATION:
        await registry.transition(model, version, Status.STAGING, actor=actor, reason=reason)
    record = await registry.transition(
        model, version, Status.PRODUCTION, actor=actor, reason=reason
    )
    return {
        "model": model,
        "version": version,
        "strategy": "direct",
        "requested_strategy": strategy,
        "previous_version": previous["version"] if previous else None,
        "record": record,
    }


async def rollback(
    warden: Warden, model: str, version: str | None = None, *, actor: str
) -> dict[str, Any]:
    """Restore the previous production version (or ``version``); the current one is deprecated."""
    rollouts: Any = warden.services.get("rollouts")
    if rollouts is not None and model in rollouts.active:
        # An active rollout rolls back to its baseline (the fast path, no analysis).
        return await rollouts.rollback(model, version=version, actor=actor)
    registry = warden.service("registry")
    current = await registry.production(model)
    target = version if version is not None else await registry.rollback_target(model)
    if target is None:
        raise Conflict(f"model {model!r} has no previous production version to roll back to")
    record = await registry.get(model, target)
    if current is not None and current["version"] == target:
        raise Conflict(f"model {model!r} version {target} is already in production")
    if record["status"] != Status.DEPRECATED:
        raise Conflict(
            f"model {model!r} version {target} is {record['status']}: only a deprecated former "
            "production version can be rolled back to"
        )
    reason = f"rolled back by {actor}" + (f" from {current['version']}" if current else "")
    record = await registry.transition(model, target, Status.PRODUCTION, actor=actor, reason=reason)
    return {
        "model": model,
        "version": target,
        "previous_version": current["version"] if current else None,
        "record": record,
    }


def parse_ref(text: Any, where: str) -> tuple[str, str]:
    """``name@version`` -> (name, version); InvalidInput names the query parameter."""
    if not isinstance(text, str) or "@" not in text:
        raise InvalidInput(f"{where}: expected NAME@VERSION such as 'btc@1.2.0', got {text!r}")
    name, _, version = text.rpartition("@")
    if not name:
        raise InvalidInput(f"{where}: expected NAME@VERSION, the name is empty")
    parse_semver(version, where)
    return name, version


async def compare_versions(
    warden: Warden, a: tuple[str, str], b: tuple[str, str], *, hours: float | None = None
) -> dict[str, Any]:
    """Two versions side by side: registered metrics, params diff, live performance, drift."""
    registry = warden.service("registry")
    records = [await registry.get(*a), await registry.get(*b)]
    metrics = {}
    for key in sorted(set(records[0]["metrics"]) | set(records[1]["metrics"])):
        va, vb = records[0]["metrics"].get(key), records[1]["metrics"].get(key)
        metrics[key] = {"a": va, "b": vb, "diff": (vb - va) if None not in (va, vb) else None}
    pa, pb = records[0]["params"], records[1]["params"]
    params = {
        "changed": {
            k: {"a": pa[k], "b": pb[k]} for k in sorted(set(pa) & set(pb)) if pa[k] != pb[k]
        },
        "only_a": {k: pa[k] for k in sorted(set(pa) - set(pb))},
        "only_b": {k: pb[k] for k in sorted(set(pb) - set(pa))},
        "same": sorted(k for k in set(pa) & set(pb) if pa[k] == pb[k]),
    }
    hours = warden.config.monitoring.window_hours if hours is None else hours
    until = warden.clock()
    since = until - hours * 3600
    performance: dict[str, Any] = {}
    drift: dict[str, Any] = {}
    for side, (name, version) in zip(("a", "b"), (a, b), strict=True):
        performance[side] = await _performance(warden, name, version, since, until)
        drift[side] = await _drift(warden, name, version, since, until)
    return {
        "a": _summary(records[0]),
        "b": _summary(records[1]),
        "window": {"since": since, "until": until, "hours": hours},
        "metrics": metrics,
        "params": params,
        "performance": performance,
        "drift": drift,
    }


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "version", "mlflow_version", "status", "framework", "model_uri", "created_at")
    return {k: record.get(k) for k in keys} | {"aliases": record.get("aliases", [])}


async def _performance(
    warden: Warden, model: str, version: str, since: float, until: float
) -> dict[str, Any]:
    performance: Any = warden.services.get("performance")
    if performance is None:
        return {"available": False, "reason": "the performance service is not running"}
    try:
        return await performance.window_metrics(model, version, since=since, until=until)
    except NotFound as exc:
        return {"available": False, "reason": str(exc)}


async def _drift(
    warden: Warden, model: str, version: str, since: float, until: float
) -> dict[str, Any]:
    """Drift over the same window, from the monitor's stored reports.

    Reports of a check restricted to this version are preferred; the model-wide
    reports of the window (what the monitor loop stores) are used otherwise.
    """
    monitor: Any = warden.services.get("monitor")
    if monitor is None or not hasattr(monitor, "history"):
        return {"available": False, "reason": "the drift monitor is not running"}
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
    scores = [r.get("drift_score") for r in chosen if r.get("drift_score") is not None]
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
