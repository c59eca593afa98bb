"""The rollout controller: drives each active rollout's strategy one tick at a time.

Owned by the ``rollouts`` service (daemon/rollouts/service.py); the controller holds the
active rollouts and their locks, and the state machine's steps: it
gathers the evidence (the pre-flight load check, the fast path on gateway errors, the
analysis of the candidate against the baseline: daemon/rollouts/evidence.py), asks the
strategy, runs the confirm-promotion hook, and promotes or rolls back with the events,
audit entries and ``mlwarden_rollouts_total``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ...errors import Conflict, InvalidInput, PluginError
from ...types import Analysis, Event, RolloutView, Severity, Step
from ..core.context import Context
from ..core.leases import fence
from ..core.store import Store
from ..ingest.interfaces import PredictionSink
from ..registry.interfaces import VersionLifecycle
from .evidence import analyze, gateway_errors, preflight
from .gateway import Gateway
from .records import (
    ACTIVE,
    Rollout,
    RolloutState,
    analyses_table,
    public,
    rollout_from_row,
    rollouts_table,
    row_values,
    shadow_table,
    step_record,
)
from .serving import RolloutLocks, Serving, StatusMove, serving_change
from .strategy import DeploymentStrategy
from .traffic import TrafficTables

__all__ = ["RolloutController"]

logger = logging.getLogger(__name__)


class RolloutController:
    """The steps of the rollout state machine, for one ``rollouts`` service."""

    def __init__(
        self,
        context: Context,
        *,
        registry: VersionLifecycle,
        ingest: PredictionSink,
        traffic_tables: TrafficTables,
        gateway: Gateway,
    ) -> None:
        self.context = context
        self.registry = registry
        self.ingest = ingest
        self.traffic_tables = traffic_tables
        self.gateway = gateway
        #: The active rollout of each model (at most one), as persisted.
        self.active: dict[str, Rollout] = {}
        #: Held while a model's rollout changes (a tick, a start, a rollback): by this
        #: daemon's tasks and, through the registry's lock, by every daemon's.
        self.locks = RolloutLocks(registry, traffic_tables)
        #: The one place where what serves changes (registry, aliases, table, rollout).
        self.serving = Serving(
            context, registry=registry, traffic_tables=traffic_tables, active=self.active
        )

    # -- the active rollouts ----------------------------------------------------------

    async def load_active(self, *, locked: bool = False) -> None:
        """Read the active rollouts from the store (what every daemon agrees on).

        ``locked`` (a store other daemons share, read at every tick): each model's copy
        is re-read and replaced under the model's lock (``locks[model]``), so an action
        of this daemon in progress on a model (an API rollback holding its copy) ends
        before the copy is replaced, and the copy read is the state it left.
        """
        listed = await _read_active(self.context.store)
        if not locked:
            self.active.clear()
            self.active.update(listed)
            return
        for model in sorted(set(listed) | set(self.active)):
            async with self.locks[model]:
                fresh = (await _read_active(self.context.store, model)).get(model)
                if fresh is None:
                    self.active.pop(model, None)
                else:
                    self.active[model] = fresh

    # -- the controller --------------------------------------------------------------

    async def tick(self) -> list[Rollout]:
        """Advance every active rollout once; returns the rollouts after the tick."""
        out = []
        for model in list(self.active):
            async with self.locks[model]:
                rollout = self.active.get(model)
                if rollout is None:
                    continue
                try:
                    await self.advance(rollout)
                except Exception as exc:
                    self.context.failed(
                        logger, exc, f"rollout {model}", "rollout %s of %s: tick failed",
                        rollout["id"], model,
                    )  # fmt: skip
                out.append(public(rollout))
        return out

    async def advance(self, rollout: Rollout) -> None:
        try:
            strategy = self.strategy_for(rollout["strategy"], rollout["options"])
        except (PluginError, InvalidInput) as exc:
            await self.finish_rollback(
                rollout,
                f"strategy unavailable: {exc}",
                actor="mlwarden",
                automatic=True,
                state="failed",
            )
            return
        view = self._view(rollout)
        if rollout["state"] == "pending":
            if rollout["baseline"] is None:
                await self._apply(
                    rollout,
                    Step("promote", reason="first version of the model: nothing to compare with"),
                    None,
                )
                return
            failed = await preflight(self.context, self.gateway, rollout)
            if failed is not None:
                await self._apply(rollout, Step("rollback", reason=failed.reason), failed)
                return
            await self._apply(rollout, strategy.first(view), None)
            return
        if rollout["state"] == "paused":
            held = Step(**rollout["held"]) if rollout["held"] else None
            if held is not None:
                await self._apply(rollout, held, None)
            return
        fast = await gateway_errors(self.context, self.gateway, rollout, strategy)
        if fast is not None:
            await self._apply(rollout, Step("rollback", reason=fast.reason), fast)
            return
        if view.now < rollout["next_analysis_at"] or not strategy.due(view):
            return
        analysis = await analyze(self.context, self.ingest, self.gateway, rollout, strategy, view)
        step = strategy.decide(view, analysis)
        await self._apply(rollout, step, analysis)

    def _view(self, rollout: Rollout) -> RolloutView:
        return RolloutView(
            model=rollout["model"], candidate=rollout["candidate"],
            baseline=rollout["baseline"], step=rollout["step"],
            step_started_at=rollout["step_started_at"], now=self.context.clock(),
            weight=rollout["weight"], mirror=rollout["mirror"],
            failures=rollout["failures"], memo=dict(rollout["memo"]),
        )  # fmt: skip

    async def _apply(self, rollout: Rollout, step: Step, analysis: Analysis | None) -> None:
        now = self.context.clock()
        if analysis is not None:
            await self._store_analysis(rollout, analysis, step)
        if step.action == "wait":
            rollout["next_analysis_at"] = now + min(
                float(rollout["options"].get("interval_seconds", 60)), 60.0
            )
            rollout["reason"] = step.reason
            await self._save(rollout)
            return
        if step.action == "retry":
            rollout.update(
                {
                    "failures": rollout["failures"] + 1,
                    "step_started_at": now,
                    "next_analysis_at": now,
                    "reason": step.reason,
                }
            )
            await self._save(rollout)
            await self.emit("rollout_step", rollout, Severity.WARNING, step.reason, analysis)
            return
        if step.action == "rollback":
            await self.finish_rollback(rollout, step.reason, actor="mlwarden", automatic=True)
            return
        needs_confirm = step.confirm if step.confirm is not None else step.action == "promote"
        if needs_confirm and step.action in ("traffic", "promote"):
            if not await self._confirmed(rollout, step):
                if rollout["state"] != "paused":
                    rollout.update(
                        {
                            "state": "paused",
                            "held": step_record(step),
                            "reason": "held by the confirm-promotion hook",
                        }
                    )
                    await self._save(rollout)
                    await self.emit(
                        "rollout_step", rollout, Severity.INFO, "held by the confirm-promotion hook"
                    )
                return
            rollout["held"] = None
        if step.action == "traffic":
            await self._set_step_traffic(rollout, step)
        elif step.action == "promote":
            await self._finish_promote(rollout, step.reason)
        elif step.action == "complete":
            await self.complete(rollout, step.reason)

    async def _confirmed(self, rollout: Rollout, step: Step) -> bool:
        hook = self.context.pm.hook.mlwarden_confirm_promotion
        impls = hook.get_hookimpls()
        if not impls:
            return True
        view: dict[str, object] = {**public(rollout), "next_step": step_record(step)}
        answers = await self.context.call_hook(
            "mlwarden_confirm_promotion",
            model=rollout["model"],
            version=rollout["candidate"],
            rollout=view,
        )
        # call_hook leaves out implementations that raised or timed out: they hold.
        return len(answers) == len(impls) and all(a is not False for a in answers)

    async def _set_step_traffic(self, rollout: Rollout, step: Step) -> None:
        now = self.context.clock()
        weight = float(step.weight or 0.0)
        weights = {rollout["candidate"]: weight}
        if rollout["baseline"] is not None:  # always, but for a first version (promoted)
            weights[rollout["baseline"]] = 1.0 - weight
        after: Rollout = {
            **rollout,
            "state": "progressing",
            "step": step.index if step.index is not None else rollout["step"],
            "weight": weight, "mirror": step.mirror, "step_started_at": now,
            "next_analysis_at": now, "reason": step.reason, "updated_at": now,
            "memo": {**rollout["memo"], **(step.memo or {})}, "held": None,
        }  # fmt: skip
        positive = {v: w for v, w in weights.items() if w > 0}
        change = serving_change(
            rollout["model"],
            actor="mlwarden",
            reason=f"rollout {rollout['id']}: {step.reason}",
            weights=positive or None,
            rollout=after,
        )
        await self.serving.apply(change, live=rollout)
        await self.emit("rollout_step", rollout, Severity.INFO, step.reason)

    async def _finish_promote(self, rollout: Rollout, reason: str) -> None:
        version = rollout["candidate"]
        change = serving_change(
            rollout["model"],
            actor="mlwarden",
            reason=f"rollout {rollout['id']}: {reason}",
            production=version,
            weights={version: 1.0},
            rollout=self._finished(rollout, "promoted", reason),
        )
        try:
            await self.serving.apply(change, live=rollout)
        except Conflict as exc:
            await self.finish_rollback(
                rollout,
                f"promotion refused by the registry: {exc}",
                actor="mlwarden",
                automatic=True,
                state="failed",
            )
            return
        await self._announce(rollout, "rollout_promoted", Severity.INFO, actor="mlwarden")

    async def complete(self, rollout: Rollout, reason: str) -> None:
        """End without promoting (a shadow comparison only recorded): the baseline alone."""
        baseline = rollout["baseline"]
        change = serving_change(
            rollout["model"],
            actor="mlwarden",
            reason=f"rollout {rollout['id']} completed: {reason}",
            weights={baseline: 1.0} if baseline else None,
            rollout=self._finished(rollout, "completed", reason),
        )
        await self.serving.apply(change, live=rollout)
        await self._announce(rollout, "rollout_promoted", Severity.INFO, actor="mlwarden")

    async def finish_rollback(
        self,
        rollout: Rollout,
        reason: str,
        *,
        actor: str,
        automatic: bool,
        state: RolloutState = "rolled_back",
    ) -> None:
        """Traffic back to the baseline alone, the rollout ended as ``state``; an automatic
        rollback also fails the candidate (a manual one leaves it in staging)."""
        model, candidate, baseline = rollout["model"], rollout["candidate"], rollout["baseline"]
        moves: list[StatusMove] = []
        if automatic and state == "rolled_back":
            moves.append({"version": candidate, "from_status": "staging", "to_status": "failed"})
        # The candidate is not production during its rollout; should it be (a state left
        # by an older release), the baseline takes production back with the traffic.
        production = await self.registry.production(model)
        restore = baseline if production and production["version"] == candidate else None
        change = serving_change(
            model,
            actor=actor,
            reason=f"rollout {rollout['id']} {state}: {reason}",
            production=restore,
            moves=moves,
            weights={baseline: 1.0} if baseline else None,
            rollout=self._finished(rollout, state, reason),
        )
        await self.serving.apply(change, live=rollout)
        await self._announce(rollout, "rollout_rolled_back", Severity.CRITICAL, actor=actor)

    def _finished(self, rollout: Rollout, state: RolloutState, reason: str) -> Rollout:
        now = self.context.clock()
        return {
            **rollout,
            "state": state, "finished_at": now, "updated_at": now, "reason": reason,
            "mirror": False, "held": None, "active": False,
            "weight": 1.0 if state == "promoted" else 0.0,
        }  # fmt: skip

    async def _announce(
        self, rollout: Rollout, kind: str, severity: Severity, *, actor: str
    ) -> None:
        """What follows a finished rollout: its mirrored answers dropped, the counter,
        the audit entry and the event."""
        state, reason = rollout["state"], rollout["reason"]
        # The mirrored answers served their analysis (stored with its values): drop them.
        async with self.context.store.begin() as conn:
            await conn.execute(
                shadow_table.delete().where(
                    shadow_table.c.model == rollout["model"],
                    shadow_table.c.version == rollout["candidate"],
                )
            )
        self.context.metrics.rollouts.labels(rollout["model"], rollout["strategy"], state).inc()
        await self.context.audit.record(
            actor=actor,
            action=f"rollout {state}",
            target=f"model={rollout['model']},version={rollout['candidate']}",
            outcome=state,
            detail={"rollout": rollout["id"], "reason": reason},
        )
        await self.emit(kind, rollout, severity, reason)

    async def _store_analysis(self, rollout: Rollout, analysis: Analysis, step: Step) -> None:
        async with self.context.store.begin() as conn:
            await fence(conn)  # a tick's analysis: only while this daemon holds the rollouts
            await conn.execute(
                analyses_table.insert().values(
                    rollout_id=rollout["id"],
                    step=rollout["step"],
                    ts=self.context.clock(),
                    verdict=analysis.verdict,
                    action=step.action,
                    detail=json.dumps(
                        {**analysis.to_dict(), "decision": step.reason},
                        allow_nan=False,
                        default=float,
                    ),
                )
            )
        rollout["last_analysis"] = analysis.to_dict()

    async def _save(self, rollout: Rollout) -> None:
        rollout["updated_at"] = self.context.clock()
        async with self.context.store.begin() as conn:
            await fence(conn)  # a tick's step: refused once another daemon took over
            await conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout["id"])
                .values(**row_values(rollout))
            )

    async def emit(
        self,
        kind: str,
        rollout: Rollout,
        severity: Severity,
        message: str,
        analysis: Analysis | None = None,
    ) -> None:
        data: dict[str, object] = {
            "rollout": rollout["id"], "strategy": rollout["strategy"],
            "state": rollout["state"], "step": rollout["step"], "baseline": rollout["baseline"],
            "weights": self.traffic_tables.get(rollout["model"]) or {},
        }  # fmt: skip
        last = analysis.to_dict() if analysis else rollout.get("last_analysis")
        if last:
            data["analysis"] = last
        await self.context.emit(
            Event(
                kind=kind,
                model=rollout["model"],
                version=rollout["candidate"],
                severity=severity,
                message=message,
                data=data,
                ts=self.context.clock(),
            )
        )

    # -- strategies ------------------------------------------------------------------

    def default_strategy(self, model: str) -> str:
        config = self.context.config.model(model)
        return (
            config.strategy
            if config and config.strategy
            else self.context.config.deployment.default_strategy
        )

    def strategy_for(self, name: str, stored: Mapping[str, Any] | None) -> DeploymentStrategy:
        """The strategy ``name`` with its stored options (a resumed rollout keeps them)."""
        options = (
            stored
            if stored is not None
            else self.context.config.deployment.strategies.get(name, {})
        )
        return self.instantiate(name, options)

    def instantiate(self, name: str, options: Mapping[str, Any]) -> DeploymentStrategy:
        try:
            cls = self.context.plugins.get("strategy", name)
        except PluginError as exc:
            raise InvalidInput(str(exc), code="unknown_strategy") from None
        try:
            return cls(**options)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"strategy {name!r} ([deployment.strategies.{name}]): {exc}",
                code="invalid_strategy_options",
            ) from None


async def _read_active(store: Store, model: str | None = None) -> dict[str, Rollout]:
    """The active rollouts in the store (of ``model`` only, when given), by model."""
    t = rollouts_table
    query = sa.select(t).where(t.c.state.in_(ACTIVE))
    if model is not None:
        query = query.where(t.c.model == model)
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {row.model: rollout_from_row(row) for row in rows}
