"""What is sealed with which key, the start-up key check, and key rotation.

The sealed objects are the values of the store's sealed columns
(:class:`~.encryption.SealedBytes`, :class:`~.encryption.SealedText`) and the files under
the encrypted artifact root. Each names the key that wraps its data key in its clear
header, so an inventory costs a read of the headers. Rows of a
:class:`~.encryption.SealedRows` column sealed under a shared data key are not objects of
their own: that key is, sealed in its own table's column (``outcome_keys``), and its
re-wrap covers them all.

:func:`check_keys` runs at start: for every key id in use it opens one object
completely; a missing or wrong key stops the start with
:class:`~mlwarden.errors.DecryptionFailed` naming the object and how many more depend on
that key. :class:`KeyRotation` re-wraps every data key with the active key, row by row
(each update conditional on the value being unchanged, so concurrent writers are never
overwritten) and file by file (atomic replace), reporting progress as it goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ...errors import DecryptionFailed
from .artifacts import check_file, iter_artifact_files, rewrap_file
from .encryption import SealedBytes, SealedText, Sealer, is_row_sealed, key_id_of
from .store import Store

__all__ = [
    "KeyRotation",
    "SealedColumn",
    "check_keys",
    "inventory",
    "name_stored_row",
    "sealed_columns",
]

logger = logging.getLogger(__name__)

_PAGE = 500


@dataclass(frozen=True)
class SealedColumn:
    table: sa.Table
    column: str
    text: bool

    @property
    def raw(self) -> sa.ColumnElement[Any]:
        kind = sa.Text() if self.text else sa.LargeBinary()
        return sa.type_coerce(self.table.c[self.column], kind)

    def describe(self, row: sa.Row[Any]) -> str:
        keys = ", ".join(f"{c.name}={row[n]!r}" for n, c in enumerate(self.pk))
        return f"{self.table.name}.{self.column} row ({keys})"

    @property
    def pk(self) -> list[sa.Column[Any]]:
        return list(self.table.primary_key.columns)


def sealed_columns(tables: Iterable[sa.Table]) -> list[SealedColumn]:
    out = []
    for table in tables:
        for column in table.columns:
            if isinstance(column.type, SealedBytes | SealedText):
                out.append(SealedColumn(table, column.name, isinstance(column.type, SealedText)))
    return out


@dataclass
class Inventory:
    """How many sealed objects each key wraps, and the first of each."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, tuple[str, Any]] = field(default_factory=dict)
    clear: int = 0

    def add(self, key_id: str | None, what: str, ref: Any) -> None:
        if key_id is None:
            self.clear += 1
            return
        self.counts[key_id] = self.counts.get(key_id, 0) + 1
        self.first.setdefault(key_id, (what, ref))


async def _pages(store: Store, col: SealedColumn, head_only: bool = False) -> Any:
    """Pages of (pk..., raw value) rows of ``col``, in primary-key order.

    ``head_only`` reads the first bytes of each value: enough for its key id.
    """
    pk = col.pk
    value: sa.ColumnElement[Any] = col.raw
    if head_only:
        value = sa.func.substr(col.raw, 1, 160, type_=sa.Text() if col.text else sa.LargeBinary())
    last: tuple[Any, ...] | None = None
    while True:
        query = sa.select(*pk, value).order_by(*pk).limit(_PAGE)
        if last is not None:
            query = query.where(sa.tuple_(*pk) > sa.tuple_(*last))
        async with store.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][: len(pk)])


async def inventory(store: Store, columns: list[SealedColumn], artifacts: Path | None) -> Inventory:
    inv = Inventory()
    for col in columns:
        async for rows in _pages(store, col, head_only=True):
            for row in rows:
                if row[-1] is None or (not col.text and is_row_sealed(row[-1])):
                    continue  # a row under a RowCipher key: the key's own row counts
                inv.add(key_id_of(row[-1]), col.describe(row), (col, tuple(row[:-1])))
    if artifacts is not None:
        files = await asyncio.to_thread(lambda: list(iter_artifact_files(artifacts)))
        for path in files:
            if path.name.startswith(".") and path.name.endswith(".rewrap"):
                continue  # a re-wrap in progress (artifacts.py): its file is listed
            try:
                head = await asyncio.to_thread(_head, path)
            except FileNotFoundError:  # renamed or removed since it was listed
                continue
            inv.add(key_id_of(head), f"artifact {path}", path)
    return inv


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(80)


