"""Append-only, keyed hash-chained audit log with checkpoints outside the database.

Each entry's ``hash`` is HMAC-SHA256, under a key kept outside the database, over the
previous entry's hash and the entry's canonical JSON (``scheme = "hmac-sha256"``), so
editing, deleting or reordering any row breaks the chain from that row on, and a
forger without the key cannot recompute the hashes after an edit. After every commit
the head of the chain is appended, sealed with the key, to a checkpoint file in
another directory, so deleting the newest rows is detected too (audit_seal.py says
where the key and the checkpoints live). ``mlwarden audit verify`` names the first
row that does not match, or the truncation.

Several daemons on one PostgreSQL store append to one chain: each append transaction
holds the advisory lock :data:`~.store.AUDIT_LOCK` (released at its commit), so the
head it reads is the last committed one and the ids stay consecutive.

Rows written before the key existed (``scheme = "sha256"``: plain SHA-256, no key)
still verify as a chain and are reported as legacy: they are evident only against an
edit that does not recompute the hashes. They may only come first: an unkeyed row
after a keyed one, or past the last legacy row a checkpoint recorded, is tampering.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .audit_seal import AuditKey, CheckpointError, CheckpointWriter, read_checkpoints
from .store import AUDIT_LOCK, Schema, Store, create_tables

__all__ = ["AUDIT_SCHEMA", "AuditLog", "VerifyResult", "audit_table"]

logger = logging.getLogger(__name__)

KEYED, LEGACY = "hmac-sha256", "sha256"

_COLUMNS = (
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
#: The table as version 1 created it (no ``scheme``: every row plain SHA-256).
_audit_v1 = sa.Table("audit_log", sa.MetaData(), *(c.copy() for c in _COLUMNS))
audit_table = sa.Table(
    "audit_log",
    sa.MetaData(),
    *(c.copy() for c in _COLUMNS),
    sa.Column("scheme", sa.String(16), nullable=False, server_default=LEGACY),
)


def _add_scheme(conn: sa.Connection) -> None:
    """add audit_log.scheme (rows before it are legacy: plain SHA-256)"""
    conn.execute(
        sa.text(f"ALTER TABLE audit_log ADD COLUMN scheme VARCHAR(16) NOT NULL DEFAULT '{LEGACY}'")
    )


AUDIT_SCHEMA = Schema("audit", [create_tables(_audit_v1), _add_scheme])

GENESIS = "0" * 64


def entry_hash(prev_hash: str, row: dict[str, Any], key: AuditKey | None = None) -> str:
    """The row's hash: HMAC-SHA256 under ``key``, or plain SHA-256 (legacy) without."""
    body = json.dumps(
        {k: row[k] for k in ("id", "ts", "actor", "action", "target", "outcome", "detail")},
        sort_keys=True,
        separators=(",", ":"),
    )
    if key is not None:
        return key.mac(prev_hash + body)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_id: int | None = None
    reason: str = ""
    #: Rows from before the key (plain SHA-256), all at the start of the chain.
    legacy: int = 0
    #: Checkpoints read, and the highest row one of them names (0: none).
    checkpoints: int = 0
    checkpoint_id: int = 0


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
        self.key: AuditKey | None = None
        self.checkpoints: CheckpointWriter | None = None
        self._legacy: int | None = None  # the last legacy row, looked up at the first write

    def seal(self, key: AuditKey, checkpoints: CheckpointWriter) -> None:
        """Write keyed rows from now on, with a checkpoint of the head after each commit."""
        self.key, self.checkpoints = key, checkpoints

    def close(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.close()

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
                if self.store.is_postgresql:
                    # Several daemons append to one chain: one appender at a time, and
                    # the head read after the lock is the last committed one.
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_LOCK)))
                last = (
                    await conn.execute(
                        sa.select(audit_table.c.id, audit_table.c.hash)
                        .order_by(audit_table.c.id.desc())
                        .limit(1)
                    )
                ).first()
                next_id, prev = (last.id + 1, last.hash) if last else (1, GENESIS)
                if self._legacy is None:
                    self._legacy = (
                        await conn.execute(
                            sa.select(sa.func.coalesce(sa.func.max(audit_table.c.id), 0)).where(
                                audit_table.c.scheme == LEGACY
                            )
                        )
                    ).scalar_one()
                scheme = KEYED if self.key is not None else LEGACY
                rows = []
                for entry, _ in batch:
                    row = {"id": next_id, **entry, "prev_hash": prev, "scheme": scheme}
                    row["hash"] = prev = entry_hash(prev, row, self.key)
                    rows.append(row)
                    next_id += 1
                await conn.execute(audit_table.insert(), rows)
                if scheme == LEGACY:
                    self._legacy = rows[-1]["id"]
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
        if self.checkpoints is not None:
            try:
                self.checkpoints.append(rows[-1]["id"], rows[-1]["hash"], self._legacy or 0)
            except OSError:
                logger.exception("could not write the audit checkpoint")
        for row, (_, future) in zip(rows, batch, strict=True):
            future.set_result(row["id"])

    async def entries(self, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_table.c.id < before_id)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [{**r, "detail": json.loads(r["detail"])} for r in rows]

    async def verify(
        self, key: AuditKey | None = None, checkpoint_dir: Path | None = None
    ) -> VerifyResult:
        """Check the chain row by row, then against the checkpoints in ``checkpoint_dir``.

        ``key`` defaults to the log's own (``seal``). Without a key only legacy rows can
        be checked: a keyed row is then reported as unverifiable.
        """
        key = key if key is not None else self.key
        if checkpoint_dir is None and self.checkpoints is not None:
            checkpoint_dir = self.checkpoints.path.parent
        prev = GENESIS
        expected_id = 1
        count = legacy = 0
        keyed_from: int | None = None
        hashes: dict[int, str] = {}
        try:
            points = list(read_checkpoints(checkpoint_dir, key)) if key and checkpoint_dir else []
        except CheckpointError as exc:
            return VerifyResult(False, 0, None, str(exc))
        wanted = {p.id for p in points}
        legacy_upto = max((p.legacy for p in points), default=None)
        async with self.store.connect() as conn:
            result = await conn.stream(sa.select(audit_table).order_by(audit_table.c.id))
            async for mapping in result.mappings():
                count += 1
                row = dict(mapping)
                row_id = row["id"]

                def bad(
                    reason: str, row_id: int = row_id, count: int = count, legacy: int = legacy
                ) -> VerifyResult:
                    return VerifyResult(False, count, row_id, reason, legacy, len(points))

                if row_id != expected_id:
                    return bad(f"expected row {expected_id} (a row is missing)")
                if row["prev_hash"] != prev:
                    return bad("prev_hash does not match the previous row")
                if row["scheme"] == KEYED:
                    if key is None:
                        return bad(
                            "the row is keyed (HMAC) and no audit key was found "
                            "(MLWARDEN_AUDIT_KEY, a systemd credential or the key file)"
                        )
                    keyed_from = keyed_from or row_id
                    expected = entry_hash(prev, row, key)
                elif row["scheme"] == LEGACY:
                    if keyed_from is not None:
                        return bad(f"an unkeyed row after keyed rows (from row {keyed_from})")
                    if legacy_upto is not None and row_id > legacy_upto:
                        return bad(
                            f"an unkeyed row past the last legacy row {legacy_upto} "
                            "the checkpoints recorded"
                        )
                    legacy += 1
                    expected = entry_hash(prev, row)
                else:
                    return bad(f"unknown hash scheme {row['scheme']!r}")
                if expected != row["hash"]:
                    return bad("content does not match its hash")
                if row_id in wanted:
                    hashes[row_id] = row["hash"]
                prev = row["hash"]
                expected_id += 1
        last = expected_id - 1
        # The newest checkpoint first: a truncation names how far the log went.
        for point in sorted(points, key=lambda p: (-p.id, p.file, p.line)):
            where = f"checkpoint {point.file}:{point.line}"
            if point.id > last:
                return VerifyResult(
                    False,
                    count,
                    last + 1,
                    f"truncated: {where} names row {point.id}, but the log ends at row {last}",
                    legacy,
                    len(points),
                )
            if hashes.get(point.id) != point.hash:
                return VerifyResult(
                    False,
                    count,
                    point.id,
                    f"the row does not match {where} (the chain was rewritten)",
                    legacy,
                    len(points),
                )
        if keyed_from is not None and not points and checkpoint_dir is not None:
            return VerifyResult(
                False,
                count,
                None,
                f"keyed rows but no checkpoint in {checkpoint_dir} "
                "(the checkpoint files were removed or are elsewhere)",
                legacy,
            )
        top = max((p.id for p in points), default=0)
        return VerifyResult(True, count, None, "", legacy, len(points), top)
