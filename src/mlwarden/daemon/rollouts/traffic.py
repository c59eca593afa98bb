"""Traffic tables ``{version: weight}``, sticky routing, and the traffic backends.

Routing is sticky and proportional: a key hashes (SHA-256 of model and key) to a point
in [0, 1), and the versions, in a fixed order, own consecutive slices of [0, 1) as
long as their weights. The order is newest version first (natural sort of the version
strings, descending), so a candidate's slice starts at 0 and only grows as a canary
advances: a key that reached the candidate at 5% still reaches it at 25%.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import inspect
import json
import logging
import math
import re
import warnings
from collections.abc import Mapping
from typing import Protocol, TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import InvalidInput, NotFound, PluginError
from ...types import AliasRegistry
from ..core.context import Context
from ..core.store import create_tables

__all__ = [
    "FOLLOW_SECONDS",
    "TRAFFIC_SCHEMA",
    "Router",
    "TrafficBackend",
    "TrafficChange",
    "TrafficTables",
    "key_point",
    "pick_version",
    "route_order",
    "serving_table",
    "validate_weights",
]

logger = logging.getLogger(__name__)

_meta = sa.MetaData()
traffic_table = sa.Table(
    "traffic_weights",
    _meta,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)
traffic_changes = sa.Table(
    "traffic_changes",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
)
TRAFFIC_SCHEMA = [create_tables(traffic_table, traffic_changes)]
#: Serving changes begun and not yet finished (daemon/rollouts/serving.py): the state
#: wanted afterwards, as JSON; normally empty between two changes.
serving_table = sa.Table(
    "serving_changes",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("change", sa.Text, nullable=False),
)

_TOLERANCE = 1e-6
#: On a store several daemons share, each daemon re-reads the traffic tables this often:
#: a change made through another daemon routes here at most this much later.
FOLLOW_SECONDS = 1.0


class TrafficChange(TypedDict):
    """One change of a model's traffic table (a ``traffic_changes`` row)."""

    ts: float
    weights: dict[str, float]
    reason: str
    actor: str


class TrafficBackend(Protocol):
    """A traffic backend plugin instance (``mlwarden_traffic_backends``)."""

    async def apply(self, model: str, weights: dict[str, float]) -> None:
        """Make the world route ``model``'s traffic by ``weights``."""
        ...


def key_point(model: str, key: str) -> float:
    """The key's point in [0, 1): SHA-256 of ``model`` and ``key``, first 8 bytes."""
    digest = hashlib.sha256(f"{model}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _natural(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", version) if p)


def route_order(weights: Mapping[str, float]) -> list[str]:
    """Versions in routing order: newest first (natural sort, descending)."""
    return sorted(weights, key=_natural, reverse=True)


class Router:
    """A table's slices of [0, 1), computed once; ``pick`` is a binary search."""

    __slots__ = ("edges", "order")

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.order = [v for v in route_order(weights) if weights[v] > 0]
        if not self.order:
            raise ValueError("a traffic table needs a version with a positive weight")
        total = sum(weights[v] for v in self.order)
        edges, edge = [], 0.0
        for version in self.order:
            edge += weights[version] / total
            edges.append(edge)
        self.edges = edges

    def pick(self, point: float) -> str:
        """The version whose slice holds ``point`` (rounding puts the rest in the last)."""
        return self.order[min(bisect.bisect_right(self.edges, point), len(self.order) - 1)]


def pick_version(weights: Mapping[str, float], point: float) -> str:
    """The version whose slice of [0, 1) holds ``point``."""
    return Router(weights).pick(point)


