"""Retraining triggers per model: cron schedules, drift, performance, market regime.

Each configured model gets instances of its trigger plugins (``triggers`` in its
``[[models]]`` entry, options from ``trigger_options``; a ``schedule`` key adds the
``schedule`` trigger). Triggers are evaluated on every event about the model (the
scheduler hears events through ``mlwarden_event``) and on a periodic tick
(``training.scheduler_interval_seconds``). A trigger that decides to fire is held to
its ``cooldown_seconds``; when it passes, the scheduler submits a training job (one
per model at a time), counts ``mlwarden_triggers_fired_total``, emits
``trigger_fired`` and writes the audit log. When each trigger last fired is
persisted, so cooldowns and schedules survive restarts.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable
from typing import Any, Protocol, TypedDict, runtime_checkable

import sqlalchemy as sa

from ...errors import Conflict, NotFound, PluginError
from ...hookspecs import hookimpl
from ...types import Decision, Event, OutcomeSource, TriggerContext
from ..core.cluster import SCHEDULER_WORK
from ..core.config import Config, ModelConfig
from ..core.context import Context, PluginClasses
from ..core.leases import Lease, LeaseLost, fence, holding
from ..core.service import Service
from ..core.store import Schema, create_tables
from .jobs import JobService
from .records import JobRecord

__all__ = ["ScheduledTrigger", "SchedulerService", "Trigger", "TriggerState"]

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

trigger_state = sa.Table(
    "trigger_state",
    metadata,
    sa.Column("model", sa.String(255), primary_key=True),
    sa.Column("trigger", sa.String(64), primary_key=True),
    sa.Column("armed_at", sa.Float, nullable=False),
    sa.Column("last_fired", sa.Float),
    sa.Column("last_reason", sa.Text),
)


class TriggerState(TypedDict):
    """When a model's trigger was first watched and last fired (a ``trigger_state`` row)."""

    model: str
    trigger: str
    armed_at: float
    last_fired: float | None
    last_reason: str | None


class Trigger(Protocol):
    """A retraining trigger plugin instance (``mlwarden_triggers``); it may also have a
    ``cooldown_seconds`` attribute."""

    def evaluate(self, context: TriggerContext) -> Decision | Awaitable[Decision]:
        """Whether to retrain now, and why."""
        ...


@runtime_checkable
class ScheduledTrigger(Trigger, Protocol):
    """A trigger that knows when it fires next (the ``schedule`` trigger)."""

    def next_run(self, after: float) -> float:
        """The first time it fires after ``after`` (Unix time)."""
        ...


#: Events the scheduler itself causes; triggers never react to them.
_OWN_EVENTS = frozenset(
    {"trigger_fired", "training_started", "training_succeeded", "training_failed"}
)


def build_triggers(
    plugins: PluginClasses, config: Config, model: ModelConfig
) -> dict[str, Trigger]:
    """The trigger instances of ``model``; PluginError names the model and trigger."""
    names = list(model.triggers)
    if model.schedule and "schedule" not in names:
        names.insert(0, "schedule")
    out: dict[str, Trigger] = {}
    for name in names:
        cls = plugins.get("trigger", name)
        options = dict(model.trigger_options.get(name, {}))
        if name == "schedule":
            if not model.schedule and "cron" not in options:
                raise PluginError(
                    f"model {model.name!r}: trigger 'schedule' needs the model's 'schedule' key"
                )
            options.setdefault("cron", model.schedule)
            options.setdefault("timezone", config.training.timezone)
        try:
            out[name] = cls(**options)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"model {model.name!r}: trigger {name!r}: {exc}") from exc
    return out


