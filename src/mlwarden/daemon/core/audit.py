"""Append-only, hash-chained audit log.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical
JSON, so editing, deleting or reordering any row breaks the chain from that row on;
``mlwarden audit verify`` names the first row that does not match.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .store import Schema, Store, create_tables

__all__ = ["AUDIT_SCHEMA", "AuditLog", "VerifyResult", "audit_table"]

_meta = sa.MetaData()
audit_table = sa.Table(
    "audit_log",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(256), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

AUDIT_SCHEMA = Schema("audit", [create_tables(audit_table)])

GENESIS = "0" * 64


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    body = json.dumps(
        {k: row[k] for k in ("id", "ts", "actor", "action", "target", "outcome", "detail")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_id: int | None = None
    reason: str = ""


class AuditLog:
    """Writes and verifies the audit chain.

    Writes are group-committed: a caller queues its entry and takes the lock; whoever
    holds it writes every queued entry in one transaction (the chain computed in queue
    order) and the others find theirs written when their turn comes. Each caller still
    returns only once its own entry is committed, so "written before the answer is
    sent" holds, but concurrent requests (ingest senders, say) share one commit instead
    of queueing for one each.
    """

    def __init__(self, store: Store, clock=time.time) -> None:
        self.store = store
        self.clock = clock
        self._lock = asyncio.Lock()
        self._queued: list[tuple[dict[str, Any], asyncio.Future[int]]] = []

    async def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> int:
        entry = {
            "ts": round(self.clock(), 6),
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": json.dumps(detail or {}, sort_keys=True, default=str),
        }
        written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queued.append((entry, written))
        async with self._lock:
            if not written.done():
                batch, self._queued = self._queued, []
                await self._write(batch, written)
        return written.result()

    async def _write(
        self, batch: list[tuple[dict[str, Any], asyncio.Future[int]]], own: asyncio.Future[int]
    ) -> None:
        try:
            async with self.store.begin() as conn:
                last = (
                    await conn.execute(
                        sa.select(audit_table.c.id, audit_table.c.hash)
                        .order_by(audit_table.c.id.desc())
                        .limit(1)
                    )
                ).first()
                next_id, prev = (last.id + 1, last.hash) if last else (1, GENESIS)
                rows = []
                for entry, _ in batch:
                    row = {"id": next_id, **entry, "prev_hash": prev}
                    row["hash"] = prev = entry_hash(prev, row)
                    rows.append(row)
                    next_id += 1
                await conn.execute(audit_table.insert(), rows)
        except asyncio.CancelledError:
            # Our caller went away: the others' entries go back to the front of the
            # queue for the next holder of the lock (each of them is waiting for it).
            self._queued[:0] = [(e, f) for e, f in batch if f is not own]
            raise
        except BaseException as exc:
            for _, future in batch:
                if future is not own and not future.done():
                    future.set_exception(exc)
            raise
        for row, (_, future) in zip(rows, batch, strict=True):
            future.set_result(row["id"])

    async def entries(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_table.c.id < before_id)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**r, "detail": json.loads(r["detail"])} for r in rows]

    async def verify(self) -> VerifyResult:
        prev = GENESIS
        expected_id = 1
        count = 0
        async with self.store.connect() as conn:
            result = await conn.stream(sa.select(audit_table).order_by(audit_table.c.id))
            async for mapping in result.mappings():
                count += 1
                row = dict(mapping)
                if row["id"] != expected_id:
                    return VerifyResult(
                        False, count, row["id"], f"expected row {expected_id} (a row is missing)"
                    )
                if row["prev_hash"] != prev:
                    return VerifyResult(
                        False, count, row["id"], "prev_hash does not match the previous row"
                    )
                if entry_hash(prev, row) != row["hash"]:
                    return VerifyResult(False, count, row["id"], "content does not match its hash")
                prev = row["hash"]
                expected_id += 1
        return VerifyResult(True, count)
