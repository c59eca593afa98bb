"""The rollouts service: promotions, rollouts driven by strategies, traffic, the gateway.

At most one active rollout per model. A rollout is a persisted state machine::

    pending -> progressing (step i) <-> paused (held by the confirm-promotion hook)
            -> promoted | rolled_back | failed | completed

Every serving change is recorded, then written with its traffic table in one step
(daemon/rollouts/serving.py), so a restarted daemon
resumes each active rollout at the same step, with the same step start time. The
controller (daemon/rollouts/controller.py) is ticked by a background loop
(``deployment.tick_seconds``) and by ``tick()`` in tests, which drive it with an
injected clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, TypedDict

from ...errors import ConfigError, Conflict, InvalidInput, NotFound
from ...hookspecs import hookimpl
from ...types import Event, Severity
from ..core.cluster import ROLLOUT_WORK
from ..core.config import Config
from ..core.context import Context
from ..core.leases import Lease, LeaseLost, holding
from ..core.service import Service
from ..ingest.interfaces import PredictionSink
from ..registry.interfaces import (
    DirectPromotion,
    DirectRollback,
    VersionLifecycle,
    VersionRecord,
)
from .controller import RolloutController
from .gateway import Answer, Gateway, parse_predict_body
from .reads import Deployment, RolloutReads, RolloutReport
from .records import (
    ROLLOUTS_SCHEMA,
    Rollout,
    public,
    rollouts_table,
    row_values,
)
from .serving import Serving, StatusMove, serving_change
from .traffic import TrafficTables, validate_weights

__all__ = ["Deployment", "Predictions", "RolloutReport", "RolloutService"]


def _why(what: str, reason: str) -> str:
    """What was done, and the caller's reason when one was given."""
    return f"{what}: {reason}" if reason else what


class Predictions(TypedDict):
    """What the gateway answered (``POST /api/models/{name}/predict``)."""

    model: str
    predictions: list[Answer]


logger = logging.getLogger(__name__)

#: Statuses after which a version serves no more: the gateway drops it (and its copy).
_RETIRED = frozenset({"deprecated", "archived", "failed"})


