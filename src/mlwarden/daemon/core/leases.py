"""Leases with fencing tokens: one owner at a time for each piece of cluster-wide work.

A lease is a row of ``leases`` (kind, key): who owns it, until when (``expires_at``)
and a fencing ``token`` that grows by one every time the lease changes owner. A free
or expired lease is taken in a transaction that locks the rows with ``SELECT … FOR
UPDATE SKIP LOCKED`` (as Airflow's HA scheduler does), so two daemons never take the
same row and neither waits on the other; its owner renews it with a plain ``UPDATE``,
which waits for the owner's own writes in flight rather than skipping their rows.
Expiry is decided on the database's clock (PostgreSQL's ``clock_timestamp()``,
SQLite's ``julianday('now')``), never on a daemon's, so hosts whose clocks disagree
still agree on who holds what.

Every write of leased work runs :meth:`Lease.check` inside its own transaction: it
locks the lease row (``FOR SHARE``) and verifies that the owner and the token are still
this daemon's, else raises :class:`LeaseLost` and the transaction writes nothing. A
former owner that paused past its lease (a stop-the-world pause, a frozen VM) and
woke up after another daemon took the work over therefore cannot apply a step twice:
the new owner's token is larger. The lease being carried by a work loop is a context
variable (:func:`holding`); :func:`fence` checks it, and is a no-op outside leased work
(an API call, a test), so on-demand actions are never refused.

SQLite ignores ``FOR UPDATE``; it serves one daemon, which holds every lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...errors import MlwardenError

logger = logging.getLogger(__name__)

__all__ = [
    "Lease",
    "LeaseLost",
    "current_lease",
    "db_now",
    "fair_share",
    "fence",
    "holding",
    "leases_table",
    "members_table",
    "no_lease",
    "pinned",
]

leases_table = sa.Table(
    "leases",
    sa.MetaData(),
    sa.Column("kind", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=True),
)

members_table = sa.Table(
    "cluster_members",
    sa.MetaData(),
    sa.Column("instance", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)


class LeaseLost(MlwardenError):
    """The lease a write depends on is no longer this daemon's (owner or token moved)."""

    status = 409
    code = "lease_lost"


@dataclass(frozen=True)
class Lease:
    """This daemon's hold on (kind, key), valid while ``token`` is the row's token."""

    kind: str
    key: str
    owner: str
    token: int

    async def check(self, conn: AsyncConnection) -> None:
        """Lock the lease row in ``conn``'s transaction; LeaseLost unless still ours.

        Run it inside the transaction that writes the leased work: a takeover (which
        updates the row) then waits for that transaction to end, and a write after a
        takeover sees the new owner or token and is refused.
        """
        await self._verify(conn, key_share=False)

    async def _verify(self, conn: AsyncConnection, *, key_share: bool) -> None:
        """Lock the row (``FOR SHARE``, or ``FOR KEY SHARE``) and check owner and token."""
        t = leases_table
        row = (
            await conn.execute(
                sa.select(t.c.owner, t.c.token)
                .where(t.c.kind == self.kind, t.c.key == self.key)
                .with_for_update(read=True, key_share=key_share)
            )
        ).first()
        if row is None or row.owner != self.owner or row.token != self.token:
            held = "nobody" if row is None or row.owner is None else repr(row.owner)
            raise LeaseLost(
                f"lease {self.kind}/{self.key or '-'} of {self.owner!r} (token {self.token}) "
                f"is now held by {held} (token {None if row is None else row.token}): "
                "the write was refused"
            )


_current: contextvars.ContextVar[Lease | None] = contextvars.ContextVar(
    "mlwarden_lease", default=None
)


def current_lease() -> Lease | None:
    """The lease the running work is done under (None outside leased work)."""
    return _current.get()


@contextlib.contextmanager
def holding(lease: Lease | None) -> Iterator[None]:
    """Run the block as work under ``lease``: its writes are fenced by it."""
    reset = _current.set(lease)
    try:
        yield
    finally:
        _current.reset(reset)


def no_lease() -> None:
    """Leave leased work in the current context (a task spawned from it starts so)."""
    _current.set(None)


async def fence(conn: AsyncConnection) -> None:
    """Check the current lease (if any) in ``conn``'s transaction; LeaseLost if gone."""
    lease = _current.get()
    if lease is not None:
        await lease.check(conn)


class Pin:
    """The current lease held for a stretch of work that is not one transaction.

    A transaction of its own keeps the lease row locked ``FOR KEY SHARE`` while the
    work runs (notification sends: calls to the outside world that no transaction can
    undo). Its owner's renewals (a plain ``UPDATE``, which takes ``FOR NO KEY UPDATE``)
    go on unhindered, but a takeover (``SELECT … FOR UPDATE SKIP LOCKED``) skips the
    row: the work cannot change hands in the middle, even when its daemon pauses past
    the TTL. If the daemon dies, PostgreSQL ends the transaction with the connection.
    """

    def __init__(self, lease: Lease, conn: AsyncConnection) -> None:
        self.lease = lease
        self.conn = conn
        self._lock = asyncio.Lock()  # one statement at a time on the connection

    async def check(self) -> None:
        """LeaseLost unless the lease is still ours (and the idle timer starts anew)."""
        async with self._lock:
            await self.lease._verify(self.conn, key_share=True)


