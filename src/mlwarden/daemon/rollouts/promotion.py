"""Promotions and rollbacks: what an operator's call changes in what serves.

A direct promotion, a move of a version through the lifecycle that touches
production, the start of a rollout and a rollback each check the model's active
rollout (this daemon's, or one another daemon drives) under the model's lock, then go
through the one place where what serves changes (daemon/rollouts/serving.py) or hand
the rollout to the controller (daemon/rollouts/controller.py). The rollouts service
(daemon/rollouts/service.py) offers these calls as its own.
"""

from __future__ import annotations

import uuid

from ...errors import Conflict, InvalidInput
from ...types import Severity
from ..core.context import Context
from ..registry.interfaces import (
    DirectPromotion,
    DirectRollback,
    VersionLifecycle,
    VersionRecord,
)
from .controller import RolloutController
from .records import Rollout, public, read_rollout, rollouts_table, row_values
from .serving import Serving, StatusMove, serving_change
from .traffic import TrafficTables

__all__ = ["Promotions"]


def _why(what: str, reason: str) -> str:
    """What was done, and the caller's reason when one was given."""
    return f"{what}: {reason}" if reason else what


class Promotions:
    """Direct promotions, lifecycle moves, rollout starts and rollbacks of a model."""

    def __init__(
        self,
        context: Context,
        *,
        registry: VersionLifecycle,
        controller: RolloutController,
        traffic_tables: TrafficTables,
    ) -> None:
        self.context = context
        self.registry = registry
        self.controller = controller
        self.traffic_tables = traffic_tables

    @property
    def serving(self) -> Serving:
        return self.controller.serving

    @property
    def active(self) -> dict[str, Rollout]:
        return self.controller.active

    async def promote(
        self,
        model: str,
        version: str,
        *,
        strategy: str | None = None,
        actor: str,
        reason: str = "",
    ) -> Rollout | DirectPromotion:
        """Put ``version`` in production: a rollout when a strategy applies (``strategy``,
        else the model's), a direct switch in the registry otherwise (or ``direct``).
        ``reason`` (the caller's why) goes with the actor into the records."""
        if strategy is not None and (not isinstance(strategy, str) or not strategy):
            raise InvalidInput(f"strategy: expected a strategy name, got {strategy!r}")
        await self.registry.get(model, version)  # NotFound before anything else
        config = self.context.config.model(model)
        chosen = strategy or (config.strategy if config else "")
        if chosen and chosen != "direct":
            return await self.start_rollout(
                model, version, strategy=chosen, actor=actor, reason=reason
            )
        async with self.controller.locks[model]:
            await self._refuse_during_rollout(model, f"a direct promotion of {version}")
            record = await self.registry.get(model, version)
            if record["status"] == "production":
                raise Conflict(f"model {model!r} version {version} is already in production")
            previous = await self.registry.production(model)
            reason = _why(
                f"promoted by {actor}" + (f" (strategy {strategy})" if strategy else ""), reason
            )
            change = serving_change(
                model, actor=actor, reason=reason, production=version, via_staging=True,
                weights={version: 1.0},
            )  # fmt: skip
            await self.serving.apply(change)
        return {
            "model": model,
            "version": version,
            "strategy": "direct",
            "requested_strategy": strategy,
            "previous_version": previous["version"] if previous else None,
            "record": await self.registry.get(model, version),
        }

    async def _active(self, model: str) -> Rollout | None:
        """The model's active rollout: this daemon's, or one another daemon started."""
        return self.active.get(model) or await self.serving.stored_rollout(model)

    async def _refuse_during_rollout(self, model: str, what: str) -> None:
        rollout = await self._active(model)
        if rollout is not None:
            raise Conflict(
                f"model {model!r} has a running rollout of version {rollout['candidate']} "
                f"(id {rollout['id']}, {rollout['state']}): {what} would change what serves "
                "under it; roll the rollout back (POST /api/models/"
                f"{model}/rollback) or wait for it to finish"
            )

    async def transition(
        self, model: str, version: str, status: str, *, actor: str, reason: str = ""
    ) -> VersionRecord:
        """Move a version through the lifecycle (``POST …/versions/{v}/status``).

        A change that touches what serves (into or out of ``production``) is a serving
        change: the traffic table moves with it (to the new production version alone,
        or away when nothing is left in production). While a rollout runs, a change of
        its candidate or baseline, or of production, is a Conflict naming the rollout.
        """
        async with self.controller.locks[model]:
            record = await self.registry.get(model, version)
            rollout = await self._active(model)
            touches_serving = status == "production" or record["status"] == "production"
            if rollout is not None and (
                touches_serving or version in (rollout["candidate"], rollout["baseline"])
            ):
                await self._refuse_during_rollout(model, f"moving {version} to {status}")
            reason = reason or f"set by {actor}"
            if status == "production" and record["status"] != "production":
                change = serving_change(
                    model, actor=actor, reason=reason, production=version,
                    weights={version: 1.0},
                )  # fmt: skip
            elif record["status"] == "production" and status != "production":
                table = self.traffic_tables.get(model) or {}
                move: StatusMove = {
                    "version": version, "from_status": "production", "to_status": status,
                }  # fmt: skip
                change = serving_change(
                    model, actor=actor, reason=reason, moves=[move],
                    # Nothing is left in production: nothing serves (a table of that
                    # version alone goes; a hand-set split stays as it was set).
                    weights={} if table == {version: 1.0} else None,
                )  # fmt: skip
            else:
                return await self.registry.transition(
                    model, version, status, actor=actor, reason=reason
                )
            await self.serving.apply(change)
        return await self.registry.get(model, version)

    async def start_rollout(
        self,
        model: str,
        version: str,
        *,
        strategy: str | None = None,
        actor: str = "mlwarden",
        reason: str = "",
    ) -> Rollout:
        """Start rolling ``version`` out with ``strategy`` (default: the model's, else
        ``deployment.default_strategy``); the rollout. Conflict (409) when one is active."""
        registry = self.registry
        record = await registry.get(model, version)
        name = strategy or self.controller.default_strategy(model)
        instance = self.controller.strategy_for(name, None)
        async with self.controller.locks[model]:
            active = await self._active(model)
            if active is not None:
                raise Conflict(
                    f"model {model!r} already has an active rollout of version "
                    f"{active['candidate']} ({active['state']}, id "
                    f"{active['id']}); roll it back or wait for it to finish"
                )
            table = self.traffic_tables.get(model)
            production = await registry.production(model)
            current = production["version"] if production else None
            baseline: str | None
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
                    reason=_why(f"rollout ({name}) started by {actor}", reason),
                )
            elif record["status"] not in ("staging", "deprecated"):
                raise Conflict(
                    f"model {model!r} version {version} is {record['status']}: a "
                    "rollout needs a version in validation, staging or deprecated"
                )
            now = self.context.clock()
            rollout: Rollout = {
                "id": uuid.uuid4().hex, "model": model, "candidate": version,
                "baseline": baseline, "strategy": name, "options": instance.options(),
                "state": "pending", "step": -1, "weight": 0.0, "mirror": False,
                "failures": 0, "memo": {}, "held": None, "step_started_at": now,
                "next_analysis_at": now, "started_at": now, "updated_at": now,
                "finished_at": None, "actor": actor,
                "reason": _why(f"started by {actor}", reason),
                "active": True,
            }  # fmt: skip
            async with self.context.store.begin() as conn:
                await conn.execute(rollouts_table.insert().values(**row_values(rollout)))
            self.active[model] = rollout
            # Its end is audited by the controller ("rollout rolled_back", ...); the start
            # is audited here, with the reason the rollout record gives up when it ends.
            await self.context.audit.record(
                actor=actor,
                action="rollout started",
                target=f"model={model},version={version}",
                outcome="started",
                detail={"rollout": rollout["id"], "strategy": name, "reason": rollout["reason"]},
            )
            await self.controller.emit(
                "rollout_started", rollout, Severity.INFO, f"rollout of {version} started ({name})"
            )
            await self.controller.advance(rollout)
            stored = self.active.get(model) or await read_rollout(self.context.store, rollout["id"])
            return public(stored)

    async def rollback(
        self, model: str, *, version: str | None = None, actor: str, reason: str = ""
    ) -> Rollout | DirectRollback:
        """Fast path, no analysis: end the active rollout (back to its baseline), or
        switch production back to the previous version (registry, aliases and traffic
        table in one serving change).

        What the caller asked to roll back is what it saw when it asked: when another
        rollback (here or on another daemon) ended that rollout or moved production
        while this one waited for the model's lock, this is a Conflict (409) and nothing
        is rolled back twice."""
        seen_rollout = self.active.get(model)
        seen = await self.registry.production(model)
        async with self.controller.locks[model]:
            rollout = self.active.get(model)
            if seen_rollout is not None and (
                rollout is None or rollout["id"] != seen_rollout["id"]
            ):
                raise Conflict(
                    f"model {model!r}: the rollout of {seen_rollout['candidate']} (id "
                    f"{seen_rollout['id']}) ended while this rollback waited; nothing else "
                    "was rolled back"
                )
            stored = None if rollout is not None else await self.serving.stored_rollout(model)
            if stored is not None:
                raise Conflict(
                    f"model {model!r} has an active rollout of {stored['candidate']} (id "
                    f"{stored['id']}) that another daemon drives; roll it back there"
                )
            if rollout is not None:
                if version is not None and version != rollout["baseline"]:
                    raise Conflict(
                        f"model {model!r}: the active rollout of "
                        f"{rollout['candidate']} can only roll back to its baseline "
                        f"{rollout['baseline']}, not {version}"
                    )
                await self.controller.finish_rollback(
                    rollout,
                    _why(f"manual rollback by {actor}", reason),
                    actor=actor,
                    automatic=False,
                )
                return public(await read_rollout(self.context.store, rollout["id"]))
            return await self._rollback_production(
                model,
                version,
                actor=actor,
                reason=reason,
                seen=seen["version"] if seen else None,
            )

    async def _rollback_production(
        self, model: str, version: str | None, *, actor: str, seen: str | None, reason: str = ""
    ) -> DirectRollback:
        """Restore the previous production version (or ``version``, a deprecated one);
        ``seen`` is the production version the caller saw when it asked. What may be
        restored is the registry's rule (``VersionLifecycle.rollback_plan``)."""
        registry = self.registry
        plan = await registry.rollback_plan(model, version, seen=seen)
        target, previous = plan["version"], plan["previous_version"]
        reason = _why(f"rolled back by {actor}" + (f" from {previous}" if previous else ""), reason)
        change = serving_change(
            model, actor=actor, reason=reason, production=target, weights={target: 1.0}
        )
        await self.serving.apply(change)
        return {
            "model": model,
            "version": target,
            "previous_version": previous,
            "record": await registry.get(model, target),
        }