class RolloutService(RolloutReads, Service):
    """Owns traffic tables, sticky routing, the gateway and the rollout controller."""

    name = "rollouts"
    schema = ROLLOUTS_SCHEMA

    def __init__(
        self, context: Context, *, registry: VersionLifecycle, ingest: PredictionSink
    ) -> None:
        super().__init__(context)
        self.registry = registry
        self.traffic_tables = TrafficTables(context, registry=registry)
        self.gateway = Gateway(context, registry=registry, ingest=ingest)
        #: The cluster's lease on the rollout ticks, while this daemon holds it.
        self._lease: Lease | None = None
        self.controller = RolloutController(
            context,
            registry=registry,
            ingest=ingest,
            traffic_tables=self.traffic_tables,
            gateway=self.gateway,
        )

    @property
    def serving(self) -> Serving:
        """The one place where what serves changes (daemon/rollouts/serving.py)."""
        return self.controller.serving

    @property
    def active(self) -> dict[str, Rollout]:
        """The active rollout of each model (held by the controller)."""
        return self.controller.active

    def active_rollout(self, model: str) -> Rollout | None:
        """The model's active rollout, or None."""
        return self.controller.active.get(model)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load the traffic tables and resume the active rollouts, then tick them."""
        self.check_config(self.context.config)
        self.traffic_tables.build_backends()
        await self.traffic_tables.load()
        await self._load_active()
        # A change a stop interrupted is finished before any rollout resumes on it, by
        # the daemon that holds the rollouts (another may be applying it right now).
        self._lease = await self.context.cluster.singleton(ROLLOUT_WORK)
        if self._lease is not None:
            with holding(self._lease):
                if await self.serving.recover():
                    await self._load_active()
        for rollout in self.active.values():
            logger.info(
                "resuming rollout %s of %s %s at step %d (%s)",
                rollout["id"],
                rollout["model"],
                rollout["candidate"],
                rollout["step"],
                rollout["state"],
            )
        self.context.spawn(self._loop(), name="rollouts-tick")
        if not self.context.store.is_sqlite:  # other daemons may change the tables
            self.context.spawn(self.traffic_tables.follow(), name="traffic-follow")

    def check_config(self, config: Config) -> None:
        """ConfigError naming the key when a strategy named or configured is unusable."""
        problems = []
        for name, options in config.deployment.strategies.items():
            try:
                self.controller.instantiate(name, options)
            except InvalidInput as exc:
                problems.append(f"key 'deployment.strategies.{name}': {exc}")
        known = self.context.plugins.names("strategy")
        named = [("deployment.default_strategy", config.deployment.default_strategy)]
        named += [(f"models[{i}].strategy", m.strategy) for i, m in enumerate(config.models)]
        for key, name in named:
            if name and name != "direct" and name not in known:
                problems.append(
                    f"key '{key}': unknown strategy {name!r} (available: "
                    f"{', '.join(known)}, or 'direct' for models)"
                )
        if problems:
            raise ConfigError(problems, config.source)

    async def stop(self) -> None:
        await self.gateway.close()

    async def reload(self, config: Config) -> None:
        self.check_config(config)
        self.traffic_tables.build_backends()

    async def _load_active(self, *, locked: bool = False) -> None:
        """Read the active rollouts from the store (RolloutController.load_active)."""
        await self.controller.load_active(locked=locked)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.context.config.deployment.tick_seconds)
            try:
                # One daemon of a cluster advances the rollouts. It reads them from the
                # store when it takes them over and, with several daemons possible
                # (not SQLite), at every tick: another daemon's API may have started,
                # paused or rolled back one.
                held, self._lease = self._lease, await self.context.cluster.singleton(ROLLOUT_WORK)
                if self._lease is None:
                    continue
                if self._lease != held or not self.context.store.is_sqlite:
                    await self._load_active(locked=not self.context.store.is_sqlite)
                with holding(self._lease):
                    await self.tick()
            except LeaseLost as exc:
                logger.info("rollout tick stopped: %s", exc)
            except Exception as exc:  # a bad tick must not end the loop
                self.context.failed(logger, exc, "rollouts tick", "rollout tick failed")

    async def health(self) -> dict[str, Any]:
        errors = dict(self.traffic_tables.backend_errors)
        return {
            "status": "degraded" if errors else "ok",
            "active_rollouts": {
                m: f"{r['candidate']} {r['state']} step {r['step']}" for m, r in self.active.items()
            },
            "gateway": self.context.config.deployment.gateway,
            "loaded_models": self.gateway.loaded,
            "backend_errors": errors,
        }

    # -- the contract: traffic ---------------------------------------------------------

    async def traffic(self, model: str) -> dict[str, float]:
        """The table in force; the production version alone when none was ever set."""
        table = self.traffic_tables.get(model)
        if table:
            return table
        production = await self.registry.production(model)
        if production is None:
            raise NotFound(f"model {model!r} has no traffic table and no production version")
        return {production["version"]: 1.0}

    async def set_traffic(
        self, model: str, weights: dict[str, float], *, reason: str, actor: str = "mlwarden"
    ) -> dict[str, float]:
        """Persist ``weights``, apply them through the backends, update the metric.

        InvalidInput (400) for a table that is not ``{version: share}`` summing to 1,
        NotFound (404) for an unknown model or version; checked in that order."""
        checked = validate_weights(model, weights)
        for version in checked:
            await self.registry.get(model, version)  # NotFound names an unknown version
        change = serving_change(model, actor=actor, reason=reason, weights=checked)
        await self.serving.apply(change)
        return self.traffic_tables.get(model) or {}

    def route(self, model: str, key: str) -> str:
        """The version serving ``key`` (sticky hashing proportional to the weights)."""
        return self.traffic_tables.route(model, key)

    # -- the contract: promotion, rollouts, rollback -----------------------------------

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
            return public(self.active.get(model) or await self.get(rollout["id"]))

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
                return public(await self.get(rollout["id"]))
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
        ``seen`` is the production version the caller saw when it asked."""
        registry = self.registry
        current = await registry.production(model)
        now = current["version"] if current else None
        if version is None and now != seen:
            raise Conflict(
                f"model {model!r}: production moved from {seen} to {now} while this rollback "
                "waited (another rollback or promotion); nothing was rolled back"
            )
        target = version if version is not None else await registry.rollback_target(model)
        if target is None:
            raise Conflict(f"model {model!r} has no previous production version to roll back to")
        record = await registry.get(model, target)
        if current is not None and current["version"] == target:
            raise Conflict(f"model {model!r} version {target} is already in production")
        if record["status"] != "deprecated":
            raise Conflict(
                f"model {model!r} version {target} is {record['status']}: only a deprecated "
                "former production version can be rolled back to"
            )
        reason = _why(
            f"rolled back by {actor}" + (f" from {current['version']}" if current else ""), reason
        )
        change = serving_change(
            model, actor=actor, reason=reason, production=target, weights={target: 1.0}
        )
        await self.serving.apply(change)
        return {
            "model": model,
            "version": target,
            "previous_version": current["version"] if current else None,
            "record": await registry.get(model, target),
        }

    # -- the gateway ---------------------------------------------------------------

    async def predict(self, model: str, body: object) -> Predictions:
        if not self.context.config.deployment.gateway:
            raise NotFound(
                "the gateway is switched off (deployment.gateway = false); ask "
                f"GET /api/models/{model}/route?key= and serve elsewhere"
            )
        records = parse_predict_body(model, body)
        table = await self.traffic(model)
        answers = await self.gateway.predict(model, records, table, self.mirror_target(model))
        return {"model": model, "predictions": answers}

    async def tick(self) -> list[Rollout]:
        """Advance every active rollout once; returns the rollouts after the tick."""
        return await self.controller.tick()

    # -- events ----------------------------------------------------------------------

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        """Follow production changes made around the serving step (an in-process
        ``registry.transition`` to production): the table follows, as a serving change.
        A retired version (deprecated, archived, failed) leaves the gateway."""
        if event.kind != "version_status_changed":
            return
        if event.data.get("to") in _RETIRED and event.model and event.data.get("version"):
            await self.gateway.retire(event.model, str(event.data["version"]))
            return
        if event.data.get("to") != "production":
            return
        model, version = event.model, event.data.get("version")
        if not model or not version or model in self.active:
            return
        if self.traffic_tables.get(model) == {version: 1.0}:
            return
        # Spawned: the registry emits this while holding its per-model lock, which the
        # traffic backends need again (registry.set_alias).
        self.context.spawn(self._follow(model, version), name=f"rollouts-follow-{model}")

    async def _follow(self, model: str, version: str) -> None:
        async with self.controller.locks[model]:
            if model in self.active or self.traffic_tables.get(model) == {version: 1.0}:
                return
            change = serving_change(
                model, actor="registry", reason=f"{version} entered production",
                weights={version: 1.0},
            )  # fmt: skip
            await self.serving.apply(change)
