"""Persistence: SQLAlchemy Core over an async engine; SQLite in WAL mode by default,
PostgreSQL (asyncpg) when several daemons share one store.

Each component owns its tables and declares a Schema: an ordered list of migration
steps. The store records, per component, how many steps have been applied (table
``schema_version``) and applies the missing ones at start, each in its own
transaction. A step is never edited once released; a change is a new step. On
PostgreSQL the whole migration runs under a session advisory lock
(:data:`MIGRATION_LOCK`), so daemons starting together apply each step exactly once:
the first migrates, the others wait and then find the versions current.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ...errors import ConfigError, NotFound
from .config import StoreConfig, redact_uri
from .outage import Outage, unavailable

__all__ = [
    "ALERT_LOCKS",
    "AUDIT_LOCK",
    "INGEST_LOCKS",
    "MIGRATION_LOCK",
    "Schema",
    "Store",
    "create_tables",
    "insert_ignore",
    "lock_for_transaction",
    "upsert",
]

logger = logging.getLogger(__name__)

Step = Callable[[sa.Connection], None]

#: PostgreSQL advisory-lock keys (one 64-bit space per database; "mlw" + a number).
MIGRATION_LOCK = 0x6D6C77_0001
AUDIT_LOCK = 0x6D6C77_0002
#: SQLite's wait for a lock another connection holds (``PRAGMA busy_timeout``), in ms.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Namespaces (32-bit) of the two-key advisory locks of :func:`lock_for_transaction`.
ALERT_LOCKS = 0x6D6C7701
INGEST_LOCKS = 0x6D6C7702

_versions = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("component", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Schema:
    """The migrations of one component, applied in order."""

    component: str
    steps: Sequence[Step]


def create_tables(*tables: sa.Table) -> Step:
    """A migration step that creates ``tables`` (and their indexes)."""

    def step(conn: sa.Connection) -> None:
        for table in tables:
            table.create(conn)

    step.__doc__ = "create " + ", ".join(t.name for t in tables)
    return step


def _insert(dialect: sa.Dialect, table: sa.Table) -> Any:
    if dialect.name == "postgresql":
        return postgresql.insert(table)
    if dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {dialect.name} dialect")


def upsert(dialect: sa.Dialect, table: sa.Table, keys: Sequence[str] = ()) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column, on either backend.

    ``keys`` default to the primary key. Atomic under concurrent writers, unlike a
    select-then-insert or a delete-then-insert (PostgreSQL runs writers concurrently).
    """
    keys = list(keys) or [c.name for c in table.primary_key.columns]
    stmt = _insert(dialect, table)
    rest = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=rest)


