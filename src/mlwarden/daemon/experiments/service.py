"""A/B tests between two versions of one model (service ``experiments``).

An experiment splits the model's traffic between version A and version B through the
rollout service's traffic table (sticky hashing), reads each arm's joined outcomes from
ingest, and judges B against A with ``mlwarden.stats.analyse``: primary metric,
guardrails, Holm, SRM, gates and — by default — the always-valid sequential test, so
the background loop and anyone calling ``evaluate`` may look as often as they like.
A final recommendation (PROMOTE_B, KEEP_A, STOP_NO_DIFFERENCE) concludes it: the
traffic table in force before the experiment is restored and, with auto-promotion on,
a PROMOTE_B starts a rollout of B. Each experiment is persisted (history) and logged
as an MLflow run. See docs/experiments.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar, TypeVarTuple

import sqlalchemy as sa

from ...errors import Conflict, InvalidInput, NotFound
from ...hookspecs import hookimpl
from ...stats import is_final
from ...types import Event, OutcomeSource, Severity
from ..core.cluster import EXPERIMENT_WORK
from ..core.context import Context
from ..core.leases import LeaseLost, fence, holding
from ..core.service import Service
from ..core.tracking import Tracking
from ..registry.interfaces import VersionRecords
from ..rollouts.interfaces import TrafficControl
from .analysis import analysis_settings, evaluate_arms
from .records import (
    EXPERIMENTS_SCHEMA,
    EvaluationSummary,
    ExperimentPromotion,
    ExperimentRecord,
    ExperimentStatus,
    evaluation_from_row,
    evaluations_table,
    experiments_table,
    locked_record,
    public,
    record_from_row,
    store_evaluation,
)
from .tracking import (
    clear_gauges,
    export_gauges,
    log_conclusion,
    log_evaluation,
    log_start,
)

__all__ = ["EXPERIMENTS_SCHEMA", "ExperimentService", "public"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class ExperimentService(Service):
    """A/B tests: start, evaluate (on demand and in the background), stop, history."""

    name = "experiments"
    schema = EXPERIMENTS_SCHEMA

    def __init__(
        self,
        context: Context,
        *,
        outcomes: OutcomeSource,
        registry: VersionRecords,
        traffic: TrafficControl,
    ) -> None:
        super().__init__(context)
        self.outcomes = outcomes
        self.registry = registry
        self.traffic = traffic
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop_errors = 0

    async def start(self) -> None:
        self.context.spawn(self._loop(), name="experiments-evaluate")

    async def health(self) -> dict[str, Any]:
        async with self.context.store.connect() as conn:
            running = (
                await conn.execute(
                    sa.select(sa.func.count()).where(experiments_table.c.status == "running")
                )
            ).scalar()
        return {"status": "ok", "running": int(running or 0), "loop_errors": self._loop_errors}

    # -- start -----------------------------------------------------------------------

    async def start_experiment(
        self,
        model: str,
        version_a: str,
        version_b: str,
        *,
        name: str,
        weight_b: float = 0.5,
        duration_hours: float | None = None,
        actor: str = "mlwarden",
        metric: str | None = None,
        test: str | None = None,
        sequential: bool | None = None,
        auto_promote: bool | None = None,
    ) -> ExperimentRecord:
        """Start an A/B test of ``version_b`` against ``version_a``; returns the record.

        Conflict (409) when the model already has a running experiment; NotFound (404)
        for an unknown model or version; InvalidInput (400) for a bad split, duration,
        metric or test. Nothing is left behind when any step fails.
        """
        ab = self.context.config.ab_testing
        duration = ab.min_duration_hours if duration_hours is None else float(duration_hours)
        settings = analysis_settings(
            self.context.config, model, weight_b, duration, metric, test, sequential
        )
        if version_a == version_b:
            raise InvalidInput(f"model {model!r}: arms A and B are both version {version_a!r}")
        if duration < ab.min_duration_hours:
            raise InvalidInput(
                f"duration_hours ({duration:g}) is shorter than ab_testing.min_duration_hours "
                f"({ab.min_duration_hours:g}): the experiment could never name a winner"
            )
        # NotFound for unknown models and versions.
        await self.outcomes.outcomes(model, since=self.context.clock())
        for version in (version_a, version_b):
            await self.registry.get(model, version)
        active = self.traffic.active_rollout(model)
        if active is not None:
            raise Conflict(
                f"model {model!r} has an active rollout of version {active.get('candidate')} "
                f"(id {active.get('id')}); an experiment needs the traffic table to itself"
            )
        previous = await _current_traffic(self.traffic, model)
        now = self.context.clock()
        experiment_id = uuid.uuid4().hex[:12]
        promote = ab.auto_promote if auto_promote is None else bool(auto_promote)
        row: dict[str, object] = {
            "id": experiment_id,
            "name": name,
            "model": model,
            "version_a": version_a,
            "version_b": version_b,
            "weight_b": float(weight_b),
            "duration_hours": duration,
            "status": "running",
            "started_at": now,
            "ends_at": now + duration * 3600.0,
            "actor": actor,
            "settings": json.dumps(asdict(settings)),
            "auto_promote": promote,
            "previous_traffic": json.dumps(previous),
            "sequential_state": "{}",
            "evaluations": 0,
        }
        try:
            async with self.context.store.begin() as conn:
                await conn.execute(experiments_table.insert().values(**row))
        except sa.exc.IntegrityError:
            running = await self._running_for(model)
            raise Conflict(
                f"model {model!r} already has a running experiment"
                + (f" ({running['id']}, {running['name']!r})" if running else "")
                + "; stop it first"
            ) from None
        try:
            await self.traffic.set_traffic(
                model,
                {version_a: 1.0 - weight_b, version_b: weight_b},
                reason=f"experiment {experiment_id} ({name})",
                actor=actor,
            )
        except BaseException:
            async with self.context.store.begin() as conn:
                await conn.execute(
                    experiments_table.delete().where(experiments_table.c.id == experiment_id)
                )
            raise
        record = await self.get(experiment_id)
        run_id = await self._tracking(log_start, record)
        if run_id:
            await self._update(experiment_id, mlflow_run_id=run_id)
            record["mlflow_run_id"] = run_id
        await self.context.emit(
            Event(
                kind="experiment_started",
                model=model,
                version=version_b,
                message=f"experiment {name!r}: {version_b} against {version_a}",
                data={
                    "experiment_id": experiment_id,
                    "version_a": version_a,
                    "version_b": version_b,
                    "traffic_split": weight_b,
                    "duration_hours": duration,
                },
            )
        )
        return record

    # -- evaluate --------------------------------------------------------------------

    async def evaluate(self, experiment_id: str, *, actor: str = "mlwarden") -> ExperimentRecord:
        """Evaluate now; a final recommendation concludes the experiment. Returns the record.

        The read, the evaluation and the write of the sequential state are one
        read-modify-write on the experiment's row, locked (``locked_record``): an evaluation
        through one daemon's API and the owner's loop on another take turns, each
        starting from the state the other stored.
        """
        lock = self._locks.setdefault(experiment_id, asyncio.Lock())
        async with lock:
            async with locked_record(self.context.store, experiment_id) as (conn, record):
                if record["status"] != "running":
                    return record
                evaluation, data = await evaluate_arms(self.outcomes, record, self.context.clock)
                if conn is None:  # SQLite: a transaction of its own (see locked_record)
                    async with self.context.store.begin() as own:
                        await store_evaluation(own, record, evaluation, data)
                else:
                    await store_evaluation(conn, record, evaluation, data)
            export_gauges(self.context.metrics, record["model"], data)
            await self._tracking(log_evaluation, record, data)
            if is_final(evaluation.recommendation):
                await self._conclude(record, data, status="concluded", actor=actor)
            return await self.get(experiment_id)

    # -- stop and conclude -----------------------------------------------------------

    async def stop_experiment(
        self, experiment_id: str, *, actor: str, reason: str = "", restore_traffic: bool = True
    ) -> ExperimentRecord:
        """Stop a running experiment without a winner; its traffic table is restored
        (unless ``restore_traffic`` is false: a rollout has taken the table over)."""
        lock = self._locks.setdefault(experiment_id, asyncio.Lock())
        async with lock:
            record = await self.get(experiment_id)
            if record["status"] != "running":
                raise Conflict(
                    f"experiment {experiment_id} is already {record['status']}; "
                    "only a running experiment can be stopped"
                )
            data = dict(record["result"] or {})
            data["stopped_reason"] = reason or f"stopped by {actor}"
            data["winner"] = None
            await self._conclude(
                record, data, status="stopped", actor=actor, restore_traffic=restore_traffic
            )
            return await self.get(experiment_id)

    async def _conclude(
        self,
        record: ExperimentRecord,
        data: dict[str, Any],
        *,
        status: ExperimentStatus,
        actor: str,
        restore_traffic: bool = True,
    ) -> None:
        model, now = record["model"], self.context.clock()
        if restore_traffic:
            previous = record["previous_traffic"] or {record["version_a"]: 1.0}
            await self.traffic.set_traffic(
                model, previous, reason=f"experiment {record['id']} {status}", actor=actor
            )
        winner = data.get("winner") if status == "concluded" else None
        promotion: ExperimentPromotion | None = None
        if status == "concluded" and data.get("recommendation") == "PROMOTE_B":
            promotion = {"status": "pending" if record["auto_promote"] else "not_started"}
            if not record["auto_promote"]:
                promotion["reason"] = "auto-promotion is off"
        # Concluded before promoting: the rollout's start event must not find it running.
        # Only a running experiment concludes: of two daemons concluding it at once (an
        # API stop and the owner's evaluation) the second stops here.
        if not await self._update(
            record["id"],
            running=True,
            status=status,
            concluded_at=now,
            winner=winner,
            result=json.dumps(data) if data else None,
            promotion=json.dumps(promotion) if promotion else None,
        ):
            logger.info("experiment %s was concluded meanwhile elsewhere", record["id"])
            return
        if promotion and promotion["status"] == "pending":
            promotion = await self._promote(record, actor)
            await self._update(record["id"], promotion=json.dumps(promotion))
        self._locks.pop(record["id"], None)
        clear_gauges(self.context.metrics, model)
        concluded: ExperimentRecord = {
            **record,
            "status": status,
            "winner": winner,
            "promotion": promotion,
        }
        await self._tracking(log_conclusion, concluded, data)
        await self.context.audit.record(
            actor=actor,
            action=f"experiment {status}",
            target=f"model={model},experiment={record['id']}",
            outcome=str(data.get("recommendation") or status),
            detail={"winner": winner, "p_value": data.get("p_value"), "promotion": promotion},
        )
        await self.context.emit(
            Event(
                kind="experiment_concluded",
                model=model,
                version=winner,
                severity=Severity.INFO,
                message=f"experiment {record['name']!r} {status}: "
                + (f"winner {winner}" if winner else "no winner"),
                data={
                    "experiment_id": record["id"],
                    "status": status,
                    "winner": winner,
                    "recommendation": data.get("recommendation"),
                    "p_value": data.get("p_value"),
                    "lift": data.get("lift"),
                    "promotion": promotion["status"] if promotion else None,
                },
            )
        )

    async def _promote(self, record: ExperimentRecord, actor: str) -> ExperimentPromotion:
        strategy = self.context.config.ab_testing.promote_strategy or None
        try:
            rollout = await self.traffic.start_rollout(
                record["model"], record["version_b"], strategy=strategy, actor=actor
            )
        except Exception as exc:
            logger.warning("experiment %s: promoting %s failed: %s", record["id"],
                           record["version_b"], exc)  # fmt: skip
            return {"status": "failed", "error": str(exc)}
        return {"status": "started", "rollout": rollout}

    # -- reads -----------------------------------------------------------------------

    async def get(self, experiment_id: str) -> ExperimentRecord:
        """The experiment's record; NotFound (404) when there is none with that id."""
        row = await self.context.store.row_by_id(
            experiments_table, experiment_id, missing=f"no experiment with id {experiment_id!r}"
        )
        return record_from_row(row)

    async def evaluations(self, experiment_id: str, limit: int = 100) -> list[EvaluationSummary]:
        t = evaluations_table
        query = (
            sa.select(t.c.ts, t.c.recommendation, t.c.p_value, t.c.samples_a, t.c.samples_b)
            .where(t.c.experiment_id == experiment_id)
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [evaluation_from_row(r._mapping) for r in rows]

    async def history(
        self, *, model: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ExperimentRecord]:
        """Experiments, newest first, optionally of one model and/or one status."""
        query = sa.select(experiments_table).order_by(experiments_table.c.started_at.desc())
        if model:
            query = query.where(experiments_table.c.model == model)
        if status:
            query = query.where(experiments_table.c.status == status)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [record_from_row(r) for r in rows]

    async def _running_for(self, model: str) -> ExperimentRecord | None:
        running = await self.history(model=model, status="running", limit=1)
        return running[0] if running else None

    async def _update(self, experiment_id: str, *, running: bool = False, **values: object) -> bool:
        """Update the experiment's row (only while it runs, with ``running``); whether it did."""
        t = experiments_table
        query = t.update().where(t.c.id == experiment_id)
        if running:
            query = query.where(t.c.status == "running")
        async with self.context.store.begin() as conn:
            await fence(conn)
            return bool((await conn.execute(query.values(**values))).rowcount)

    async def _tracking(self, function: Callable[[Tracking, *Ts], T], *args: *Ts) -> T | None:
        """Run an MLflow logging call off the loop; a failure is logged, never fatal."""
        try:
            return await asyncio.to_thread(function, self.context.tracking, *args)
        except Exception as exc:
            logger.warning("experiment MLflow logging (%s) failed: %s", function.__name__, exc)
            self.context.record_error("experiments: MLflow", repr(exc))
            return None

    # -- background ------------------------------------------------------------------

    async def _loop(self) -> None:
        """Evaluate running experiments periodically (fixed-horizon ones only at the end)."""
        while True:
            await asyncio.sleep(self.context.config.ab_testing.evaluation_interval_seconds)
            try:  # a model's experiment is evaluated by the daemon that owns the model
                owned = await self.context.cluster.models()
                running = await self.history(status="running", limit=1000)
            except Exception as exc:  # the store is away: evaluate nothing this round
                self.context.failed(logger, exc, "experiments", "cannot read the experiments")
                continue
            for record in running:
                fixed = not record["settings"]["sequential"]
                if fixed and self.context.clock() < record["ends_at"]:
                    continue
                try:
                    lease = owned.get(record["model"])
                    if lease is None and self.context.config.model(record["model"]) is None:
                        # A model not in [[models]] has no lease of its own.
                        lease = await self.context.cluster.singleton(EXPERIMENT_WORK)
                    if lease is None:
                        continue
                    with holding(lease):
                        await self.evaluate(record["id"])
                except LeaseLost as exc:
                    logger.info("evaluation of experiment %s not stored: %s", record["id"], exc)
                except Exception as exc:
                    self._loop_errors += 1
                    where, key = f"experiment {record['id']}", record["id"]
                    self.context.failed(logger, exc, where, "evaluating experiment %s failed", key)

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        """A rollout that starts on a model under experiment takes its traffic: stop it."""
        if event.kind != "rollout_started" or not event.model:
            return
        running = await self._running_for(event.model)
        if running is not None:
            await self.stop_experiment(
                running["id"],
                actor="mlwarden",
                reason=f"a rollout of {event.version} took over the traffic table",
                restore_traffic=False,
            )


async def _current_traffic(traffic: TrafficControl, model: str) -> dict[str, float]:
    try:
        return dict(await traffic.traffic(model) or {})
    except NotFound:
        return {}
