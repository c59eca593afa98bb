"""The rollout controller (service ``rollouts``): traffic, the gateway, and strategies driven.

At most one active rollout per model. A rollout is a persisted state machine::

    pending -> progressing (step i) <-> paused (held by the confirm-promotion hook)
            -> promoted | rolled_back | failed | completed

Every change is written before it takes effect on traffic, so a restarted daemon
resumes each active rollout at the same step, with the same step start time. The
controller is ticked by a background loop (``deployment.tick_seconds``) and by
``tick()`` in tests, which drive it with an injected clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import sqlalchemy as sa

from .. import hookimpl
from ..errors import Conflict, InvalidInput, NotFound, PluginError
from ..plugins.strategies import Analysis, Check, RolloutView, Step, Strategy
from ..types import Event, Severity
from .analysis import VersionSample, compare, sample_from_outcomes
from .gateway import Gateway, parse_predict_body
from .rollout_records import (
    ACTIVE,
    ROLLOUTS_SCHEMA,
    analyses_table,
    rollout_from_row,
    rollouts_table,
)
from .service import Service
from .traffic import TrafficTables

__all__ = ["RolloutService"]

logger = logging.getLogger(__name__)

#: A candidate failing this share of gateway calls in a step (over at least this many
#: calls) is rolled back at once, without waiting for the step's analysis.
_FAST_FAIL_MIN_CALLS = 20


class RolloutService(Service):
    """Owns traffic tables, sticky routing, the gateway and the rollout controller."""

    name = "rollouts"
    schema = ROLLOUTS_SCHEMA

    def __init__(self, warden: Any) -> None:
        super().__init__(warden)
        self.traffic_tables = TrafficTables(warden)
        self.gateway = Gateway(warden)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.active: dict[str, dict[str, Any]] = {}  # model -> active rollout

    # -- lifecycle -------------------------------------------------------------------

    async def start(  # type: ignore[override]
        self,
        model: str | None = None,
        version: str | None = None,
        *,
        strategy: str | None = None,
        actor: str = "mlwarden",
    ) -> Any:
        """Without arguments, start the service; with ``model`` and ``version``, a rollout.

        The contract between services names the rollout call ``rollouts.start(model,
        version, *, strategy=None, actor)``, the lifecycle calls ``start()``: both meet
        here. Starting a rollout returns it; Conflict (409) when one is active.
        """
        if model is None:
            return await self._start_service()
        if version is None:
            raise InvalidInput(f"rollout of model {model!r}: the version to roll out is required")
        return await self._start_rollout(model, version, strategy=strategy, actor=actor)

    async def _start_service(self) -> None:
        self.traffic_tables.build_backends()
        await self.traffic_tables.load()
        async with self.warden.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(rollouts_table).where(rollouts_table.c.state.in_(ACTIVE))
                )
            ).all()
        self.active = {r.model: rollout_from_row(r) for r in rows}
        for rollout in self.active.values():
            logger.info(
                "resuming rollout %s of %s %s at step %d (%s)",
                rollout["id"],
                rollout["model"],
                rollout["candidate"],
                rollout["step"],
                rollout["state"],
            )
        self.warden.spawn(self._loop(), name="rollouts-tick")

    async def stop(self) -> None:
        await self.gateway.close()

    async def reload(self, config: Any) -> None:
        for name, options in config.deployment.strategies.items():
            self._instantiate(name, options)
        self.traffic_tables.build_backends()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.warden.config.deployment.tick_seconds)
            try:
                await self.tick()
            except Exception as exc:  # a bad tick must not end the loop
                logger.exception("rollout tick failed")
                self.warden.record_error("rollouts tick", repr(exc))

    def routes(self) -> list[Any]:
        from .api.rollouts import rollout_routes

        return rollout_routes()

    async def health(self) -> dict[str, Any]:
        errors = dict(self.traffic_tables.backend_errors)
        return {
            "status": "degraded" if errors else "ok",
            "active_rollouts": {
                m: f"{r['candidate']} {r['state']} step {r['step']}" for m, r in self.active.items()
            },
            "gateway": self.warden.config.deployment.gateway,
            "loaded_models": self.gateway.loaded,
            "backend_errors": errors,
        }

    # -- the contract: traffic ---------------------------------------------------------

    async def traffic(self, model: str) -> dict[str, float]:
        """The table in force; the production version alone when none was ever set."""
        table = self.traffic_tables.get(model)
        if table:
            return table
        registry = self.warden.services.get("registry")
        production = await registry.production(model) if registry else None
        if production is None:
            raise NotFound(f"model {model!r} has no traffic table and no production version")
        return {production["version"]: 1.0}

    async def set_traffic(
        self, model: str, weights: dict[str, float], *, reason: str, actor: str = "mlwarden"
    ) -> dict[str, float]:
        """Persist ``weights``, apply them through the backends, update the metric."""
        registry = self.warden.services.get("registry")
        if registry is not None:
            for version in weights:
                await registry.get(model, version)  # NotFound names an unknown version
        return await self.traffic_tables.set(model, weights, reason=reason, actor=actor)

    def route(self, model: str, key: str) -> str:
        """The version serving ``key`` (sticky hashing proportional to the weights)."""
        return self.traffic_tables.route(model, key)

    # -- the contract: rollouts ------------------------------------------------------

    async def _start_rollout(
        self, model: str, version: str, *, strategy: str | None, actor: str
    ) -> dict[str, Any]:
        registry = self.warden.service("registry")
        record = await registry.get(model, version)
        name = strategy or self._default_strategy(model)
        instance = self._strategy(name, None)
        async with self._locks[model]:
            if model in self.active:
                current = self.active[model]
                raise Conflict(
                    f"model {model!r} already has an active rollout of version "
                    f"{current['candidate']} ({current['state']}, id "
                    f"{current['id']}); roll it back or wait for it to finish"
                )
            table = self.traffic_tables.get(model)
            production = await registry.production(model)
            current = production["version"] if production else None
            if table and current not in table:
                baseline = max(sorted(table), key=lambda v: table[v])
            else:
                baseline = current
            if baseline == version and (not table or table.get(version) == 1.0):
                raise Conflict(f"model {model!r} version {version} already serves all traffic")
            if record["status"] == "validation":
                await registry.transition(
                    model,
                    version,
                    "staging",
                    actor=actor,
                    reason=f"rollout ({name}) started by {actor}",
                )
            elif record["status"] not in ("staging", "deprecated"):
                raise Conflict(
                    f"model {model!r} version {version} is {record['status']}: a "
                    "rollout needs a version in validation, staging or deprecated"
                )
            now = self.warden.clock()
            rollout = {
                "id": uuid.uuid4().hex, "model": model, "candidate": version,
                "baseline": baseline, "strategy": name, "options": instance.options(),
                "state": "pending", "step": -1, "weight": 0.0, "mirror": False,
                "failures": 0, "memo": {}, "held": None, "step_started_at": now,
                "next_analysis_at": now, "started_at": now, "updated_at": now,
                "finished_at": None, "actor": actor, "reason": f"started by {actor}",
            }  # fmt: skip
            async with self.warden.store.begin() as conn:
                await conn.execute(rollouts_table.insert().values(**_columns(rollout)))
            rollout["active"] = True
            self.active[model] = rollout
            await self._event(
                "rollout_started", rollout, Severity.INFO, f"rollout of {version} started ({name})"
            )
            await self._advance(rollout)
            return self._public(self.active.get(model) or await self.get(rollout["id"]))

    async def rollback(
        self, model: str, *, version: str | None = None, actor: str
    ) -> dict[str, Any]:
        """Fast path, no analysis: end the active rollout, or restore a former version."""
        async with self._locks[model]:
            rollout = self.active.get(model)
            if rollout is not None:
                if version is not None and version != rollout["baseline"]:
                    raise Conflict(
                        f"model {model!r}: the active rollout of "
                        f"{rollout['candidate']} can only roll back to its baseline "
                        f"{rollout['baseline']}, not {version}"
                    )
                await self._finish_rollback(
                    rollout, f"manual rollback by {actor}", actor=actor, automatic=False
                )
                return self._public(await self.get(rollout["id"]))
            from .registry_ops import rollback as registry_rollback

            result = await registry_rollback(self.warden, model, version, actor=actor)
            await self.traffic_tables.set(
                model,
                {result["version"]: 1.0},
                actor=actor,
                reason=f"rollback to {result['version']} by {actor}",
            )
            return {**result, "traffic": {result["version"]: 1.0}}

    # -- reads ---------------------------------------------------------------------

    async def get(self, rollout_id: str) -> dict[str, Any]:
        async with self.warden.store.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(rollouts_table).where(rollouts_table.c.id == rollout_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no rollout with id {rollout_id!r}")
        return rollout_from_row(row)

    async def history(self, model: str, limit: int = 20) -> list[dict[str, Any]]:
        async with self.warden.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(rollouts_table)
                    .where(rollouts_table.c.model == model)
                    .order_by(rollouts_table.c.started_at.desc())
                    .limit(limit)
                )
            ).all()
        return [self._public(rollout_from_row(r)) for r in rows]

    async def analyses(self, rollout_id: str) -> list[dict[str, Any]]:
        async with self.warden.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(analyses_table)
                    .where(analyses_table.c.rollout_id == rollout_id)
                    .order_by(analyses_table.c.id)
                )
            ).all()
        return [
            {
                "step": r.step,
                "ts": r.ts,
                "verdict": r.verdict,
                "action": r.action,
                **json.loads(r.detail),
            }
            for r in rows
        ]

    async def deployment(self, model: str) -> dict[str, Any]:
        """The active (or latest) rollout with its analyses, and the traffic table."""
        try:
            table = await self.traffic(model)
        except NotFound:
            table = {}
        history = await self.history(model, limit=1)
        rollout = history[0] if history else None
        if rollout is not None:
            rollout["analyses"] = await self.analyses(rollout["id"])
        return {
            "model": model,
            "traffic": table,
            "rollout": rollout,
            "mirror": self.mirror_target(model),
            "gateway": self.warden.config.deployment.gateway,
        }

    def mirror_target(self, model: str) -> str | None:
        rollout = self.active.get(model)
        return rollout["candidate"] if rollout and rollout["mirror"] else None

    # -- the gateway ---------------------------------------------------------------

    async def predict(self, model: str, body: Any) -> dict[str, Any]:
        if not self.warden.config.deployment.gateway:
            raise NotFound(
                "the gateway is switched off (deployment.gateway = false); ask "
                f"GET /api/models/{model}/route?key= and serve elsewhere"
            )
        records = parse_predict_body(model, body)
        table = await self.traffic(model)
        answers = await self.gateway.predict(model, records, table, self.mirror_target(model))
        return {"model": model, "predictions": answers}

    # -- the controller --------------------------------------------------------------

    async def tick(self) -> list[dict[str, Any]]:
        """Advance every active rollout once; returns the rollouts after the tick."""
        out = []
        for model in list(self.active):
            async with self._locks[model]:
                rollout = self.active.get(model)
                if rollout is None:
                    continue
                try:
                    await self._advance(rollout)
                except Exception as exc:
                    logger.exception("rollout %s of %s: tick failed", rollout["id"], model)
                    self.warden.record_error(f"rollout {model}", repr(exc))
                out.append(self._public(dict(rollout)))
        return out

    async def _advance(self, rollout: dict[str, Any]) -> None:
        try:
            strategy = self._strategy(rollout["strategy"], rollout["options"])
        except (PluginError, InvalidInput) as exc:
            await self._finish_rollback(
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
            failed = await self._preflight(rollout)
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
        fast = self._gateway_errors(rollout, strategy)
        if fast is not None:
            await self._apply(rollout, Step("rollback", reason=fast.reason), fast)
            return
        if view.now < rollout["next_analysis_at"] or not strategy.due(view):
            return
        analysis = await self._analyze(rollout, strategy, view)
        step = strategy.decide(view, analysis)
        await self._apply(rollout, step, analysis)

    def _view(self, rollout: dict[str, Any]) -> RolloutView:
        return RolloutView(
            model=rollout["model"], candidate=rollout["candidate"],
            baseline=rollout["baseline"], step=rollout["step"],
            step_started_at=rollout["step_started_at"], now=self.warden.clock(),
            weight=rollout["weight"], mirror=rollout["mirror"],
            failures=rollout["failures"], memo=dict(rollout["memo"]),
        )  # fmt: skip

    async def _preflight(self, rollout: dict[str, Any]) -> Analysis | None:
        """With the gateway on, the candidate must load before it gets any traffic."""
        if not self.warden.config.deployment.gateway:
            return None
        now = self.warden.clock()
        try:
            await self.gateway.load(rollout["model"], rollout["candidate"])
        except Exception as exc:
            return Analysis(
                "fail",
                (Check("model_load", 0.0, None, 1.0, False, "the candidate's pyfunc model loads"),),
                since=now,
                until=now,
                reason=f"candidate failed to load: {type(exc).__name__}: {exc}",
            )
        return None

    def _gateway_errors(self, rollout: dict[str, Any], strategy: Strategy) -> Analysis | None:
        """The fast path: gateway errors of the candidate over the threshold in this step."""
        now = self.warden.clock()
        stats = self.gateway.stats.get((rollout["model"], rollout["candidate"]))
        if stats is None:
            return None
        calls, errors, _ = stats.window(rollout["step_started_at"], now)
        limit = strategy.thresholds.max_error_rate
        if calls < min(_FAST_FAIL_MIN_CALLS, strategy.thresholds.min_samples):
            return None
        rate = errors / calls
        if rate <= limit:
            return None
        return Analysis(
            "fail",
            (
                Check(
                    "gateway_error_rate",
                    rate,
                    None,
                    limit,
                    False,
                    "candidate's gateway error rate <= max_error_rate",
                ),
            ),
            samples={"candidate_requests": calls, "candidate_errors": errors},
            since=rollout["step_started_at"],
            until=now,
            reason=f"gateway errors over the threshold: {errors} of {calls} calls failed "
            f"({rate:.1%} > {limit:.1%})",
        )

    async def _analyze(
        self, rollout: dict[str, Any], strategy: Strategy, view: RolloutView
    ) -> Analysis:
        (cs, cu), (bs, bu) = strategy.windows(view)
        model = rollout["model"]
        baseline = await self._sample(model, rollout["baseline"], bs, bu)
        if rollout["mirror"]:
            candidate = await self._shadow_sample(rollout, cs, cu)
        else:
            candidate = await self._sample(model, rollout["candidate"], cs, cu)
        config = self.warden.config.model(model)
        analysis = compare(
            candidate,
            baseline,
            strategy.thresholds,
            task=config.task if config else "regression",
            since=cs,
            until=cu,
        )
        if bs != cs or bu != cu:
            analysis.samples["baseline_since"] = bs
            analysis.samples["baseline_until"] = bu
        return analysis

    async def _sample(self, model: str, version: str, since: float, until: float) -> VersionSample:
        ingest = self.warden.services.get("ingest")
        if ingest is not None:
            outcomes = await ingest.outcomes(model, version=version, since=since, until=until)
            sample = sample_from_outcomes(outcomes)
        else:
            sample = VersionSample()
        stats = self.gateway.stats.get((model, version))
        if stats is not None:
            calls, errors, latency = stats.window(since, until)
            if calls:  # the gateway saw every call, labelled or not
                sample.requests, sample.errors, sample.latency = calls, errors, latency
        return sample

    async def _shadow_sample(
        self, rollout: dict[str, Any], since: float, until: float
    ) -> VersionSample:
        """The shadow candidate's mirrored answers joined to the labels of the same requests."""
        model, version = rollout["model"], rollout["candidate"]
        sample = VersionSample()
        ingest = self.warden.services.get("ingest")
        if ingest is not None:
            outcomes = await ingest.outcomes(
                model, version=rollout["baseline"], since=since, until=until
            )
            mirrored = await self.gateway.shadow_sample(model, version, outcomes.id, since, until)
            pairs = [
                (mirrored[str(i)][0], label)
                for i, label in zip(outcomes.id.tolist(), outcomes.label.tolist(), strict=True)
                if str(i) in mirrored and not mirrored[str(i)][2]
            ]
            sample.prediction = np.array([p for p, _ in pairs])
            sample.label = np.array([y for _, y in pairs])
        stats = self.gateway.stats.get((model, version))
        if stats is not None:
            sample.requests, sample.errors, sample.latency = stats.window(since, until)
        return sample

    async def _apply(self, rollout: dict[str, Any], step: Step, analysis: Analysis | None) -> None:
        now = self.warden.clock()
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
                failures=rollout["failures"] + 1,
                step_started_at=now,
                next_analysis_at=now,
                reason=step.reason,
            )
            await self._save(rollout)
            await self._event("rollout_step", rollout, Severity.WARNING, step.reason, analysis)
            return
        if step.action == "rollback":
            await self._finish_rollback(rollout, step.reason, actor="mlwarden", automatic=True)
            return
        needs_confirm = step.confirm if step.confirm is not None else step.action == "promote"
        if needs_confirm and step.action in ("traffic", "promote"):
            if not await self._confirmed(rollout, step):
                if rollout["state"] != "paused":
                    rollout.update(
                        state="paused",
                        held=_step_dict(step),
                        reason="held by the confirm-promotion hook",
                    )
                    await self._save(rollout)
                    await self._event(
                        "rollout_step", rollout, Severity.INFO, "held by the confirm-promotion hook"
                    )
                return
            rollout["held"] = None
        if step.action == "traffic":
            await self._set_step_traffic(rollout, step)
        elif step.action == "promote":
            await self._finish_promote(rollout, step.reason)
        elif step.action == "complete":
            await self._finish(
                rollout,
                "completed",
                step.reason,
                {rollout["baseline"]: 1.0},
                "rollout_promoted",
                Severity.INFO,
                actor="mlwarden",
            )

    async def _confirmed(self, rollout: dict[str, Any], step: Step) -> bool:
        hook = self.warden.pm.hook.mlwarden_confirm_promotion
        impls = hook.get_hookimpls()
        if not impls:
            return True
        view = self._public(dict(rollout)) | {"next_step": _step_dict(step)}
        answers = await self.warden.call_hook(
            "mlwarden_confirm_promotion",
            model=rollout["model"],
            version=rollout["candidate"],
            rollout=view,
        )
        # call_hook leaves out implementations that raised or timed out: they hold.
        return len(answers) == len(impls) and all(a is not False for a in answers)

    async def _set_step_traffic(self, rollout: dict[str, Any], step: Step) -> None:
        now = self.warden.clock()
        weight = float(step.weight or 0.0)
        weights = {rollout["candidate"]: weight, rollout["baseline"]: 1.0 - weight}
        rollout.update(
            state="progressing", step=step.index if step.index is not None else rollout["step"],
            weight=weight, mirror=step.mirror, step_started_at=now, next_analysis_at=now,
            reason=step.reason, memo={**rollout["memo"], **(step.memo or {})}, held=None,
        )  # fmt: skip
        await self._save(rollout)
        await self.traffic_tables.set(
            rollout["model"],
            {v: w for v, w in weights.items() if w > 0},
            reason=f"rollout {rollout['id']}: {step.reason}",
            actor="mlwarden",
        )
        await self._event("rollout_step", rollout, Severity.INFO, step.reason)

    async def _finish_promote(self, rollout: dict[str, Any], reason: str) -> None:
        model, version = rollout["model"], rollout["candidate"]
        registry = self.warden.service("registry")
        record = await registry.get(model, version)
        if record["status"] != "production":
            try:
                await registry.transition(
                    model,
                    version,
                    "production",
                    actor="mlwarden",
                    reason=f"rollout {rollout['id']}: {reason}",
                )
            except Conflict as exc:
                await self._finish_rollback(
                    rollout,
                    f"promotion refused by the registry: {exc}",
                    actor="mlwarden",
                    automatic=True,
                    state="failed",
                )
                return
        await self._finish(
            rollout,
            "promoted",
            reason,
            {version: 1.0},
            "rollout_promoted",
            Severity.INFO,
            actor="mlwarden",
        )

    async def _finish_rollback(
        self,
        rollout: dict[str, Any],
        reason: str,
        *,
        actor: str,
        automatic: bool,
        state: str = "rolled_back",
    ) -> None:
        baseline = rollout["baseline"]
        if automatic and state == "rolled_back":
            registry = self.warden.service("registry")
            record = await registry.get(rollout["model"], rollout["candidate"])
            if record["status"] == "staging":
                await registry.transition(
                    rollout["model"],
                    rollout["candidate"],
                    "failed",
                    actor="mlwarden",
                    reason=f"rolled back: {reason}",
                )
        await self._finish(
            rollout,
            state,
            reason,
            {baseline: 1.0} if baseline else None,
            "rollout_rolled_back",
            Severity.CRITICAL,
            actor=actor,
        )

    async def _finish(
        self,
        rollout: dict[str, Any],
        state: str,
        reason: str,
        weights: dict[str, float] | None,
        kind: str,
        severity: Severity,
        *,
        actor: str,
    ) -> None:
        now = self.warden.clock()
        rollout.update(
            state=state,
            finished_at=now,
            reason=reason,
            mirror=False,
            held=None,
            weight=1.0 if state == "promoted" else 0.0,
        )
        await self._save(rollout)
        self.active.pop(rollout["model"], None)
        if weights:
            await self.traffic_tables.set(
                rollout["model"],
                weights,
                actor=actor,
                reason=f"rollout {rollout['id']} {state}: {reason}",
            )
        self.warden.metrics.rollouts.labels(rollout["model"], rollout["strategy"], state).inc()
        await self.warden.audit.record(
            actor=actor,
            action=f"rollout {state}",
            target=f"model={rollout['model']},version={rollout['candidate']}",
            outcome=state,
            detail={"rollout": rollout["id"], "reason": reason},
        )
        await self._event(kind, rollout, severity, reason)

    async def _store_analysis(
        self, rollout: dict[str, Any], analysis: Analysis, step: Step
    ) -> None:
        async with self.warden.store.begin() as conn:
            await conn.execute(
                analyses_table.insert().values(
                    rollout_id=rollout["id"],
                    step=rollout["step"],
                    ts=self.warden.clock(),
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

    async def _save(self, rollout: dict[str, Any]) -> None:
        rollout["updated_at"] = self.warden.clock()
        async with self.warden.store.begin() as conn:
            await conn.execute(
                rollouts_table.update()
                .where(rollouts_table.c.id == rollout["id"])
                .values(**_columns(rollout))
            )

    async def _event(
        self,
        kind: str,
        rollout: dict[str, Any],
        severity: Severity,
        message: str,
        analysis: Analysis | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "rollout": rollout["id"], "strategy": rollout["strategy"],
            "state": rollout["state"], "step": rollout["step"], "baseline": rollout["baseline"],
            "weights": self.traffic_tables.get(rollout["model"]) or {},
        }  # fmt: skip
        last = analysis.to_dict() if analysis else rollout.get("last_analysis")
        if last:
            data["analysis"] = last
        await self.warden.emit(
            Event(
                kind=kind,
                model=rollout["model"],
                version=rollout["candidate"],
                severity=severity,
                message=message,
                data=data,
                ts=self.warden.clock(),
            )
        )

    # -- strategies ------------------------------------------------------------------

    def _default_strategy(self, model: str) -> str:
        config = self.warden.config.model(model)
        return (
            config.strategy
            if config and config.strategy
            else self.warden.config.deployment.default_strategy
        )

    def _strategy(self, name: str, stored: dict[str, Any] | None) -> Strategy:
        """The strategy ``name`` with its stored options (a resumed rollout keeps them)."""
        options = (
            stored if stored is not None else self.warden.config.deployment.strategies.get(name, {})
        )
        return self._instantiate(name, options)

    def _instantiate(self, name: str, options: dict[str, Any]) -> Strategy:
        try:
            cls = self.warden.plugins.get("strategy", name)
        except PluginError as exc:
            raise InvalidInput(str(exc), code="unknown_strategy") from None
        try:
            return cls(**options)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"strategy {name!r} ([deployment.strategies.{name}]): {exc}",
                code="invalid_strategy_options",
            ) from None

    # -- events ----------------------------------------------------------------------

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        """Follow production changes made outside a rollout (a direct registry promote)."""
        if event.kind != "version_status_changed" or event.data.get("to") != "production":
            return
        model, version = event.model, event.data.get("version")
        if not model or not version or model in self.active:
            return
        if self.traffic_tables.get(model) == {version: 1.0}:
            return
        # Spawned: the registry emits this while holding its per-model lock, which the
        # traffic backends need again (registry.set_alias).
        self.warden.spawn(self._follow(model, version), name=f"rollouts-follow-{model}")

    async def _follow(self, model: str, version: str) -> None:
        async with self._locks[model]:
            if model in self.active or self.traffic_tables.get(model) == {version: 1.0}:
                return
            await self.traffic_tables.set(
                model, {version: 1.0}, actor="registry", reason=f"{version} entered production"
            )

    def _public(self, rollout: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rollout.items() if k != "last_analysis"}


def _columns(rollout: dict[str, Any]) -> dict[str, Any]:
    names = {c.name for c in rollouts_table.columns}
    out = {k: v for k, v in rollout.items() if k in names}
    out["options"] = json.dumps(rollout["options"])
    out["memo"] = json.dumps(rollout["memo"])
    out["held"] = json.dumps(rollout["held"]) if rollout.get("held") else None
    return out


def _step_dict(step: Step) -> dict[str, Any]:
    return {
        "action": step.action,
        "weight": step.weight,
        "index": step.index,
        "mirror": step.mirror,
        "confirm": step.confirm,
        "reason": step.reason,
        "memo": step.memo,
    }
