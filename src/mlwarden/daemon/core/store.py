"""Persistence: SQLAlchemy Core over an async engine; SQLite in WAL mode by default.

Each component owns its tables and declares a Schema: an ordered list of migration
steps. The store records, per component, how many steps have been applied (table
``schema_version``) and applies the missing ones at start, each in its own
transaction. A step is never edited once released; a change is a new step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ...errors import NotFound

__all__ = ["Schema", "Store", "create_tables"]

logger = logging.getLogger(__name__)

Step = Callable[[sa.Connection], None]

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


class Store:
    """The daemon's SQL database. ``begin()`` is a transaction, ``connect()`` is not."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    async def open(self, schemas: Iterable[Schema] = ()) -> None:
        if self.is_sqlite and ":memory:" not in self.url:
            path = self.url.split(":///", 1)[1]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_async_engine(self.url)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        await self.migrate(schemas)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

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
        async with self.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def migrate(self, schemas: Iterable[Schema]) -> dict[str, int]:
        """Apply every missing step of every schema; return the versions now in force."""
        async with self.begin() as conn:
            await conn.run_sync(lambda c: _versions.create(c, checkfirst=True))
        applied: dict[str, int] = {}
        for schema in schemas:
            async with self.begin() as conn:
                applied[schema.component] = await conn.run_sync(_apply, schema)
        return applied

    async def schema_versions(self) -> dict[str, int]:
        async with self.connect() as conn:
            rows = await conn.execute(sa.select(_versions.c.component, _versions.c.version))
            return dict(rows.all())


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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