def insert_ignore(dialect: sa.Dialect, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` on either backend (rowcount: rows inserted)."""
    return _insert(dialect, table).on_conflict_do_nothing()


async def lock_for_transaction(conn: AsyncConnection, namespace: int, key: str) -> None:
    """Serialise the transactions that name ``key`` (PostgreSQL; held until commit).

    For a read-then-write on rows no constraint protects (several daemons may run it at
    once on PostgreSQL). On SQLite, the one daemon's own logic serialises them already.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.select(sa.func.pg_advisory_xact_lock(namespace, sa.func.hashtext(key)))
        )


class Store:
    """The daemon's SQL database. ``begin()`` is a transaction, ``connect()`` is not."""

    def __init__(self, url: str, settings: StoreConfig | None = None) -> None:
        self.url = url
        self.settings = settings or StoreConfig()
        self.engine: AsyncEngine | None = None
        #: Connections outside the pool (``session()``), closed with the store.
        self._sessions: set[AsyncConnection] = set()
        self._session_engine: AsyncEngine | None = None
        #: Whether the store is out of reach now (core/outage.py); logged once per outage.
        self.outage = Outage(redact_uri(url))
        #: Who holds each pooled connection checked out now: (task, since).
        self._held: dict[int, tuple[asyncio.Task[Any] | None, float]] = {}

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file (None for PostgreSQL or an in-memory database)."""
        if not self.is_sqlite or ":memory:" in self.url:
            return None
        return Path(self.url.split(":///", 1)[1].split("?", 1)[0])

    async def open(self, schemas: Iterable[Schema] = ()) -> None:
        if (path := self.sqlite_path) is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_async_engine(self.url, **self._engine_options())
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        # A new connection made: the server is there (again).
        event.listen(self.engine.sync_engine, "connect", lambda *_: self.outage.ended())
        event.listen(self.engine.sync_engine, "checkout", self._checked_out)
        event.listen(self.engine.sync_engine, "checkin", self._checked_in)
        try:
            if self.is_postgresql:
                await self._reach()
            await self.migrate(schemas)
        except BaseException:
            await self.close()
            raise

    async def _reach(self) -> None:
        """Connect once; ConfigError naming the (redacted) URL when the server says no."""
        assert self.engine is not None
        try:
            async with self.engine.connect():
                pass
        except (OSError, TimeoutError, sa.exc.DBAPIError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise ConfigError(
                f"cannot connect to the store {redact_uri(self.url)} (store.url): "
                f"{type(reason).__name__}: {reason}"
            ) from None

    def _engine_options(self) -> dict[str, Any]:
        if not self.is_postgresql:
            return {}
        s = self.settings
        server_settings = {"application_name": s.application_name}
        for name, seconds in (
            ("statement_timeout", s.statement_timeout_seconds),
            ("lock_timeout", s.lock_timeout_seconds),
            ("idle_in_transaction_session_timeout", s.idle_in_transaction_timeout_seconds),
        ):
            server_settings[name] = str(int(seconds * 1000))
        return {
            "pool_size": s.pool_size,
            "max_overflow": s.max_overflow,
            "pool_timeout": s.pool_timeout_seconds,
            "pool_recycle": s.pool_recycle_seconds,
            "pool_pre_ping": True,
            "connect_args": {
                "timeout": s.connect_timeout_seconds,
                "server_settings": server_settings,
            },
        }

    def _checked_out(self, _dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop in this thread
            task = None
        self._held[id(record)] = (task, time.monotonic())

    def _checked_in(self, _dbapi_conn: Any, record: Any) -> None:
        self._held.pop(id(record), None)

    def holders(self) -> str:
        """The tasks holding a pooled connection now, longest first ("ingest-writer for
        31.2s, ..."; "none"): what to look at when the store says it is locked."""
        now = time.monotonic()
        held = sorted(self._held.values(), key=lambda held: held[1])
        return (
            ", ".join(f"{t.get_name() if t else '?'} for {now - since:.1f}s" for t, since in held)
            or "none"
        )

    def busy(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` holds a pooled connection now (is in a statement or a
        transaction): cancelled there, its connection would be invalidated mid-way.
        On PostgreSQL the pool's pre-ping runs before the checkout is recorded; a task
        cancelled in it loses that connection, whose transaction the server ends."""
        return any(held is task for held, _ in self._held.values())

    async def close(self) -> None:
        for conn in list(self._sessions):
            await self.end_session(conn)
        if self._session_engine is not None:
            await self._session_engine.dispose()
            self._session_engine = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def session(self) -> AsyncConnection:
        """A PostgreSQL session of its own, outside the pool, in autocommit.

        For state a session holds for long, such as the advisory locks of the model
        locks (daemon/registry/locks.py): it takes no connection from ``pool_size``.
        End it with ``end_session`` (``close`` ends those left).
        """
        if self._session_engine is None:
            options = self._engine_options()
            self._session_engine = create_async_engine(
                self.url, poolclass=NullPool, connect_args=options["connect_args"]
            )
        conn = await self._session_engine.connect()
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions.add(conn)
        return conn

    async def end_session(self, conn: AsyncConnection) -> None:
        """Close a connection ``session()`` opened (an error closing it is ignored)."""
        self._sessions.discard(conn)
        try:
            await conn.close()
        except Exception as exc:  # the server or the network went first
            logger.debug("closing a store session: %s", exc)

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without error."""
        assert self.engine is not None, "store is not open"
        return self.engine.begin()

    def connect(self) -> AsyncConnection:
        """A connection (use ``async with``); reads see what was committed."""
        assert self.engine is not None, "store is not open"
        return self.engine.connect()

    async def row_by_id(self, table: sa.Table, row_id: str | int, *, missing: str) -> sa.Row[Any]:
        """The row of ``table`` whose ``id`` is ``row_id``; NotFound(``missing``) if none."""
        async with self.connect() as conn:
            row = (await conn.execute(sa.select(table).where(table.c.id == row_id))).first()
        if row is None:
            raise NotFound(missing)
        return row

    async def ping(self) -> None:
        """A round trip to the store; an unreachable store is noted (``outage``)."""
        try:
            async with self.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            if unavailable(exc):
                self.outage.began(exc)
            raise
        self.outage.ended()

    async def migrate(self, schemas: Iterable[Schema]) -> dict[str, int]:
        """Apply every missing step of every schema; return the versions now in force.

        On PostgreSQL one connection holds :data:`MIGRATION_LOCK` throughout, so of
        several daemons starting at once exactly one applies each step. On SQLite a file
        lock beside the database does the same for a daemon and a CLI command that open
        the store at once.
        """
        assert self.engine is not None, "store is not open"
        if (path := self.sqlite_path) is not None:
            lock = _file_lock(path.with_name(path.name + ".migrate.lock"))
            async with lock, self.engine.connect() as conn:
                return await _migrate(conn, schemas)
        async with self.engine.connect() as conn:
            if self.is_postgresql:
                # A migration may legitimately outlast the statement timeout.
                await conn.exec_driver_sql("SET statement_timeout = 0")
                await conn.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK)))
                await conn.commit()
            try:
                return await _migrate(conn, schemas)
            finally:
                if self.is_postgresql and not conn.invalidated:
                    await conn.rollback()
                    await conn.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK)))
                    await conn.exec_driver_sql("RESET statement_timeout")
                    await conn.commit()

    async def schema_versions(self) -> dict[str, int]:
        async with self.connect() as conn:
            rows = await conn.execute(sa.select(_versions.c.component, _versions.c.version))
            return dict(rows.all())


async def _migrate(conn: AsyncConnection, schemas: Iterable[Schema]) -> dict[str, int]:
    async with conn.begin():
        await conn.run_sync(lambda c: _versions.create(c, checkfirst=True))
    applied: dict[str, int] = {}
    for schema in schemas:
        async with conn.begin():
            applied[schema.component] = await conn.run_sync(_apply, schema)
    return applied


def _apply(conn: sa.Connection, schema: Schema) -> int:
    current = conn.execute(
        sa.select(_versions.c.version).where(_versions.c.component == schema.component)
    ).scalar()
    current = current or 0
    if current > len(schema.steps):
        raise RuntimeError(
            f"database schema of {schema.component!r} is at version {current}, newer than "
            f"this mlwarden knows ({len(schema.steps)}): refusing to start on a downgrade"
        )
    for number, step in enumerate(schema.steps[current:], start=current + 1):
        logger.info("migrating %s to version %d: %s", schema.component, number, step.__doc__)
        step(conn)
    if len(schema.steps) != current:
        values = {"version": len(schema.steps), "applied_at": time.time()}
        if current:
            conn.execute(
                _versions.update().where(_versions.c.component == schema.component), values
            )
        else:
            conn.execute(_versions.insert(), {"component": schema.component, **values})
    return len(schema.steps)


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` of ``path`` (waited for in a thread), held for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