async def check_keys(
    store: Store, sealer: Sealer, columns: list[SealedColumn], artifacts: Path | None
) -> Inventory:
    """Open one object per key in use; DecryptionFailed names it and the others at stake."""
    inv = await inventory(store, columns, artifacts)
    for key_id, (what, ref) in inv.first.items():
        try:
            if isinstance(ref, Path):
                await asyncio.to_thread(check_file, sealer, ref)
            else:
                col, key = ref
                where = [c == key[n] for n, c in enumerate(col.pk)]
                async with store.connect() as conn:
                    value = (await conn.execute(sa.select(col.raw).where(*where))).scalar()
                if value is None:
                    continue  # deleted meanwhile
                if col.text:
                    sealer.open_text(value, col.table.name, what)
                else:
                    sealer.open(bytes(value), col.table.name, what)
        except DecryptionFailed as exc:
            more = inv.counts[key_id] - 1
            raise DecryptionFailed(
                what, f"{exc.reason}; {more} more stored objects use key {key_id!r}"
            ) from None
    return inv


async def name_stored_row(
    store: Store, columns: list[SealedColumn], error: DecryptionFailed
) -> DecryptionFailed:
    """``error`` (a sealed column's value failed) naming the table, column and row key.

    The row is found by its stored value, which a tampered row no longer shares with
    any other; when it is gone (deleted meanwhile) the table alone is named.
    """
    if error.stored is None:
        return error
    found: list[str] = []
    for col in columns:
        if col.table.name != error.table:
            continue
        query = sa.select(*col.pk).where(col.raw == error.stored).limit(3)
        async with store.connect() as conn:
            found += [col.describe(row) for row in (await conn.execute(query)).all()]
    if not found:
        return error
    named = DecryptionFailed(" and ".join(found), error.reason)
    named.table, named.stored = error.table, error.stored
    return named


@dataclass
class RotationProgress:
    state: str = "idle"  # idle | running | done | failed
    active: str = ""
    total: int = 0
    done: int = 0
    rewrapped: int = 0
    error: str = ""
    remaining: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "active": self.active,
            "total": self.total,
            "done": self.done,
            "rewrapped": self.rewrapped,
            "error": self.error,
            "remaining_by_key": dict(self.remaining),
        }


class KeyRotation:
    """Re-wraps every sealed object's data key with the sealer's active key."""

    def __init__(
        self, store: Store, sealer: Sealer, columns: list[SealedColumn], artifacts: Path | None
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.columns = columns
        self.artifacts = artifacts
        self.progress = RotationProgress()

    async def run(self) -> RotationProgress:
        ring = self.sealer.keyring
        if ring is None:
            raise RuntimeError("key rotation needs encryption enabled")
        p = self.progress = RotationProgress(state="running", active=ring.active)
        try:
            inv = await inventory(self.store, self.columns, self.artifacts)
            p.total = sum(n for k, n in inv.counts.items() if k != ring.active)
            for col in self.columns:
                await self._rewrap_column(col)
            root = self.artifacts
            if root is not None:
                files = await asyncio.to_thread(lambda: list(iter_artifact_files(root)))
                for path in files:
                    if await asyncio.to_thread(rewrap_file, self.sealer, path):
                        p.rewrapped += 1
                        p.done += 1
            after = await inventory(self.store, self.columns, self.artifacts)
            p.remaining = {k: n for k, n in after.counts.items() if k != ring.active}
            p.state = "done"
            logger.info(
                "key rotation to %r done: %d data keys re-wrapped, left on old keys: %s",
                ring.active,
                p.rewrapped,
                p.remaining or "none",
            )
        except Exception as exc:
            p.state = "failed"
            p.error = str(exc)
            logger.error("key rotation to %r failed: %s", ring.active, exc)
            raise
        return p

    async def _rewrap_column(self, col: SealedColumn) -> None:
        p = self.progress
        pk = col.pk
        kind = sa.Text() if col.text else sa.LargeBinary()
        async for rows in _pages(self.store, col):
            updates = []
            for row in rows:
                value = row[-1]
                if value is None:
                    continue
                what = col.describe(row)
                new = (
                    self.sealer.rewrap_text(value, what)
                    if col.text
                    else self.sealer.rewrap(bytes(value), what)
                )
                if new is not None:
                    updates.append((row, value, new))
            if not updates:
                continue
            async with self.store.begin() as conn:
                for row, old, new in updates:
                    where = [c == row[n] for n, c in enumerate(pk)]
                    result = await conn.execute(
                        col.table.update()
                        .where(*where, col.raw == sa.literal(old, kind))
                        .values({col.column: sa.literal(new, kind)})
                    )
                    if result.rowcount:
                        p.rewrapped += 1
                    p.done += 1
            await asyncio.sleep(0)  # let ingest and the API in between pages
