"""Performance monitoring: metrics of every model version from its joined outcomes.

Every ``monitoring.interval_seconds`` (and on demand, ``evaluate``), for each configured
model, the outcomes of the last ``monitoring.window_hours`` (joined prediction/label
pairs, from the ingest service) are split by version and measured (see
``mlwarden.stats.metrics``). Each measurement is persisted (the performance history), exported as
``mlwarden_model_metric{model, version, metric}``, and held against the version's
baseline on the model's watched metric (``performance_metric``; default ``sharpe`` for
trading models, ``accuracy`` for classification, ``mse`` for regression):

- the baseline is the version's registered metric of that name when the registry has
  one, otherwise the first window with at least ``monitoring.min_performance_samples``
  outcomes; it is persisted and does not move afterwards;
- the *fall* is how much worse the window is than the baseline, as a fraction of the
  baseline (``gates.relative_worsening``: higher-is-better metrics fall when they
  drop, lower-is-better ones when they rise);
- a fall above ``monitoring.performance_threshold`` raises ``performance_degraded``
  once; ``performance_recovered`` is raised once when the fall is back to at most half
  the threshold (hysteresis: a value hovering at the threshold does not flap).
  Windows with fewer outcomes than the minimum are recorded but not judged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

from ...errors import InvalidInput, NotFound
from ...stats.metrics import compute_metrics, higher_is_better, relative_worsening
from ...types import Event, Outcomes, OutcomeSource, Severity
from ..core.config import ModelConfig
from ..core.context import Context
from ..core.leases import LeaseLost, fence, holding
from ..core.service import Service
from ..core.store import Schema, create_tables, insert_ignore
from ..registry.interfaces import VersionRecords

__all__ = ["PerformanceService", "history_table", "watched_metric"]

logger = logging.getLogger(__name__)

_meta = sa.MetaData()
history_table = sa.Table(
    "performance_history",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("until", sa.Float, nullable=False),
    sa.Column("samples", sa.Integer, nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Index("ix_performance_history_model_ts", "model", "ts"),
)
state_table = sa.Table(
    "performance_state",
    _meta,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("baseline", sa.Float, nullable=False),
    sa.Column("baseline_source", sa.String(32), nullable=False),
    sa.Column("degraded", sa.Boolean, nullable=False, default=False),
    sa.Column("last_value", sa.Float),
    sa.Column("last_fall", sa.Float),
    sa.Column("changed_at", sa.Float, nullable=False),
)
PERFORMANCE_SCHEMA = Schema("performance", [create_tables(history_table, state_table)])


def watched_metric(config: ModelConfig) -> str:
    """The metric a model's degradation is judged on."""
    if config.performance_metric:
        return config.performance_metric
    if config.trading:
        return "sharpe"
    return "accuracy" if config.task == "classification" else "mse"


