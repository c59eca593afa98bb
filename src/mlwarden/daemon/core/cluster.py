"""Cluster membership and the leases of this daemon (docs/cluster.md).

Every daemon on one store is a member: a row of ``cluster_members`` it refreshes every
``cluster.heartbeat_seconds`` (its heartbeat, on the database's clock); a member whose
heartbeat is older than ``cluster.lease_ttl_seconds`` is dead. The same heartbeat
renews every lease the daemon holds (``leases.py``), so a daemon that stops (kill -9,
a lost network) loses its leases one TTL after its last heartbeat, and the next tick of
another daemon's loop takes the work over.

Work comes in two shapes: a *singleton* (one lease for the whole cluster: the
scheduler's fires, the training-job queue, outbox delivery, alert evaluation, the
rollout and experiment ticks) and a *share* (one lease per key, e.g. per model for drift
and performance checks; each member takes at most ``ceil(keys / live members)`` and
lets go of the rest, so the work spreads and rebalances as members come and go).

With SQLite there is one daemon: it holds every lease, and at start it takes over the
leases and membership a previous run left behind.

A daemon that cannot renew its leases (the store is out of reach) gives them up on its
own clock before they can expire on the database's: ``lease_ttl_seconds -
heartbeat_seconds`` after the start of its last renewal, it holds nothing (its loops
start no leased work, it exports no model's gauges). An expired lease is not renewed
but taken again, with a new token, so nothing begun under the old one is written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ..._version import __version__
from .config import Config
from .leases import (
    Lease,
    db_now,
    ensure_rows,
    fair_share,
    leases_table,
    live_members,
    members_table,
    owned,
    release,
    renew,
    take,
)
from .metrics import Metrics
from .outage import log_failure
from .store import SQLITE_BUSY_TIMEOUT_MS, Schema, Store, create_tables

__all__ = [
    "ALERT_WORK",
    "CLUSTER_SCHEMA",
    "EXPERIMENT_WORK",
    "JOBS_WORK",
    "MODEL_WORK",
    "OUTBOX_WORK",
    "REPORT_WORK",
    "ROLLOUT_WORK",
    "SCHEDULER_WORK",
    "Cluster",
]

logger = logging.getLogger(__name__)

#: The kind of the per-model leases: a model's drift and performance checks, its
#: experiment's evaluation and its cluster-wide gauges go to one daemon.
MODEL_WORK = "model"
#: The cluster-wide singletons: the scheduler's ticks (cron fires), the training-job
#: queue's runner, the rollout controller's ticks, the experiments' evaluation loop,
#: alert evaluation (repeats, group waits), outbox delivery, the scheduled reports.
SCHEDULER_WORK = "scheduler"
JOBS_WORK = "training-jobs"
ROLLOUT_WORK = "rollouts"
EXPERIMENT_WORK = "experiments"
ALERT_WORK = "alerts"
OUTBOX_WORK = "outbox"
#: The scheduled reports ([[reports]]): written and mailed by one daemon.
REPORT_WORK = "reports"
#: The singleton whose holder exports the gauges of models not in ``[[models]]``.
UNCONFIGURED = "unconfigured-models"

CLUSTER_SCHEMA = Schema("cluster", [create_tables(members_table, leases_table)])


class Cluster:
    """This daemon as a member of the cluster, and the leases it holds."""

    def __init__(self, store: Store, config: Callable[[], Config], metrics: Metrics) -> None:
        self.store = store
        self._config = config
        self.metrics = metrics
        #: The name this daemon has among the members (``cluster.instance``).
        self.instance = config().instance
        #: What this daemon holds: (kind, key) -> lease, as of the last renewal.
        self.held: dict[tuple[str, str], Lease] = {}
        self.started_at: float | None = None
        self._kinds: set[str] = set()
        #: Gives up ``held`` when no renewal succeeds in time (``_renewed``).
        self._lapse: asyncio.TimerHandle | None = None
        #: One lease transaction of this daemon at a time: two of them (a heartbeat
        #: and a share that lets one key go and renews another) would lock the same
        #: rows in opposite orders and deadlock.
        self._serial = asyncio.Lock()
        if not store.is_sqlite:  # one SQLite daemon exports everything, as before
            metrics.owns_model = self.owns_model

    @property
    def ttl(self) -> float:
        return self._config().cluster.lease_ttl_seconds

    @property
    def heartbeat_seconds(self) -> float:
        return self._config().cluster.heartbeat_seconds

    # -- membership ------------------------------------------------------------------

    async def join(self) -> None:
        """Register as a member; let go of what this name held in an earlier life.

        On SQLite (one daemon by construction) every lease and every other member is
        what an earlier run left behind: all are let go, so they are taken at once.
        """
        m, t = members_table, leases_table
        async with self._serial, self.store.begin() as conn:
            now = await db_now(conn)
            self.started_at = now
            if self.store.is_sqlite:
                await conn.execute(m.delete())
                await conn.execute(t.update().values(owner=None, expires_at=0.0))
            else:
                await conn.execute(m.delete().where(m.c.instance == self.instance))
                await conn.execute(
                    t.update().where(t.c.owner == self.instance).values(owner=None, expires_at=0.0)
                )
            await conn.execute(m.insert(), self._member(now))
        self.held.clear()
        logger.info("joined the cluster as %s", self.instance)

    def _member(self, now: float) -> dict[str, Any]:
        """This daemon's row of ``cluster_members``, its heartbeat ``now``."""
        return {
            "instance": self.instance,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at or now,
            "heartbeat_at": now,
        }

    async def leave(self, wait: float | None = None) -> None:
        """Release every lease and leave the members (a graceful stop).

        ``wait`` (seconds) bounds how long SQLite waits for a lock another connection
        holds, in place of ``busy_timeout``: at a stop, since the next start on SQLite
        lets every lease go anyway (:meth:`join`).
        """
        m, t = members_table, leases_table
        async with self._serial, self.store.begin() as conn:
            patience = int(wait * 1000) if wait is not None and self.store.is_sqlite else None
            if patience is not None:
                await conn.exec_driver_sql(f"PRAGMA busy_timeout={patience}")
            try:
                await conn.execute(
                    t.update().where(t.c.owner == self.instance).values(owner=None, expires_at=0.0)
                )
                await conn.execute(m.delete().where(m.c.instance == self.instance))
            finally:
                if patience is not None:
                    await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        self.held.clear()
        self._count()

    async def heartbeat(self) -> None:
        """Refresh this member's heartbeat and renew every lease it holds (not expired)."""
        m, t = members_table, leases_table
        began = asyncio.get_running_loop().time()
        async with self._serial, self.store.begin() as conn:
            now = await db_now(conn)
            updated = await conn.execute(
                m.update().where(m.c.instance == self.instance).values(heartbeat_at=now)
            )
            if not updated.rowcount:  # removed by hand, or the table was reset: rejoin
                await conn.execute(m.insert(), self._member(now))
            renewed = await conn.execute(
                t.update()
                .where(t.c.owner == self.instance, t.c.expires_at > now)
                .values(expires_at=now + self.ttl)
                .returning(t.c.kind, t.c.key, t.c.token)
            )
            mine = [Lease(r.kind, r.key, self.instance, r.token) for r in renewed.all()]
            members = await live_members(conn, now, self.ttl)
        self._renewed(began)
        self.held = {(lease.kind, lease.key): lease for lease in mine}
        self.metrics.cluster_members.set(members)
        self._count()

    def _renewed(self, began: float) -> None:
        """Every held lease was renewed by a transaction begun at ``began`` (loop time):
        they expire ``ttl`` after a moment after it, so this daemon gives them up
        ``ttl - heartbeat_seconds`` after it unless a later renewal succeeds."""
        if self._lapse is not None:
            self._lapse.cancel()
        self._lapse = asyncio.get_running_loop().call_at(
            began + self.ttl - self.heartbeat_seconds, self._lapsed
        )

    def _lapsed(self) -> None:
        self._lapse = None
        if not self.held:
            return
        kinds = sorted({kind for kind, _ in self.held})
        logger.warning(
            "%s did not renew its %d leases (%s) within %.1f s (the store is unreachable "
            "or the daemon stalled): it stops their work and takes them again, with new "
            "tokens, once it can (pooled connections held by: %s)",
            self.instance,
            len(self.held),
            ", ".join(kinds),
            self.ttl - self.heartbeat_seconds,
            self.store.holders(),
        )
        self.held.clear()
        self._count()

    async def run(self) -> None:
        """The heartbeat loop (owned by the daemon); a failed beat is logged and retried
        at the next one (an unreachable store once per outage)."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.heartbeat()
            except Exception as exc:
                log_failure(
                    logger, self.store.outage, exc, "cluster heartbeat of %s failed", self.instance
                )

    # -- leases ------------------------------------------------------------------------

    async def singleton(self, kind: str, key: str = "") -> Lease | None:
        """This daemon's lease on the one (kind, key), taken or renewed now; None if
        another live daemon holds it."""
        async with self._serial, self.store.begin() as conn:
            now = await db_now(conn)
            await ensure_rows(conn, kind, [key])
            taken = await renew(conn, self.instance, kind, [key], now=now, ttl=self.ttl)
            if not taken:
                taken = await take(conn, self.instance, kind, [key], limit=1, now=now, ttl=self.ttl)
        lease = taken[0] if taken else None
        self._note(kind, [key], taken)
        return lease

    async def share(self, kind: str, keys: Sequence[str]) -> dict[str, Lease]:
        """This daemon's fair share of ``keys`` of ``kind``, by key.

        Keeps (and renews) what it holds up to ``ceil(keys / live members)``, lets go of
        the rest and of keys of ``kind`` no longer asked for (so that a newcomer finds
        free ones), then takes free or expired keys up to its share.
        """
        keys = sorted(set(keys))
        async with self._serial, self.store.begin() as conn:
            now = await db_now(conn)
            await ensure_rows(conn, kind, keys)
            quota = fair_share(len(keys), await live_members(conn, now, self.ttl))
            mine = sorted(x.key for x in await owned(conn, self.instance, kind))
            keep = [k for k in mine if k in keys][:quota]
            extra = [k for k in mine if k not in keep]
            await release(conn, self.instance, kind, extra)
            held = await renew(conn, self.instance, kind, keep, now=now, ttl=self.ttl)
            renewed = {lease.key for lease in held}  # those of ``keep`` that had expired
            free = [k for k in keys if k not in renewed and k not in extra]  # are taken
            held += await take(
                conn,
                self.instance,
                kind,
                free,
                limit=quota - len(held),
                now=now,
                ttl=self.ttl,
            )
        if extra:
            logger.info("%s let go of %s leases %s", self.instance, kind, ", ".join(extra))
        self._note(kind, None, held)
        return {lease.key: lease for lease in held}

    async def models(self) -> dict[str, Lease]:
        """This daemon's share of the configured models (``MODEL_WORK`` leases), by name."""
        config = self._config()
        share = await self.share(MODEL_WORK, [m.name for m in config.models])
        await self.singleton(UNCONFIGURED)
        return share

    def owns_model(self, model: str) -> bool:
        """Whether this daemon owns ``model``'s work (and exports its gauges)."""
        if (MODEL_WORK, model) in self.held:
            return True
        configured = self._config().model(model) is not None
        return not configured and (UNCONFIGURED, "") in self.held

    async def release(self, kind: str, keys: Sequence[str]) -> None:
        """Let go of this daemon's leases of ``kind`` on ``keys``."""
        async with self._serial, self.store.begin() as conn:
            await release(conn, self.instance, kind, keys)
        for key in keys:
            self.held.pop((kind, key), None)
        self._count()

    def _note(self, kind: str, keys: Sequence[str] | None, taken: list[Lease]) -> None:
        """Record what a take returned: of ``kind`` (only ``keys``, or all) now ``taken``."""
        before = dict(self.held)  # a renewal (same token) is not logged as a take
        for held in list(self.held):
            if held[0] == kind and (keys is None or held[1] in keys):
                del self.held[held]
        for lease in taken:
            previous = before.get((kind, lease.key))
            if previous is None or previous.token != lease.token:
                logger.info(
                    "%s took the %s lease %s (token %d)",
                    self.instance,
                    kind,
                    lease.key or "-",
                    lease.token,
                )
            self.held[(kind, lease.key)] = lease
        self._count()

    def _count(self) -> None:
        counts = dict.fromkeys(self._kinds, 0)  # a kind no longer held shows 0
        for kind, _key in self.held:
            counts[kind] = counts.get(kind, 0) + 1
        self._kinds.update(counts)
        for kind, count in counts.items():
            self.metrics.leases_held.labels(kind).set(count)

    # -- observability -----------------------------------------------------------------

    async def view(self) -> dict[str, Any]:
        """Members with their heartbeat age, and every owned lease (``/api/system/cluster``)."""
        m, t = members_table, leases_table
        async with self.store.connect() as conn:
            now = await db_now(conn)
            members = (await conn.execute(sa.select(m).order_by(m.c.instance))).mappings().all()
            leases = (
                (
                    await conn.execute(
                        sa.select(t).where(t.c.owner.is_not(None)).order_by(t.c.kind, t.c.key)
                    )
                )
                .mappings()
                .all()
            )
        ttl = self.ttl
        return {
            "instance": self.instance,
            "now": now,
            "lease_ttl_seconds": ttl,
            "members": [
                {
                    "instance": row["instance"],
                    "host": row["host"],
                    "pid": row["pid"],
                    "version": row["version"],
                    "started_at": row["started_at"],
                    "heartbeat_at": row["heartbeat_at"],
                    "heartbeat_age_seconds": max(0.0, now - row["heartbeat_at"]),
                    "alive": now - row["heartbeat_at"] < ttl,
                }
                for row in members
            ],
            "leases": [
                {
                    "kind": row["kind"],
                    "key": row["key"],
                    "owner": row["owner"],
                    "token": row["token"],
                    "acquired_at": row["acquired_at"],
                    "expires_at": row["expires_at"],
                    "expired": row["expires_at"] <= now,
                }
                for row in leases
            ],
        }