@contextlib.asynccontextmanager
async def pinned(engine: AsyncEngine, idle_timeout: float) -> AsyncIterator[Pin | None]:
    """Hold the current lease (if any, on PostgreSQL) pinned for the block.

    ``idle_timeout`` (seconds) bounds how long the pin outlives a daemon cut off from the
    database: PostgreSQL ends the pinning session once it has been idle that long
    (``idle_in_transaction_session_timeout``); every :meth:`Pin.check` restarts the
    count. On SQLite (one daemon) and outside leased work it pins nothing (None).
    """
    lease = _current.get()
    if lease is None or engine.dialect.name != "postgresql":
        yield None
        return
    conn = await engine.connect()
    try:
        await conn.begin()
        milliseconds = max(1000, math.ceil(idle_timeout * 1000))
        await conn.execute(
            sa.text(f"SET LOCAL idle_in_transaction_session_timeout = {milliseconds}")
        )
        pin = Pin(lease, conn)
        await pin.check()
        yield pin
    finally:
        try:  # it wrote nothing
            await conn.rollback()
        except Exception as exc:  # the server ended the session (idle timeout, restart)
            logger.warning("the pin of lease %s/%s ended badly: %s", lease.kind, lease.key, exc)
            with contextlib.suppress(Exception):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


async def db_now(conn: AsyncConnection) -> float:
    """The database's clock, in Unix seconds (the clock every expiry is judged on)."""
    if conn.dialect.name == "postgresql":
        query = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    else:
        query = "SELECT (julianday('now') - 2440587.5) * 86400.0"
    return float((await conn.execute(sa.text(query))).scalar_one())


def fair_share(keys: int, members: int) -> int:
    """How many of ``keys`` one of ``members`` live members takes at most."""
    return math.ceil(keys / max(members, 1))


async def live_members(conn: AsyncConnection, now: float, ttl: float) -> int:
    """Members whose heartbeat is younger than ``ttl`` (at least 1: the caller)."""
    m = members_table
    count = (
        await conn.execute(
            sa.select(sa.func.count()).select_from(m).where(m.c.heartbeat_at > now - ttl)
        )
    ).scalar_one()
    return max(int(count), 1)


async def ensure_rows(conn: AsyncConnection, kind: str, keys: Iterable[str]) -> None:
    """Create the missing lease rows of ``kind`` (unowned, token 0)."""
    rows = [
        {"kind": kind, "key": key, "owner": None, "token": 0, "expires_at": 0.0}
        for key in sorted(set(keys))
    ]
    if not rows:
        return
    insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    await conn.execute(insert(leases_table).on_conflict_do_nothing(), rows)


async def renew(
    conn: AsyncConnection, owner: str, kind: str, keys: Sequence[str], *, now: float, ttl: float
) -> list[Lease]:
    """Extend ``owner``'s leases of ``kind`` on ``keys``; the ones it really still holds.

    A plain ``UPDATE``: it waits for a write of the same daemon that holds the row
    (``Lease.check``) instead of skipping it, so a daemon never mistakes its own
    write in flight for a lost lease. A lease that has expired is not renewed, even
    if nobody took it meanwhile (the store was out of reach, say): its owner stopped
    its work when it could not renew it, and takes it again with a new token
    (:func:`take`), so a write of the work begun before is refused.
    """
    if not keys:
        return []
    t = leases_table
    rows = await conn.execute(
        t.update()
        .where(
            t.c.kind == kind,
            t.c.key.in_(list(keys)),
            t.c.owner == owner,
            t.c.expires_at > now,
        )
        .values(expires_at=now + ttl)
        .returning(t.c.key, t.c.token)
    )
    return [Lease(kind, row.key, owner, row.token) for row in rows.all()]


async def take(
    conn: AsyncConnection,
    owner: str,
    kind: str,
    keys: Sequence[str],
    *,
    limit: int,
    now: float,
    ttl: float,
) -> list[Lease]:
    """Take up to ``limit`` of ``keys`` that nobody holds (free or expired) for ``owner``.

    Rows another transaction has locked (another daemon taking them) are skipped, not
    waited for. Each lease taken gets its token plus one, also one of ``owner``'s own
    that expired (see :func:`renew`).
    """
    if limit <= 0 or not keys:
        return []
    t = leases_table
    candidates = (
        await conn.execute(
            sa.select(t.c.key, t.c.token)
            .where(
                t.c.kind == kind,
                t.c.key.in_(list(keys)),
                sa.or_(t.c.owner.is_(None), t.c.expires_at <= now),
            )
            .order_by(t.c.key)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    taken = []
    for row in candidates:
        token = row.token + 1
        await conn.execute(
            t.update()
            .where(t.c.kind == kind, t.c.key == row.key)
            .values(owner=owner, token=token, expires_at=now + ttl, acquired_at=now)
        )
        taken.append(Lease(kind, row.key, owner, token))
    return taken


async def release(conn: AsyncConnection, owner: str, kind: str, keys: Iterable[str]) -> None:
    """Let go of ``owner``'s leases of ``kind`` on ``keys`` (the next taker bumps the token)."""
    keys = list(keys)
    if not keys:
        return
    t = leases_table
    await conn.execute(
        t.update()
        .where(t.c.kind == kind, t.c.key.in_(keys), t.c.owner == owner)
        .values(owner=None, expires_at=0.0)
    )


async def owned(conn: AsyncConnection, owner: str, kind: str | None = None) -> list[Lease]:
    """Every lease row whose owner is ``owner`` (of ``kind``, or of every kind)."""
    t = leases_table
    query = sa.select(t.c.kind, t.c.key, t.c.token).where(t.c.owner == owner)
    if kind is not None:
        query = query.where(t.c.kind == kind)
    rows = (await conn.execute(query)).all()
    return [Lease(r.kind, r.key, owner, r.token) for r in rows]
