"""Which version serves: the one place where it changes, as one recorded step.

"Which version serves" lives in four places: the registry's statuses (the
``production`` version), the aliases (``champion`` follows production, in the
registry's tables and in MLflow; ``challenger`` is the traffic backend's), the traffic
table (and the backends it is handed to) and the rollout's state. Every change of any
of them that matters to serving — a direct promote, each rollout step and finish, a
manual or automatic rollback, a table set by hand or by an experiment — is a
:class:`ServingChange` applied by :meth:`Serving.apply`, and only there:

1. the change is recorded (table ``serving_changes``: the state wanted afterwards);
2. the registry moves (``production`` first, which deprecates the version that held it
   and moves ``champion`` in the same registry transaction, then the other statuses);
   a refusal (Conflict: failed gates, an illegal transition) drops the record and
   raises, before the table or the rollout moved;
3. the traffic table and the rollout's row are written in **one** database
   transaction, and the in-memory view (routing, the active rollouts) is swapped right
   after it, with no await in between;
4. the table is handed to the traffic backends (MLflow ``challenger`` and weight tags);
5. the record is deleted.

Each step is idempotent (it compares with what is there), so a daemon that stops in
the middle finishes the change at its next start (:meth:`Serving.recover`, before any
rollout resumes): the change rolls forward. The only undo is the refusal of step 2,
which happens before anything else moved. Readers that must see the four agree
(``GET …/deployment``) take :meth:`Serving.lock` of the model.

Several daemons on one store: a change is applied under the registry's model lock
(``VersionLifecycle.exclusive``, a PostgreSQL advisory lock), and the callers that
decide a change from what they read (promote, rollback, a rollout's tick) take it
before reading, through :class:`RolloutLocks`. So of two daemons promoting the same
candidate at once, the second reads the first's result and answers the same 409 as
if it had come a moment later; before it compares, the step re-reads the stored
traffic table, which another daemon may have written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

import sqlalchemy as sa

from ...errors import Conflict
from ..core.context import Context
from ..core.leases import fence
from ..registry.interfaces import VersionLifecycle
from .records import ACTIVE, Rollout, public, rollout_from_row, rollouts_table, row_values
from .traffic import TrafficTables, serving_table, validate_weights

__all__ = ["RolloutLocks", "Serving", "ServingChange", "StatusMove", "serving_change"]

logger = logging.getLogger(__name__)


class StatusMove(TypedDict):
    """Move ``version`` from ``from_status`` to ``to_status`` (only if it is there)."""

    version: str
    from_status: str
    to_status: str


class ServingChange(TypedDict):
    """What serves afterwards; ``None`` leaves a part as it is."""

    id: str
    model: str
    #: The version in ``production`` afterwards.
    production: str | None
    #: Whether a version in ``validation`` may pass its gates to ``staging`` on the way
    #: (a direct promote) or must already be in ``staging`` (the status route).
    via_staging: bool
    #: Other status moves (a rolled-back candidate to ``failed``, a version out of
    #: production with no successor to ``deprecated``).
    moves: list[StatusMove]
    #: The traffic table afterwards; ``{}`` removes it (nothing serves).
    weights: dict[str, float] | None
    #: The rollout's row afterwards (JSON columns decoded).
    rollout: Rollout | None
    actor: str
    reason: str


def serving_change(
    model: str,
    *,
    actor: str,
    reason: str,
    production: str | None = None,
    via_staging: bool = False,
    moves: list[StatusMove] | None = None,
    weights: dict[str, float] | None = None,
    rollout: Rollout | None = None,
) -> ServingChange:
    """A new change with its id."""
    return {
        "id": uuid.uuid4().hex, "model": model, "production": production,
        "via_staging": via_staging, "moves": list(moves or []), "weights": weights,
        "rollout": rollout, "actor": actor, "reason": reason,
    }  # fmt: skip


class RolloutLocks:
    """``locks[model]``: this daemon's lock of a model's rollout, then the registry's
    model lock (every daemon's), in that order, wherever a decision reads the state;
    holding it, the traffic table is re-read (another daemon may have changed it)."""

    def __init__(self, registry: VersionLifecycle, traffic_tables: TrafficTables) -> None:
        self.registry = registry
        self.traffic_tables = traffic_tables
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def __getitem__(self, model: str) -> AbstractAsyncContextManager[None]:
        return self._hold(model)

    @asynccontextmanager
    async def _hold(self, model: str) -> AsyncIterator[None]:
        async with self._local[model], self.registry.exclusive(model):
            await self.traffic_tables.refresh_model(model)
            yield


class Serving:
    """Applies serving changes; owns nothing but the ``serving_changes`` record."""

    def __init__(
        self,
        context: Context,
        *,
        registry: VersionLifecycle,
        traffic_tables: TrafficTables,
        active: dict[str, Rollout],
    ) -> None:
        self.context = context
        self.registry = registry
        self.traffic_tables = traffic_tables
        #: The controller's active rollouts (swapped here when a change ends one).
        self.active = active
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def lock(self, model: str) -> asyncio.Lock:
        """Held while a change of ``model`` is applied; hold it to read all four at once."""
        return self._locks[model]

    async def apply(self, change: ServingChange, live: Rollout | None = None) -> None:
        """Apply ``change`` (steps in the module docstring); Conflict when the registry
        refuses it, with nothing changed. ``live`` is the controller's own dict of the
        rollout, updated in place so that the controller keeps one object."""
        if change["weights"]:
            change["weights"] = validate_weights(change["model"], change["weights"])
        if change["rollout"] is not None:
            change["rollout"] = public(change["rollout"])
        model = change["model"]
        async with self.registry.exclusive(model), self._locks[model]:
            await self.traffic_tables.refresh_model(model)
            async with self.context.store.begin() as conn:
                # A rollout tick's change is journaled under its lease: a former holder's
                # is refused here, before it touched anything.
                await fence(conn)
                await conn.execute(
                    serving_table.insert().values(
                        id=change["id"],
                        model=change["model"],
                        created_at=self.context.clock(),
                        change=json.dumps(change, allow_nan=False),
                    )
                )
            await self._finish(change, live)

    async def recover(self) -> int:
        """Finish the changes a stop interrupted, oldest first; how many there were.

        With several daemons a change listed here may be one another daemon is applying
        right now: it holds the model's lock until it has deleted its record, so a
        record gone once the lock is ours was finished, and is not applied again.
        """
        async with self.context.store.connect() as conn:
            rows = (
                await conn.execute(sa.select(serving_table).order_by(serving_table.c.created_at))
            ).all()
        finished = 0
        for row in rows:
            change: ServingChange = json.loads(row.change)
            model = change["model"]
            async with self.registry.exclusive(model), self._locks[model]:
                async with self.context.store.connect() as conn:
                    still = (
                        await conn.execute(
                            sa.select(serving_table.c.id).where(serving_table.c.id == row.id)
                        )
                    ).first()
                if still is None:
                    continue
                logger.warning(
                    "finishing serving change %s of %s interrupted by a stop: %s",
                    change["id"],
                    model,
                    change["reason"],
                )
                finished += 1
                await self.traffic_tables.refresh_model(model)
                try:
                    await self._finish(change, self.active.get(model))
                except Conflict as exc:
                    logger.error("serving change %s dropped: %s", change["id"], exc)
                    self.context.record_error(f"serving {change['model']}", str(exc))
        return finished

    async def _finish(self, change: ServingChange, live: Rollout | None) -> None:
        try:
            await self._move_registry(change)
        except Conflict:
            await self._forget(change["id"])
            raise
        await self._commit(change, live)
        if change["weights"] is not None or change["production"] is not None:
            table = self.traffic_tables.get(change["model"])
            if table:
                await self.traffic_tables.apply_backends(change["model"], table)
        await self._forget(change["id"])

    async def _move_registry(self, change: ServingChange) -> None:
        registry, model = self.registry, change["model"]
        actor, reason = change["actor"], change["reason"]
        target = change["production"]
        if target is not None:
            record = await registry.get(model, target)
            if record["status"] != "production":
                if record["status"] == "validation" and change["via_staging"]:
                    await registry.transition(model, target, "staging", actor=actor, reason=reason)
                await registry.transition(model, target, "production", actor=actor, reason=reason)
        for move in change["moves"]:
            record = await registry.get(model, move["version"])
            if record["status"] == move["from_status"]:
                await registry.transition(
                    model, move["version"], move["to_status"], actor=actor, reason=reason
                )

    async def _commit(self, change: ServingChange, live: Rollout | None) -> None:
        model, weights, rollout = change["model"], change["weights"], change["rollout"]
        current = self.traffic_tables.get(model) or {}
        if weights is not None and not self.context.store.is_sqlite:
            # Another daemon may have changed the table since this one last read it.
            current = (await self.traffic_tables.stored(model)).get(model, {})
        write_table = weights is not None and weights != current
        if write_table or rollout is not None:
            async with self.context.store.begin() as conn:
                if write_table:
                    assert weights is not None
                    await self.traffic_tables.write(
                        conn, model, weights, reason=change["reason"], actor=change["actor"]
                    )
                if rollout is not None:
                    values = row_values(rollout)
                    done = await conn.execute(
                        rollouts_table.update()
                        .where(rollouts_table.c.id == rollout["id"])
                        .values(**values)
                    )
                    if done.rowcount == 0:
                        await conn.execute(rollouts_table.insert().values(**values))
        # The in-memory view follows the commit with no await in between.
        routed = self.traffic_tables.get(model) or {}
        if weights is not None and (write_table or weights != routed):
            self.traffic_tables.adopt(model, weights)  # or as another daemon stored it
        if rollout is not None:
            if live is not None and live["id"] == rollout["id"]:
                live.update(rollout)
                rollout = live
            if rollout["state"] in ACTIVE:
                self.active[model] = rollout
            elif model in self.active and self.active[model]["id"] == rollout["id"]:
                del self.active[model]

    async def _forget(self, change_id: str) -> None:
        async with self.context.store.begin() as conn:
            await conn.execute(serving_table.delete().where(serving_table.c.id == change_id))

    async def stored_rollout(self, model: str) -> Rollout | None:
        """The model's active rollout as stored: another daemon sharing the store may
        have started one this daemon does not hold in memory."""
        async with self.context.store.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(rollouts_table).where(
                        rollouts_table.c.model == model, rollouts_table.c.state.in_(ACTIVE)
                    )
                )
            ).first()
        return rollout_from_row(row) if row is not None else None

    async def pending(self, model: str) -> list[ServingChange]:
        """The changes of ``model`` begun and not finished (after a crash, before start)."""
        async with self.context.store.connect() as conn:
            rows = (
                await conn.execute(sa.select(serving_table).where(serving_table.c.model == model))
            ).all()
        return [json.loads(r.change) for r in rows]
