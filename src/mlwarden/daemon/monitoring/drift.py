"""The monitor (service ``monitor``): drift checks of every model, history, signals.

Every ``monitoring.interval_seconds`` the loop checks each model that has a reference:
it reads the window profile from its ``WindowSource`` (the ingest service: the last
``window_hours``, summed from the buckets), runs the drift methods and the data-quality
checks on it in a thread (report.py, quality.py), stores the report in
``drift_reports``, updates the metrics and emits ``drift_detected`` /
``drift_resolved`` when the verdict changes. ``POST /api/models/{name}/drift-check``
and ``Warden.monitor_model_drift(model, dataframe)`` run the same check now; the
latter profiles the DataFrame with the same code as the ingest path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import sqlalchemy as sa
from prometheus_client import Gauge

from ...errors import Conflict, InvalidInput
from ...types import DriftReport, DriftSource, DriftWindow, Event, RowCounts, Severity
from ..core.context import Context
from ..core.leases import Lease, LeaseLost, fence, holding
from ..core.memory import release_memory
from ..core.metrics import Metrics
from ..core.service import Service
from ..core.store import Schema, create_tables
from ..ingest.interfaces import WatchedModel, WindowSource
from ..profiles.columns import Columns
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from ..profiles.reference import Reference, frame_columns
from .estimation import EstimationService
from .history import stored_reports
from .quality import data_quality
from .report import (
    RECOMMENDATIONS,
    Detectors,
    MethodFailure,
    evaluate,
    fit_detectors,
    insufficient_data,
)
from .report_json import as_json

__all__ = ["MonitorService", "reports_table"]

logger = logging.getLogger(__name__)

reports_table = sa.Table(
    "drift_reports",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("drift_score", sa.Float, nullable=False),
    sa.Column("drift_detected", sa.Boolean, nullable=False),
    sa.Column("recommendation", sa.String(32), nullable=False),
    sa.Column("report", sa.Text, nullable=False),
    sa.Index("ix_drift_reports_model_ts", "model", "ts"),
)

#: At most this many reports are returned by one history call (the newest ones).

#: The (statistic, p-value) gauges of one registry per (model, feature, method).
_FeatureGauges = dict[tuple[str, str, str], tuple[Gauge, Gauge]]


class MonitorService(Service):
    """Runs drift checks (loop and on demand), keeps their history, emits signals."""

    name = "monitor"
    schema = Schema("monitor", [create_tables(reports_table)])

    def __init__(
        self,
        context: Context,
        *,
        windows: WindowSource,
        estimation: EstimationService | None = None,
    ) -> None:
        super().__init__(context)
        self.windows = windows
        #: Estimates the window's performance after each check of it (estimation.py).
        self.estimation = estimation
        #: Per model: the fitted methods, and what they were fitted for (the reference
        #: layout's fingerprint and the model's configuration).
        self._detectors: dict[str, tuple[tuple[str, str], Detectors]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._detected: dict[str, bool] = {}
        self._gauges: tuple[Metrics | None, _FeatureGauges] = (None, {})
        self.last_check: dict[str, float] = {}

    async def start(self) -> None:
        r = reports_table
        latest = sa.select(r.c.model, r.c.drift_detected).where(
            r.c.id.in_(sa.select(sa.func.max(r.c.id)).group_by(r.c.model))
        )
        async with self.context.store.connect() as conn:
            for model, detected in (await conn.execute(latest)).all():
                self._detected[model] = bool(detected)
        self.context.spawn(self._loop(), name="monitor-loop")

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "last_check": dict(self.last_check),
            "drift_detected": {m: d for m, d in self._detected.items()},
        }

    # -- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        last_purge = 0.0
        owned = await self._owned({})
        while True:
            await asyncio.sleep(self.context.config.monitoring.interval_seconds)
            owned = await self._owned(owned)
            for name in self.windows.watched():
                lease = owned.get(name)
                if lease is None:  # another daemon checks it
                    continue
                try:
                    with holding(lease):
                        await self.check(name)
                except LeaseLost as exc:
                    logger.info("drift check of %s not stored: %s", name, exc)
                except Exception as exc:
                    where = f"drift check {name}"
                    self.context.failed(logger, exc, where, "drift check of %s failed", name)
            now = self.context.clock()
            if now - last_purge > 3600:
                try:
                    cutoff = now - self.context.config.monitoring.retention_days * 86400
                    async with self.context.store.begin() as conn:
                        await conn.execute(
                            reports_table.delete().where(reports_table.c.ts < cutoff)
                        )
                    last_purge = now
                except Exception as exc:
                    self.context.failed(logger, exc, "drift purge", "purging drift reports failed")

    async def _owned(self, before: dict[str, Lease]) -> dict[str, Lease]:
        """The models whose checks are this daemon's now; a model taken over from another
        daemon resumes from the verdict stored last (its gauges are exported by its owner
        only: ``Metrics.owns_model``)."""
        try:
            owned = await self.context.cluster.models()
            for model, lease in owned.items():
                if before.get(model) != lease:
                    await self._load_verdict(model)
        except Exception as exc:  # the store is away: check nothing this round
            self.context.failed(logger, exc, "model leases", "cannot take the model leases")
            return {}
        return owned

    async def _load_verdict(self, model: str) -> None:
        r = reports_table
        latest = (
            sa.select(r.c.drift_detected).where(r.c.model == model).order_by(r.c.id.desc()).limit(1)
        )
        async with self.context.store.connect() as conn:
            detected = (await conn.execute(latest)).scalar()
        if detected is not None:
            self._detected[model] = bool(detected)

    # -- checks --------------------------------------------------------------------------

    async def check(self, model: str, *, version: str | None = None) -> dict[str, Any]:
        """Check the model's current window now; the report is stored and returned."""
        state = await self.windows.watched_model(model)
        monitoring = self.context.config.monitoring
        now = self.context.clock()
        since = now - monitoring.window_hours * 3600.0
        window = DriftWindow(start=since, end=now, hours=monitoring.window_hours, version=version)
        async with self._lock(model):
            reference = self._reference(state)
            started = time.perf_counter()
            # Unfitted methods (first check, changed configuration) are fitted while the
            # window is read: both mostly wait on other threads.
            fitting = self._fitting(state, reference)
            try:
                profile = await self.windows.window(model, since, now, version)
                target = await self._target(state, reference, since, now, version)
                report = await self._report(
                    state, reference, profile, target, "window", window, fitting
                )
            finally:
                await _settled(fitting)
            plain = await self._finish(report, started)
        if fitting is not None:
            # A first check fits the methods and reads the whole window: tens of MB
            # freed among the few MB kept (docs/benchmarks.md, Memory), handed back now.
            await asyncio.to_thread(release_memory)
        await self._estimate(model, since, now, version)
        return plain

    async def _estimate(self, model: str, since: float, until: float, version: str | None) -> None:
        """Estimate the checked window's performance; a failure never fails the check."""
        if self.estimation is None:
            return
        try:
            await self.estimation.run(model, since, until, version)
        except Exception as exc:
            where = f"performance estimation {model}"
            self.context.failed(logger, exc, where, "performance estimation of %s failed", model)

    async def check_frame(self, model: str, frame: Any) -> dict[str, Any]:
        """Check a DataFrame against the reference (``Warden.monitor_model_drift``)."""
        state = await self.windows.watched_model(model)
        reference = self._reference(state)
        layout = reference.layout
        needed = list(layout.features)
        columns = getattr(frame, "columns", None)
        if columns is None:
            raise InvalidInput("recent_data: expected a pandas DataFrame")
        missing = [c for c in needed if c not in columns]
        if missing:
            raise InvalidInput(
                f"recent_data: missing column {missing[0]!r} of model {model!r} "
                f"(features: {', '.join(needed)})"
            )
        prediction = layout.prediction
        without_prediction = bool(prediction) and prediction not in columns
        if without_prediction:
            frame = frame.assign(**{prediction: np.nan})
        async with self._lock(model):
            started = time.perf_counter()
            profile = await asyncio.to_thread(
                _profile_frame, frame, layout, self.context.config.monitoring.sample_size
            )
            target = None
            label = state.config.label_column
            if reference.target is not None and label in columns:
                target = await asyncio.to_thread(
                    _profile_frame, frame, reference.target.layout, len(frame)
                )
            report = await self._report(state, reference, profile, target, "dataframe", None)
            if without_prediction:
                report = dataclasses.replace(report, prediction_drift=None)
            return await self._finish(report, started)

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    def _reference(self, state: WatchedModel) -> Reference:
        if state.reference is None:
            raise Conflict(
                f"model {state.config.name!r} has no reference profile "
                f"({state.reference_status}); set models.reference to a Parquet, CSV or "
                "Arrow file or an MLflow artifact URI, or upload one "
                f"(PUT /api/models/{state.config.name}/reference)"
            )
        return state.reference

    def _fitting(
        self, state: WatchedModel, reference: Reference
    ) -> asyncio.Future[Detectors] | None:
        """The methods' fit started now when they are not fitted (None when they are)."""
        key = (reference.layout.fingerprint, repr(state.config))
        cached = self._detectors.get(state.config.name)
        if cached is not None and cached[0] == key:
            return None
        return asyncio.ensure_future(self._detectors_for(state, reference))

    async def _detectors_for(self, state: WatchedModel, reference: Reference) -> Detectors:
        key = (reference.layout.fingerprint, repr(state.config))
        cached = self._detectors.get(state.config.name)
        if cached is None or cached[0] != key:
            catalog = self.context.plugins.classes("drift_method")
            reference = await reference.with_sample()  # the sample may be kept in the store
            try:
                detectors = await asyncio.to_thread(fit_detectors, state.config, reference, catalog)
            except ValueError as exc:
                raise Conflict(str(exc)) from None
            self._count(state.config.name, detectors.failures)
            self._detectors[state.config.name] = (key, detectors)
            cached = self._detectors[state.config.name]
        return cached[1]

    async def _target(
        self,
        state: WatchedModel,
        reference: Reference,
        since: float,
        until: float,
        version: str | None,
    ) -> Profile | None:
        if reference.target is None:
            return None
        outcomes = await self.windows.outcomes(
            state.config.name, version=version, since=since, until=until
        )
        if not len(outcomes):
            return None
        layout = reference.target.layout
        labels = outcomes.label
        if layout.numeric:
            columns = Columns(
                np.asarray(labels, dtype=np.float64)[:, None], np.zeros((len(labels), 0), np.int32)
            )
        else:
            codes = layout.encode(0, labels)[:, None]
            columns = Columns(np.zeros((len(labels), 0)), codes)
        size = self.context.config.monitoring.sample_size
        return await asyncio.to_thread(
            Profile.from_columns, layout, columns, size, np.random.default_rng()
        )

    async def _report(
        self,
        state: WatchedModel,
        reference: Reference,
        profile: Profile,
        target: Profile | None,
        source: DriftSource,
        window: DriftWindow | None,
        fitting: asyncio.Future[Detectors] | None = None,
    ) -> DriftReport:
        """The report of ``profile``; ``fitting`` is a fit of the methods already started."""
        monitoring = self.context.config.monitoring
        model = state.config.name
        violations = self.windows.rejections(model)
        report = DriftReport(
            model=model,
            checked_at=self.context.clock(),
            source=source,
            rows=RowCounts(current=int(profile.rows), reference=int(reference.rows)),
            threshold=monitoring.drift_threshold,
            data_quality=data_quality(profile, monitoring, violations),
            window=window,
        )
        if profile.rows < monitoring.min_window_rows:
            return insufficient_data(report, monitoring)
        detectors = await (fitting or self._detectors_for(state, reference))
        if target is not None and target.rows < monitoring.min_window_rows:
            target = None
        failures: list[MethodFailure] = []
        try:
            return await asyncio.to_thread(
                evaluate,
                report,
                state.config,
                monitoring,
                reference,
                detectors,
                profile,
                target,
                failures,
            )
        finally:
            self._count(model, failures)

    def _count(self, model: str, failures: list[MethodFailure]) -> None:
        """Count drift methods that failed (logged with their traceback in report.py).

        A drift method is a plugin: it counts in ``mlwarden_plugin_errors_total`` with
        ``hook="drift_method.fit"`` or ``"drift_method.score"``, like a traffic backend.
        """
        for failure in failures:
            hook = f"drift_method.{failure.stage}"
            self.context.metrics.plugin_errors.labels(failure.method, hook).inc()
            self.context.record_error(f"drift method {failure.method} ({model})", failure.error)

    async def _finish(self, report: DriftReport, started: float) -> dict[str, Any]:
        """Store ``report``, update the metrics, emit the events; the report as stored."""
        duration = time.perf_counter() - started
        report = dataclasses.replace(report, duration_seconds=duration)
        # Serialised once: the text stored, and what JSON keeps of it for the caller.
        plain, text = as_json(report.to_dict())
        async with self.context.store.begin() as conn:
            await fence(conn)  # a loop's check: only while this daemon holds the model
            result = await conn.execute(
                reports_table.insert(),  # parameters apart: the compiled statement is cached
                {
                    "model": report.model,
                    "ts": report.checked_at,
                    "source": report.source,
                    "drift_score": report.drift_score,
                    "drift_detected": report.drift_detected,
                    "recommendation": report.recommendation,
                    "report": text,
                },
            )
        key = result.inserted_primary_key
        assert key is not None  # None only for an executemany
        report = dataclasses.replace(report, id=key[0])
        plain["id"] = report.id
        self.last_check[report.model] = report.checked_at
        self._signal(report)
        await self._events(report)
        return plain

    def _signal(self, report: DriftReport) -> None:
        m, model = self.context.metrics, report.model
        if report.duration_seconds is not None:
            m.drift_check_duration.labels(model).observe(report.duration_seconds)
        if report.status != "ok":
            return
        if self._gauges[0] is not m:  # the labelled children, looked up once per registry
            self._gauges = (m, {})
        gauges = self._gauges[1]
        for feature, verdict in report.feature_drifts.items():
            for method, score in verdict.methods.items():
                key = (model, feature, method)
                pair = gauges.get(key)
                if pair is None:
                    pair = gauges[key] = (
                        m.feature_drift_score.labels(model, feature, method),
                        m.feature_drift_p_value.labels(model, feature, method),
                    )
                pair[0].set(score.statistic)
                if score.p_value is not None:
                    pair[1].set(score.p_value)
        m.drift_score.labels(model).set(report.drift_score)
        m.drift_detected.labels(model).set(1 if report.drift_detected else 0)
        level = RECOMMENDATIONS.index(report.recommendation)
        m.retrain_recommendation.labels(model).set(level)

    async def _events(self, report: DriftReport) -> None:
        if report.status != "ok":
            return
        model = report.model
        detected, before = report.drift_detected, self._detected.get(model, False)
        self._detected[model] = detected
        if detected == before:
            return
        drifted = list(report.drifted_features)
        data = {
            "drift_score": report.drift_score,
            "threshold": report.threshold,
            "drifted_features": drifted,
            "recommendation": report.recommendation,
            "report_id": report.id,
        }
        if detected:
            event = Event(
                kind="drift_detected",
                model=model,
                severity=Severity.WARNING,
                message=f"data drift in {len(drifted)} feature(s): " + ", ".join(drifted[:10]),
                data=data,
                ts=report.checked_at,
            )
        else:
            event = Event(
                kind="drift_resolved",
                model=model,
                severity=Severity.INFO,
                message="no data drift any more",
                data=data,
                ts=report.checked_at,
            )
        await self.context.emit(event)

    async def history(self, model: str, *, days: float = 7.0) -> list[dict[str, Any]]:
        """Stored reports of the last ``days``, oldest first (at most MAX_HISTORY)."""
        await self.windows.watched_model(model)
        since = self.context.clock() - days * 86400.0
        return await stored_reports(self.context.store, reports_table, model, since)


async def _settled(fitting: asyncio.Future[Detectors] | None) -> None:
    """Wait for a fit started ahead to end, its error retrieved (raised already, or moot)."""
    if fitting is None:
        return
    if not fitting.done():
        await asyncio.wait([fitting])  # it ends under the model's lock
    if not fitting.cancelled():
        fitting.exception()


def _profile_frame(frame: Any, layout: Layout, sample_size: int) -> Profile:
    return Profile.from_columns(
        layout, frame_columns(frame, layout), sample_size, np.random.default_rng()
    )