class SchedulerService(Service):
    """Evaluates each model's triggers and turns firing decisions into training jobs."""

    name = "scheduler"
    schema = Schema("scheduler", [create_tables(trigger_state)])

    def __init__(self, context: Context, *, jobs: JobService, outcomes: OutcomeSource) -> None:
        super().__init__(context)
        self.jobs = jobs
        self.outcomes = outcomes
        self.triggers: dict[str, dict[str, Trigger]] = self._build(context.config)
        self._locks: dict[str, asyncio.Lock] = {}
        self._state: dict[tuple[str, str], TriggerState] = {}

    def _build(self, config: Config) -> dict[str, dict[str, Trigger]]:
        return {m.name: build_triggers(self.context.plugins, config, m) for m in config.models}

    async def start(self) -> None:
        await self._arm()
        self.context.spawn(self._ticker(), name="scheduler-tick")

    async def reload(self, config: Config) -> None:
        self.triggers = self._build(config)
        await self._arm()

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "triggers": {model: sorted(t) for model, t in self.triggers.items()},
        }

    async def _arm(self) -> None:
        """Load persisted trigger state; record first sight of new (model, trigger) pairs."""
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(sa.select(trigger_state))).mappings().all()
        self._state = {
            (r["model"], r["trigger"]): {
                "model": r["model"],
                "trigger": r["trigger"],
                "armed_at": r["armed_at"],
                "last_fired": r["last_fired"],
                "last_reason": r["last_reason"],
            }
            for r in rows
        }
        now = self.context.clock()
        new: list[TriggerState] = [
            {"model": m, "trigger": t, "armed_at": now, "last_fired": None, "last_reason": None}
            for m, triggers in self.triggers.items()
            for t in triggers
            if (m, t) not in self._state
        ]
        if new:
            try:
                async with self.context.store.begin() as conn:
                    await conn.execute(trigger_state.insert(), new)
            except sa.exc.IntegrityError:  # another daemon armed them first: read theirs
                await self._arm()
                return
            for row in new:
                self._state[(row["model"], row["trigger"])] = row

    async def _reload(self, model: str) -> None:
        """Read ``model``'s trigger state back from the store."""
        query = sa.select(trigger_state).where(trigger_state.c.model == model)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        for r in rows:
            state = self._state.get((model, r["trigger"]))
            if state is not None:
                state.update({"last_fired": r["last_fired"], "last_reason": r["last_reason"]})

    def next_runs(self) -> dict[str, float]:
        """When each scheduled model runs next (Unix time)."""
        out: dict[str, float] = {}
        for model, triggers in self.triggers.items():
            schedule = triggers.get("schedule")
            state = self._state.get((model, "schedule"))
            if isinstance(schedule, ScheduledTrigger) and state is not None:
                out[model] = schedule.next_run(state["last_fired"] or state["armed_at"])
        return out

    async def _ticker(self) -> None:
        lease: Lease | None = None
        while True:
            try:
                # One daemon of a cluster ticks (holds the lease); taking it over, it
                # reads the trigger state the previous holder left.
                held, lease = lease, await self.context.cluster.singleton(SCHEDULER_WORK)
                if lease is not None:
                    if lease != held:
                        await self._arm()
                    with holding(lease):
                        await self.tick()
            except LeaseLost as exc:
                logger.info("scheduler tick stopped: %s", exc)
            except Exception as exc:
                self.context.failed(logger, exc, "scheduler", "scheduler tick failed")
            await asyncio.sleep(self.context.config.training.scheduler_interval_seconds)

    async def tick(self) -> list[JobRecord]:
        """Evaluate every model's triggers without an event; return the jobs submitted."""
        jobs = []
        for model in list(self.triggers):
            jobs.extend(await self.evaluate(model, None))
        return jobs

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        if event.kind in _OWN_EVENTS or event.model not in self.triggers:
            return
        await self.evaluate(event.model, event)

    async def evaluate(self, model: str, event: Event | None) -> list[JobRecord]:
        """Evaluate ``model``'s triggers for ``event`` (None: a tick); submit what fires."""
        fired: list[tuple[str, Decision]] = []
        lock = self._locks.setdefault(model, asyncio.Lock())
        async with lock:  # cooldown check and record are atomic per model
            if not self.context.store.is_sqlite:
                # Another daemon may have fired this model's triggers (it owned the
                # model, or the tick, before): their cooldowns count from the store.
                await self._reload(model)
            for name, trigger in self.triggers.get(model, {}).items():
                state = self._state.get((model, name))
                if state is None:
                    continue
                now = self.context.clock()
                last = state["last_fired"]
                cooldown = float(getattr(trigger, "cooldown_seconds", 0.0))
                if last is not None and now - last < cooldown:
                    continue
                context = TriggerContext(
                    model=model,
                    now=now,
                    event=event,
                    last_fired=last,
                    armed_at=state["armed_at"],
                    outcomes=self.outcomes,
                )
                try:
                    decision = trigger.evaluate(context)
                    if inspect.isawaitable(decision):
                        decision = await decision
                except Exception as exc:
                    self.context.plugin_failed(f"trigger {name}", "evaluate", exc)
                    continue
                if not isinstance(decision, Decision) or not decision.fire:
                    continue
                await self._record_fired(model, name, now, decision.reason)
                fired.append((name, decision))
        jobs = []
        for name, decision in fired:
            job = await self._fire(model, name, decision)
            if job is not None:
                jobs.append(job)
        return jobs

    async def _record_fired(self, model: str, name: str, now: float, reason: str) -> None:
        async with self.context.store.begin() as conn:
            await fence(conn)  # a former tick holder's fire is refused before it submits
            await conn.execute(
                trigger_state.update()
                .where(trigger_state.c.model == model, trigger_state.c.trigger == name)
                .values(last_fired=now, last_reason=reason)
            )
        self._state[(model, name)].update({"last_fired": now, "last_reason": reason})

    async def _fire(self, model: str, name: str, decision: Decision) -> JobRecord | None:
        self.context.metrics.triggers_fired.labels(model, name).inc()
        logger.info("trigger %s fired for %s: %s", name, model, decision.reason)
        job: JobRecord | None = None
        created = False
        try:
            job, created = await self.jobs.submit_job(model, reason=decision.reason, trigger=name)
        except (NotFound, Conflict) as exc:
            logger.warning("trigger %s fired for %s but no job can run: %s", name, model, exc)
        data = {
            "trigger": name,
            "reason": decision.reason,
            "job_id": job["id"] if job else None,
            "new_job": created,
            **decision.data,
        }
        await self.context.audit.record(
            actor="mlwarden",
            action="trigger fired",
            target=f"model={model},trigger={name}",
            outcome="job queued" if created else "job already active" if job else "no job",
            detail=data,
        )
        await self.context.emit(
            Event(
                kind="trigger_fired",
                model=model,
                severity=decision.severity,
                message=f"trigger {name} fired: {decision.reason}",
                data=data,
            )
        )
        return job
