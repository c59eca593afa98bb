"""Performance estimation (service ``estimation``): metrics before the labels arrive.

A model whose reference has labels gets a performance estimator (plugin kind
``performance_estimator``: ``models.estimator``, default ``cbpe`` for a classifier and
``dle`` for a regressor; ``"none"`` turns it off). It is fitted on the reference file
in a worker thread the first time it is needed and again when the reference or the
model's configuration changes. The monitor runs ``run`` after each drift check of the
window: the estimator gives each metric's estimate and band, stored in
``performance_estimates`` with the realized value of the window's labelled outcomes;
later runs fill in the realized values of earlier windows as their labels arrive
(within ``monitoring.label_ttl_hours``), so the estimator's own error is kept
(``GET /api/models/{name}/performance-estimates``, ``mlwarden_estimation_error``).

When the estimate of the model's watched metric is worse than the reference's realized
value by more than ``monitoring.performance_threshold`` (relative), the service emits
``performance_estimate_degraded`` (and ``performance_estimate_recovered`` after); the
``performance`` trigger fires on it when its option ``use_estimates`` is true.

An estimator that raises or runs past ``monitoring.estimation_timeout_seconds`` is
logged by name, counted in ``mlwarden_plugin_errors_total`` and recorded for
``/api/system/health``; a model that cannot be estimated (no labels, no
probabilities) keeps its reason as its status. Neither stops the drift checks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from typing import Any

import sqlalchemy as sa

from ...errors import Conflict
from ...stats.metrics import higher_is_better, relative_worsening
from ...types import EstimationData, Event, MetricEstimate, PerformanceEstimate, Severity
from ..core.context import Context
from ..core.memory import release_memory
from ..core.service import Service
from ..core.store import Schema, create_tables
from ..ingest.interfaces import WatchedModel, WindowSource
from ..profiles.reference import stored_upload
from .estimation_data import (
    EstimationUnavailable,
    check_reference,
    realized_from_outcomes,
    reference_data,
    reference_source,
    window_data,
)
from .history import stored_reports

__all__ = ["EstimationService", "estimates_table"]

logger = logging.getLogger(__name__)

estimates_table = sa.Table(
    "performance_estimates",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("estimator", sa.String(100), nullable=False),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("report", sa.Text, nullable=False),
    sa.Index("ix_performance_estimates_model_ts", "model", "ts"),
)

#: At most this many stored estimates get their realized values refreshed per run.
REFRESH_PER_RUN = 20


@dataclasses.dataclass
class _Fitted:
    key: tuple[str, str]
    name: str
    estimator: Any | None = None
    reference: EstimationData | None = None
    status: str = "fitting"


class EstimationService(Service):
    """Fits each model's performance estimator and estimates every checked window."""

    name = "estimation"
    schema = Schema("estimation", [create_tables(estimates_table)])

    def __init__(self, context: Context, *, windows: WindowSource) -> None:
        super().__init__(context)
        self.windows = windows
        self._fitted: dict[str, _Fitted] = {}
        self._degraded: dict[str, bool] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "models": {m: f.status for m, f in self._fitted.items()}}

    def status(self, model: str) -> str | None:
        """The model's estimation status (``ready``, ``off``, or why it cannot run)."""
        fitted = self._fitted.get(model)
        return None if fitted is None else fitted.status

    # -- fitting -------------------------------------------------------------------------

    def estimator_name(self, state: WatchedModel) -> str:
        """The configured estimator of the model ("" when estimation is off)."""
        from ...plugins.estimators import DEFAULT_ESTIMATORS

        name = state.config.estimator or DEFAULT_ESTIMATORS.get(state.config.task, "")
        return "" if name == "none" else name

    async def _estimator(self, state: WatchedModel) -> _Fitted:
        mc = state.config
        key = (
            "" if state.reference is None else state.reference.layout.fingerprint,
            repr(mc),
        )
        fitted = self._fitted.get(mc.name)
        if fitted is not None and fitted.key == key:
            return fitted
        name = self.estimator_name(state)
        fitted = _Fitted(key, name)
        self._fitted[mc.name] = fitted
        if not name:
            fitted.status = "off (models.estimator = 'none')"
            return fitted
        if state.reference is None:
            fitted.status = f"unavailable: model {mc.name!r} has no reference (models.reference)"
            return fitted
        try:
            cls = self.context.plugins.get("performance_estimator", name)
        except Exception as exc:
            fitted.status = f"error: {exc}"
            return fitted
        layout = state.reference.layout
        timeout = self.context.config.monitoring.estimation_timeout_seconds
        try:  # from the reference held: a file without labels is not read again
            source = reference_source(mc, state.uploaded)
            check_reference(mc, source, state.reference.target is not None, bool(layout.prediction))
        except EstimationUnavailable as exc:
            fitted.status = f"unavailable: {exc}"
            return fitted
        try:
            upload = await stored_upload(self.context.store, mc.name, layout.fingerprint)
            reference = await asyncio.wait_for(
                asyncio.to_thread(
                    reference_data, mc, layout, self.context.config.mlflow.tracking_uri, upload
                ),
                timeout,
            )
            del upload
            fitted.estimator = await self._isolated(
                name, "fit", lambda: cls(**mc.estimator_options).fit(reference), timeout
            )
            fitted.reference = reference
            fitted.status = "ready"
        except EstimationUnavailable as exc:
            fitted.status = f"unavailable: {exc}"
        except _PluginFailed as exc:
            fitted.status = f"error: {exc}"
        except Exception as exc:  # the reference could not be read
            fitted.status = f"error: {exc}"
            self.context.record_error(f"estimation {mc.name}", repr(exc))
        # The reference file was read whole (tens of MB, freed by now): handed back, as
        # after a reference load (core/memory.py).
        await asyncio.to_thread(release_memory)
        return fitted

    async def _isolated(self, name: str, step: str, call: Any, timeout: float) -> Any:
        """``call()`` in a thread with a timeout; a failure is logged and counted."""
        failure: BaseException
        try:
            return await asyncio.wait_for(asyncio.to_thread(call), timeout)
        except ValueError as exc:  # the data does not suit it: what is missing, named
            raise EstimationUnavailable(str(exc)) from None
        except TimeoutError:
            failure = TimeoutError(f"{step} took longer than {timeout:g} s "
                                   "(monitoring.estimation_timeout_seconds)")  # fmt: skip
        except Exception as exc:
            failure = exc
        logger.error('performance estimator "%s" failed in %s: %r', name, step, failure)
        self.context.metrics.plugin_errors.labels(name, f"performance_estimator.{step}").inc()
        self.context.record_error(f"performance estimator {name} ({step})", repr(failure))
        raise _PluginFailed(f'performance estimator "{name}" failed in {step}: {failure}')

    # -- estimating ----------------------------------------------------------------------

    async def run(
        self, model: str, since: float, until: float, version: str | None = None
    ) -> PerformanceEstimate | None:
        """Estimate the window [since, until) (the monitor calls this); None when off."""
        state = await self.windows.watched_model(model)
        async with self._locks.setdefault(model, asyncio.Lock()):
            fitted = await self._estimator(state)
            if fitted.estimator is None or fitted.reference is None:
                return None
            estimate = await self._estimate(state, fitted, since, until, version)
            if estimate is None:
                return None
            estimate = await self._store(estimate)
            await self._refresh(state, fitted)
            self._signal(estimate)
            await self._events(estimate, fitted)
            return estimate

    async def estimate_now(self, model: str, *, version: str | None = None) -> dict[str, Any]:
        """Estimate the current window now (the API); Conflict names what is missing."""
        now = self.context.clock()
        since = now - self.context.config.monitoring.window_hours * 3600.0
        result = await self.run(model, since, now, version)
        if result is None:
            status = self.status(model)
            if status == "ready":
                status = (
                    f"fewer than {self.context.config.monitoring.min_window_rows} rows in "
                    "the window (monitoring.min_window_rows)"
                )
            raise Conflict(f"model {model!r}: no performance estimate: {status}")
        return _plain(result.to_dict())

    async def _estimate(
        self,
        state: WatchedModel,
        fitted: _Fitted,
        since: float,
        until: float,
        version: str | None,
    ) -> PerformanceEstimate | None:
        mc = state.config
        assert state.reference is not None and fitted.reference is not None
        profile = scored = None
        if mc.task == "regression":
            profile = await self.windows.window(mc.name, since, until, version)
        else:
            scored = await self.windows.scored_predictions(mc.name, since, until, version)
        timeout = self.context.config.monitoring.estimation_timeout_seconds
        reference, layout = fitted.reference, state.reference.layout
        try:
            current = await asyncio.to_thread(window_data, mc, reference, layout, profile, scored)
        except EstimationUnavailable as exc:
            fitted.status = f"unavailable: {exc}"
            return None
        if current.rows < self.context.config.monitoring.min_window_rows:
            return None
        estimator = fitted.estimator
        assert estimator is not None  # run() checked it
        try:
            metrics = await self._isolated(
                fitted.name, "estimate", lambda: estimator.estimate(current), timeout
            )
        except (_PluginFailed, EstimationUnavailable) as exc:
            fitted.status = f"error: {exc}"
            return None
        fitted.status = "ready"
        outcomes = await self.windows.outcomes(mc.name, version=version, since=since, until=until)
        metrics, labelled = self._with_realized(metrics, mc.task, outcomes, reference.classes)
        return PerformanceEstimate(
            model=mc.name,
            estimator=fitted.name,
            checked_at=self.context.clock(),
            rows=current.rows,
            labelled_rows=labelled,
            metrics=metrics,
            version=version,
            window_start=since,
            window_end=until,
        )

    def _with_realized(
        self,
        metrics: dict[str, MetricEstimate],
        task: str,
        outcomes: Any,
        classes: tuple[str, ...],
    ) -> tuple[dict[str, MetricEstimate], int]:
        labelled = len(outcomes)
        if labelled < self.context.config.monitoring.min_performance_samples:
            return metrics, labelled
        realized = realized_from_outcomes(task, outcomes, classes)
        return {
            m: dataclasses.replace(e, realized=realized.get(m, e.realized))
            for m, e in metrics.items()
        }, labelled

    # -- storage, refresh, signals ---------------------------------------------------------

    async def _store(self, estimate: PerformanceEstimate) -> PerformanceEstimate:
        async with self.context.store.begin() as conn:
            result = await conn.execute(
                estimates_table.insert(),
                {
                    "model": estimate.model,
                    "ts": estimate.checked_at,
                    "version": estimate.version,
                    "estimator": estimate.estimator,
                    "window_start": estimate.window_start,
                    "window_end": estimate.window_end,
                    "complete": estimate.labelled_rows >= estimate.rows,
                    "report": _dumps(estimate.to_dict()),
                },
            )
        key = result.inserted_primary_key
        assert key is not None
        return dataclasses.replace(estimate, id=key[0])

    async def _refresh(self, state: WatchedModel, fitted: _Fitted) -> None:
        """Fill in the realized values of earlier windows whose labels came in since."""
        mc, monitoring = state.config, self.context.config.monitoring
        oldest = self.context.clock() - monitoring.label_ttl_hours * 3600.0
        t = estimates_table
        query = (
            sa.select(t.c.id, t.c.version, t.c.window_start, t.c.window_end, t.c.report)
            .where(t.c.model == mc.name, ~t.c.complete, t.c.window_end >= oldest)
            .order_by(t.c.id.desc())
            .limit(REFRESH_PER_RUN)
        )
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        assert fitted.reference is not None
        latest: dict[str, Any] | None = None
        for row in rows:
            outcomes = await self.windows.outcomes(
                mc.name, version=row.version, since=row.window_start, until=row.window_end
            )
            report = json.loads(row.report)
            if len(outcomes) <= report.get("labelled_rows", 0):
                continue
            if len(outcomes) < monitoring.min_performance_samples:
                continue
            realized = await asyncio.to_thread(
                realized_from_outcomes, mc.task, outcomes, fitted.reference.classes
            )
            for metric, entry in report["metrics"].items():
                value = realized.get(metric)
                if value is None:
                    continue
                estimate = MetricEstimate(metric, entry["value"], entry["lower"], entry["upper"],
                                          entry["sampling_error"], value)  # fmt: skip
                report["metrics"][metric] = estimate.to_dict()
            report["labelled_rows"] = len(outcomes)
            async with self.context.store.begin() as conn:
                await conn.execute(
                    t.update()
                    .where(t.c.id == row.id)
                    .values(
                        report=_dumps(report),
                        complete=len(outcomes) >= report["rows"],
                    )
                )
            if latest is None:
                latest = report
        if latest is not None:
            self._signal_realized(mc.name, latest.get("version"), latest["metrics"])

    def _signal(self, estimate: PerformanceEstimate) -> None:
        m, version = self.context.metrics, estimate.version or "all"
        for metric, e in estimate.metrics.items():
            m.estimated_metric.labels(estimate.model, version, metric).set(e.value)
            m.estimated_metric_lower.labels(estimate.model, version, metric).set(e.lower)
            m.estimated_metric_upper.labels(estimate.model, version, metric).set(e.upper)
        self._signal_realized(
            estimate.model,
            estimate.version,
            {name: e.to_dict() for name, e in estimate.metrics.items()},
        )

    def _signal_realized(
        self, model: str, version: str | None, metrics: dict[str, dict[str, Any]]
    ) -> None:
        m = self.context.metrics
        for metric, entry in metrics.items():
            if entry.get("realized") is None or entry.get("error") is None:
                continue
            m.estimated_metric_realized.labels(model, version or "all", metric).set(
                entry["realized"]
            )
            m.estimation_error.labels(model, version or "all", metric).set(entry["error"])

    def watched_metric(self, state: WatchedModel, fitted: _Fitted) -> str:
        """The metric whose estimate is judged: ``performance_metric`` if estimated."""
        metrics = tuple(getattr(fitted.estimator, "metrics", ()))
        wanted = state.config.performance_metric
        if wanted in metrics:
            return wanted
        default = "accuracy" if state.config.task == "classification" else "mse"
        return default if default in metrics else (metrics[0] if metrics else "")

    async def _events(self, estimate: PerformanceEstimate, fitted: _Fitted) -> None:
        state = await self.windows.watched_model(estimate.model)
        metric = self.watched_metric(state, fitted)
        entry = estimate.metrics.get(metric)
        baseline = getattr(fitted.estimator, "baseline", {}).get(metric)
        if entry is None or baseline is None:
            return
        threshold = self.context.config.monitoring.performance_threshold
        higher = higher_is_better(metric)
        worsening = relative_worsening(entry.value, baseline, higher)
        degraded = worsening > threshold
        self.context.metrics.estimate_degraded.labels(estimate.model, metric).set(int(degraded))
        before = self._degraded.get(estimate.model, False)
        self._degraded[estimate.model] = degraded
        if degraded == before:
            return
        data = {
            "metric": metric,
            "value": entry.value,
            "lower": entry.lower,
            "upper": entry.upper,
            "baseline": baseline,
            "threshold": threshold,
            "estimator": estimate.estimator,
            "source": "estimate",
            "estimate_id": estimate.id,
        }
        kind, severity, message = (
            ("performance_estimate_degraded", Severity.WARNING,
             f"estimated {metric} {entry.value:.4g} (band {entry.lower:.4g}-{entry.upper:.4g}) "
             f"vs reference {baseline:.4g}, before the labels arrive")
            if degraded else
            ("performance_estimate_recovered", Severity.INFO,
             f"estimated {metric} {entry.value:.4g} back within the threshold")
        )  # fmt: skip
        await self.context.emit(
            Event(
                kind=kind,
                model=estimate.model,
                severity=severity,
                message=message,
                data=data,
                ts=estimate.checked_at,
            )
        )

    async def history(self, model: str, *, days: float = 7.0) -> list[dict[str, Any]]:
        """Stored estimates of the last ``days``, oldest first (at most MAX_HISTORY)."""
        await self.windows.watched_model(model)
        since = self.context.clock() - days * 86400.0
        return await stored_reports(self.context.store, estimates_table, model, since)


class _PluginFailed(Exception):
    """An estimator raised or timed out (already logged and counted)."""


def _plain(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has neither NaN nor infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(_plain(value), allow_nan=False)
