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
    """Writes and verifies the audit chain. Writes are serialised by one lock."""

    def __init__(self, store: Store, clock=time.time) -> None:
        self.store = store
        self.clock = clock
        self._lock = asyncio.Lock()

    async def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> int:
        async with self._lock, self.store.begin() as conn:
            last = (
                await conn.execute(
                    sa.select(audit_table.c.id, audit_table.c.hash)
                    .order_by(audit_table.c.id.desc())
                    .limit(1)
                )
            ).first()
            row = {
                "id": (last.id + 1) if last else 1,
                "ts": round(self.clock(), 6),
                "actor": actor,
                "action": action,
                "target": target,
                "outcome": outcome,
                "detail": json.dumps(detail or {}, sort_keys=True, default=str),
            }
            prev = last.hash if last else GENESIS
            row["prev_hash"] = prev
            row["hash"] = entry_hash(prev, row)
            await conn.execute(audit_table.insert(), row)
            return row["id"]

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
            async for row in result.mappings():
                count += 1
                row = dict(row)
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