def validate_weights(model: str, weights: object) -> dict[str, float]:
    """Check a traffic table; InvalidInput names the offending entry.

    Weights are shares in [0, 1] summing to 1 (within 1e-6); zero weights are dropped.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidInput(
            f"traffic of model {model!r}: expected a non-empty object {{version: weight}}, "
            f"got {weights!r}"
        )
    out: dict[str, float] = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not version:
            raise InvalidInput(
                f"traffic of model {model!r}: version {version!r} is not a non-empty string"
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or not 0 <= weight <= 1
        ):
            raise InvalidInput(
                f"traffic of model {model!r}: weight of version {version!r} "
                f"must be a number in [0, 1], got {weight!r}"
            )
        if weight > 0:
            out[version] = float(weight)
    total = sum(out.values())
    if abs(total - 1) > _TOLERANCE:
        raise InvalidInput(f"traffic of model {model!r}: weights must sum to 1, got {total:g}")
    return {v: w / total for v, w in out.items()}


class TrafficTables:
    """Every model's table: persisted, cached in memory for routing, applied to backends."""

    def __init__(self, context: Context, *, registry: AliasRegistry) -> None:
        self.context = context
        self.registry = registry
        self.tables: dict[str, dict[str, float]] = {}
        self.routers: dict[str, Router] = {}
        self.backends: dict[str, TrafficBackend] = {}
        self.backend_errors: dict[str, str] = {}

    def build_backends(self) -> None:
        """Instantiate the backends named in ``deployment.traffic_backends``.

        A backend class is called with its options from
        ``[deployment.traffic_backend_options.<name>]``, plus ``registry=`` (the model
        registry, ``mlwarden.types.AliasRegistry``) when its ``__init__`` takes that
        keyword (the built-in ``mlflow_alias`` does). ``warden=`` is still given to a
        backend that asks for it, with a DeprecationWarning, for one release.
        """
        deployment = self.context.config.deployment
        backends: dict[str, TrafficBackend] = {}
        for name in deployment.traffic_backends:
            cls = self.context.plugins.get("traffic_backend", name)
            options = dict(deployment.traffic_backend_options.get(name, {}))
            parameters = inspect.signature(cls).parameters
            if "registry" in parameters:
                options["registry"] = self.registry
            if "warden" in parameters:
                warnings.warn(
                    f"traffic backend {name!r} takes warden=; take registry= instead "
                    "(docs/plugin_hooks.md, mlwarden_traffic_backends)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                options["warden"] = self.context
            try:
                backends[name] = cls(**options)
            except (TypeError, ValueError) as exc:
                raise PluginError(
                    f"traffic backend {name!r} ([deployment.traffic_backend_options.{name}]): {exc}"
                ) from exc
        self.backends = backends

    async def load(self) -> None:
        tables = await self.stored()
        self.tables = tables
        self.routers = {m: Router(w) for m, w in tables.items()}
        for model, weights in tables.items():
            self._export(model, weights, {})

    async def stored(self, model: str | None = None) -> dict[str, dict[str, float]]:
        """The tables in the store (of ``model`` only, if given)."""
        query = sa.select(traffic_table)
        if model is not None:
            query = query.where(traffic_table.c.model == model)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        tables: dict[str, dict[str, float]] = {}
        for row in rows:
            tables.setdefault(row.model, {})[row.version] = row.weight
        return tables

    async def follow(self) -> None:
        """Route by the stored tables, read every FOLLOW_SECONDS (several daemons, one store).

        A change committed through another daemon (PUT traffic, a rollout step) is
        adopted here; a table this daemon changed while the read was under way is left
        as this daemon adopted it (its own commit is at least as new).
        """
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:  # the store away: routing goes on with the last tables
                where = "traffic tables"
                self.context.failed(logger, exc, where, "reading the traffic tables failed")
                self.context.record_error("traffic tables", repr(exc))

    async def refresh(self) -> list[str]:
        """Adopt the stored tables that differ from the ones routed by; return their models."""
        before = dict(self.tables)
        stored = await self.stored()
        changed = []
        for model in sorted(set(stored) | set(before)):
            if self.tables.get(model) is not before.get(model):
                continue  # adopted by this daemon meanwhile
            if stored.get(model, {}) != before.get(model, {}):
                self.adopt(model, stored.get(model, {}))
                changed.append(model)
        if changed:
            logger.info("traffic tables changed through another daemon: %s", ", ".join(changed))
        return changed

    async def refresh_model(self, model: str) -> None:
        """Re-read ``model``'s table from the store (another daemon may have written it)
        and route by it; the serving step calls this under the model's lock."""
        stored = (await self.stored(model)).get(model, {})
        if stored != (self.tables.get(model) or {}):
            self.adopt(model, stored)

    def get(self, model: str) -> dict[str, float] | None:
        table = self.tables.get(model)
        return dict(table) if table else None

    def route(self, model: str, key: str) -> str:
        router = self.routers.get(model)
        if router is None:
            raise NotFound(
                f"model {model!r} has no traffic table: promote a version or start a rollout"
            )
        return router.pick(key_point(model, key))

    async def write(
        self,
        conn: AsyncConnection,
        model: str,
        weights: Mapping[str, float],
        *,
        reason: str,
        actor: str,
    ) -> None:
        """Persist ``weights`` (validated; ``{}`` removes the table) in ``conn``'s
        transaction, with the change in ``traffic_changes``. Only the serving step
        (daemon/rollouts/serving.py) calls this, then :meth:`adopt` after its commit."""
        weights = validate_weights(model, weights) if weights else {}
        now = self.context.clock()
        await conn.execute(traffic_table.delete().where(traffic_table.c.model == model))
        if weights:
            await conn.execute(
                traffic_table.insert(),
                [
                    {"model": model, "version": v, "weight": w, "updated_at": now}
                    for v, w in weights.items()
                ],
            )
        await conn.execute(
            traffic_changes.insert().values(
                model=model, ts=now, weights=json.dumps(weights), reason=reason, actor=actor
            )
        )
        logger.info("traffic of %s set to %s by %s: %s", model, weights, actor, reason)

    def adopt(self, model: str, weights: Mapping[str, float]) -> None:
        """Route by ``weights`` (just committed) and export them; ``{}``: no table."""
        previous = self.tables.pop(model, {})
        self.routers.pop(model, None)
        if weights:
            self.tables[model] = dict(weights)
            self.routers[model] = Router(weights)
        self._export(model, weights, previous)

    async def apply_backends(self, model: str, weights: Mapping[str, float]) -> None:
        """Hand the table to every backend; a failing backend is logged and counted."""
        for name, backend in self.backends.items():
            try:
                await backend.apply(model, dict(weights))
                self.backend_errors.pop(name, None)
            except Exception as exc:
                self.backend_errors[name] = f"{model}: {exc!r}"
                self.context.plugin_failed(name, "traffic_backend.apply", exc)

    async def history(self, model: str, limit: int = 50) -> list[TrafficChange]:
        async with self.context.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(traffic_changes)
                    .where(traffic_changes.c.model == model)
                    .order_by(traffic_changes.c.id.desc())
                    .limit(limit)
                )
            ).all()
        return [
            {"ts": r.ts, "weights": json.loads(r.weights), "reason": r.reason, "actor": r.actor}
            for r in rows
        ]

    def _export(
        self, model: str, weights: Mapping[str, float], previous: Mapping[str, float]
    ) -> None:
        gauge = self.context.metrics.traffic_weight
        for version in previous:
            if version not in weights:
                gauge.labels(model, version).set(0)
        for version, weight in weights.items():
            gauge.labels(model, version).set(weight)