class PerformanceService(Service):
    """Measures each version's performance, keeps its history, raises degradations."""

    name = "performance"
    schema = PERFORMANCE_SCHEMA

    def __init__(
        self, context: Context, *, outcomes: OutcomeSource, registry: VersionRecords
    ) -> None:
        super().__init__(context)
        self.outcomes = outcomes
        self.registry = registry
        self._lock = asyncio.Lock()
        self.last_run: float | None = None

    async def start(self) -> None:
        self.context.spawn(self._loop(), name="performance-loop")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.context.config.monitoring.interval_seconds)
            try:
                await self.purge()
                owned = await self.context.cluster.models()
            except Exception as exc:  # the store is away: evaluate nothing this round
                self.context.failed(logger, exc, "model leases", "cannot take the model leases")
                continue
            for model in self.context.config.models:
                lease = owned.get(model.name)
                if lease is None:  # another daemon evaluates it
                    continue
                try:
                    with holding(lease):
                        await self.evaluate(model.name)
                except LeaseLost as exc:
                    logger.info("performance of %s not stored: %s", model.name, exc)
                except NotFound as exc:
                    logger.debug("performance of %s not evaluated: %s", model.name, exc)
                except Exception as exc:
                    where, name = f"performance {model.name}", model.name
                    self.context.failed(
                        logger, exc, where, "performance evaluation of %s failed", name
                    )

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "last_run": self.last_run}

    def _model_config(self, model: str) -> ModelConfig:
        config = self.context.config.model(model)
        if config is None:
            raise NotFound(f"model {model!r} is not configured ([[models]])")
        return config

    # -- measurement -------------------------------------------------------------------

    async def window_metrics(
        self, model: str, version: str, *, since: float, until: float
    ) -> dict[str, Any]:
        """Every metric of one version over ``[since, until)`` (nothing persisted)."""
        config = self._model_config(model)
        outcomes = await self.outcomes.outcomes(model, version=version, since=since, until=until)
        return await asyncio.to_thread(self._compute, config, outcomes, until - since)

    def _compute(self, config: ModelConfig, outcomes: Outcomes, seconds: float) -> dict[str, Any]:
        return compute_metrics(
            outcomes,
            task=config.task,
            trading=config.trading,
            positive_label=config.positive_label,
            window_seconds=seconds,
        )

    async def evaluate(self, model: str, *, now: float | None = None) -> list[dict[str, Any]]:
        """Measure every version of ``model`` over the window ending ``now``; judge each."""
        config = self._model_config(model)
        until = self.context.clock() if now is None else now
        since = until - self.context.config.monitoring.window_hours * 3600
        outcomes = await self.outcomes.outcomes(model, since=since, until=until)
        results = []
        async with self._lock:
            for version in sorted(set(np.asarray(outcomes.version).tolist())):
                mask = np.asarray(outcomes.version) == version
                subset = _selected(outcomes, mask)
                metrics = await asyncio.to_thread(self._compute, config, subset, until - since)
                results.append(
                    await self._record(model, str(version), config, metrics, since, until)
                )
        self.last_run = until
        return results

    async def _record(
        self,
        model: str,
        version: str,
        config: ModelConfig,
        metrics: Mapping[str, Any],
        since: float,
        until: float,
    ) -> dict[str, Any]:
        clean: dict[str, float] = {
            k: v for k, v in metrics.items() if v is not None and math.isfinite(v)
        }
        async with self.context.store.begin() as conn:
            await fence(conn)  # the loop's evaluation: only while this daemon owns the model
            await conn.execute(
                history_table.insert(),
                {
                    "model": model,
                    "version": version,
                    "ts": until,
                    "since": since,
                    "until": until,
                    "samples": int(metrics.get("samples", 0)),
                    "metrics": json.dumps(clean, sort_keys=True),
                },
            )
        for key, value in clean.items():
            if key != "samples":
                self.context.metrics.model_metric.labels(model, version, key).set(value)
        judgement = await self._judge(model, version, config, clean, until)
        return {
            "model": model,
            "version": version,
            "since": since,
            "until": until,
            "metrics": clean,
            **judgement,
        }

    async def _judge(
        self,
        model: str,
        version: str,
        config: ModelConfig,
        metrics: Mapping[str, float],
        now: float,
    ) -> dict[str, Any]:
        metric = watched_metric(config)
        minimum = self.context.config.monitoring.min_performance_samples
        value = metrics.get(metric)
        if value is None or metrics.get("samples", 0) < minimum:
            return {"judged": False, "metric": metric}
        state = await self._state(model, version)
        if state is None:
            baseline, source = await self._registered_baseline(model, version, metric)
            if baseline is None:
                baseline, source = value, "first_window"
            degraded = False
            async with self.context.store.begin() as conn:
                await fence(conn)
                # A concurrent daemon may have set the baseline first: its row stays.
                await conn.execute(
                    insert_ignore(conn.dialect, state_table),
                    {
                        "model": model,
                        "version": version,
                        "metric": metric,
                        "baseline": baseline,
                        "baseline_source": source,
                        "degraded": degraded,
                        "changed_at": now,
                    },
                )
        else:
            baseline, source = float(state["baseline"]), str(state["baseline_source"])
            degraded = bool(state["degraded"])
        threshold = self.context.config.monitoring.performance_threshold
        extra = set(config.gates.get("higher_is_better", ())) if config.gates else set()
        fall = relative_worsening(value, baseline, higher_is_better(metric, extra))
        kind = None
        if not degraded and fall > threshold:
            degraded, kind = True, "performance_degraded"
        elif degraded and fall <= threshold / 2:
            degraded, kind = False, "performance_recovered"
        values = {"last_value": value, "last_fall": fall, "degraded": degraded}
        if kind:
            values["changed_at"] = now
        async with self.context.store.begin() as conn:
            await fence(conn)
            await conn.execute(
                state_table.update()
                .where(state_table.c.model == model, state_table.c.version == version)
                .values(**values)
            )
        data = {
            "metric": metric,
            "value": value,
            "baseline": baseline,
            "baseline_source": source,
            "fall": fall,
            "threshold": threshold,
            "samples": metrics.get("samples"),
        }
        if kind:
            await self.context.emit(
                Event(
                    kind=kind,
                    model=model,
                    version=version,
                    severity=Severity.WARNING if degraded else Severity.INFO,
                    message=(
                        f"{metric} {value:.6g} vs baseline {baseline:.6g}: "
                        f"{fall:+.1%} ({'above' if degraded else 'back within'} "
                        f"the {threshold:.0%} threshold)"
                    ),
                    data=data,
                )
            )
        return {"judged": True, "degraded": degraded, "event": kind, **data}

    async def _registered_baseline(
        self, model: str, version: str, metric: str
    ) -> tuple[float | None, str]:
        try:
            record = await self.registry.get(model, version)
        except NotFound:
            return None, ""
        value = (record.get("metrics") or {}).get(metric)
        return (float(value), "registered") if value is not None else (None, "")

    async def _state(self, model: str, version: str) -> sa.RowMapping | None:
        """The persisted judgement of one version (baseline, degraded), if any."""
        query = sa.select(state_table).where(
            state_table.c.model == model, state_table.c.version == version
        )
        async with self.context.store.connect() as conn:
            return (await conn.execute(query)).mappings().first()

    # -- history -----------------------------------------------------------------------

    async def purge(self) -> int:
        """Drop history older than ``monitoring.retention_days``; the number of rows."""
        cutoff = self.context.clock() - self.context.config.monitoring.retention_days * 86400
        async with self.context.store.begin() as conn:
            result = await conn.execute(history_table.delete().where(history_table.c.ts < cutoff))
        return int(result.rowcount or 0)

    async def history(self, model: str, days: float = 30.0) -> dict[str, Any]:
        """Measured windows of ``model`` over the last ``days``, oldest first, and state."""
        if isinstance(days, bool) or not isinstance(days, int | float) or not days >= 0:
            raise InvalidInput(f"days: expected a number >= 0, got {days!r}")
        if self.context.config.model(model) is None and not await self.registry.versions(model):
            raise NotFound(f"model {model!r} is neither configured nor registered")
        since = self.context.clock() - days * 86400
        async with self.context.store.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(history_table)
                        .where(history_table.c.model == model, history_table.c.ts >= since)
                        .order_by(history_table.c.ts, history_table.c.id)
                    )
                )
                .mappings()
                .all()
            )
            states = (
                (await conn.execute(sa.select(state_table).where(state_table.c.model == model)))
                .mappings()
                .all()
            )
        return {
            "model": model,
            "days": days,
            "history": [
                {
                    "version": r["version"],
                    "ts": r["ts"],
                    "since": r["since"],
                    "until": r["until"],
                    "samples": r["samples"],
                    "metrics": json.loads(r["metrics"]),
                }
                for r in rows
            ],
            "state": {
                s["version"]: {k: v for k, v in s.items() if k not in ("model",)} for s in states
            },
        }


def _selected(outcomes: Outcomes, mask: np.ndarray) -> Outcomes:
    """The outcomes where ``mask`` (a boolean array over them) is true."""
    fields: dict[str, Any] = {
        f.name: None if value is None else np.asarray(value)[mask]
        for f in dataclasses.fields(outcomes)
        for value in (getattr(outcomes, f.name),)
    }
    return Outcomes(**fields)
