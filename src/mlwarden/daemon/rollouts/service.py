"""The rollouts service: promotions, rollouts driven by strategies, traffic, the gateway.

At most one active rollout per model. A rollout is a persisted state machine::

    pending -> progressing (step i) <-> paused (held by the confirm-promotion hook)
            -> promoted | rolled_back | failed | completed

Every serving change is recorded, then written with its traffic table in one step
(daemon/rollouts/serving.py); the operator's changes (promotions, lifecycle moves,
rollout starts, rollbacks) are checked against the active rollout in
daemon/rollouts/promotion.py. A restarted daemon
resumes each active rollout at the same step, with the same step start time. The
controller (daemon/rollouts/controller.py) is ticked by a background loop
(``deployment.tick_seconds``) and by ``tick()`` in tests, which drive it with an
injected clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypedDict

from ...errors import ConfigError, InvalidInput, NotFound
from ...hookspecs import hookimpl
from ...types import Event
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
from .promotion import Promotions
from .reads import Deployment, RolloutReads, RolloutReport
from .records import ROLLOUTS_SCHEMA, Rollout
from .serving import Serving, serving_change
from .traffic import TrafficTables, validate_weights

__all__ = ["Deployment", "Predictions", "RolloutReport", "RolloutService"]


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
        self.promotions = Promotions(
            context,
            registry=registry,
            controller=self.controller,
            traffic_tables=self.traffic_tables,
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

    # -- the contract: promotion, rollouts, rollback (daemon/rollouts/promotion.py) ---

    async def promote(
        self,
        model: str,
        version: str,
        *,
        strategy: str | None = None,
        actor: str,
        reason: str = "",
    ) -> Rollout | DirectPromotion:
        """Put ``version`` in production, through a rollout when a strategy applies."""
        return await self.promotions.promote(
            model, version, strategy=strategy, actor=actor, reason=reason
        )

    async def transition(
        self, model: str, version: str, status: str, *, actor: str, reason: str = ""
    ) -> VersionRecord:
        """Move a version through the lifecycle (``POST …/versions/{v}/status``)."""
        return await self.promotions.transition(model, version, status, actor=actor, reason=reason)

    async def start_rollout(
        self,
        model: str,
        version: str,
        *,
        strategy: str | None = None,
        actor: str = "mlwarden",
        reason: str = "",
    ) -> Rollout:
        """Start rolling ``version`` out; Conflict (409) when one is active."""
        return await self.promotions.start_rollout(
            model, version, strategy=strategy, actor=actor, reason=reason
        )

    async def rollback(
        self, model: str, *, version: str | None = None, actor: str, reason: str = ""
    ) -> Rollout | DirectRollback:
        """End the active rollout, or switch production back to the previous version."""
        return await self.promotions.rollback(model, version=version, actor=actor, reason=reason)

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
