"""References uploaded over the API (``PUT``/``GET``/``DELETE /api/models/{name}/reference``).

An upload is checked and profiled off the event loop (daemon/ingest/reference_body.py)
before anything is stored; a bad body stores nothing and the reference in force keeps
serving. A good one replaces the model's ``reference_profiles`` row in one transaction:
the profile built from it, and the body itself as sent (column ``upload``, sealed with
``[encryption]`` on like every stored object, so ``keys rotate`` re-wraps it and ``keys
status`` counts it), its media type and SHA-256, under the source ``"upload"``. Then
the model's state is loaded again from that row: the layout (the reference's
fingerprint) changes, so the drift methods and the estimator are fitted again at the
next check and the window starts afresh, as when the configured reference changes.

The uploaded reference takes precedence over ``models.reference`` and survives
restarts (the row is read at start, daemon/ingest/startup.py). Removing it deletes the
row, and the configured reference (if any) is read and profiled again.

The body lives in the store, not on one host's disk: with PostgreSQL every daemon of a
cluster reads the same row. Once per heartbeat each daemon compares the upload SHA-256
of every model's row with the one it serves (``follow_uploads``) and loads the
reference again when they differ, so another daemon's upload or removal is in force
everywhere within ``cluster.heartbeat_seconds``. Until then a daemon serves the previous
reference; a drift check it runs meanwhile finds the stored profile changed and answers
409 (``Reference.with_sample``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...errors import Conflict, InvalidInput, NotFound
from ..profiles.reference import (
    UPLOAD_SOURCE,
    params_fingerprint,
    profile_values,
    reference_table,
)
from .reference_body import UPLOAD_TYPES, Schema, build_uploaded
from .state import ModelState

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["follow_uploads", "reference_info", "remove_reference", "upload_reference"]

logger = logging.getLogger(__name__)


async def upload_reference(
    ledger: Ledger, state: ModelState, data: bytes, media_type: str
) -> dict[str, Any]:
    """Check, profile and store ``data`` as the model's reference; its summary."""
    if media_type not in UPLOAD_TYPES:
        raise InvalidInput(
            f"Content-Type {media_type or '(none)'!r}: expected one of {', '.join(UPLOAD_TYPES)}",
            code="unsupported_media_type",
            status=415,
        )
    await state.ready.wait()
    context, mc = ledger.context, state.config
    monitoring = context.config.monitoring
    async with ledger.uploading:
        sha = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        params = params_fingerprint(mc, monitoring, UPLOAD_SOURCE)
        schema = Schema.in_force(mc, None if state.open_schema else state.layout)
        async with ledger.loading:
            reference = await asyncio.to_thread(
                build_uploaded, data, media_type, mc, monitoring, schema, f"{params[:16]}{sha[:16]}"
            )
        if ledger.models.get(mc.name) is not state:
            raise Conflict(
                f"model {mc.name!r}: its configuration or reference changed during the "
                "upload; nothing was stored, send it again"
            )
        values = {
            "model": mc.name,
            "source": UPLOAD_SOURCE,
            "params": params,
            "size": len(data),
            "mtime_ns": 0,
            "sha256": sha,
            **profile_values(reference),
            "created_at": context.clock(),
            "upload": data,
            "upload_type": media_type,
        }
        del reference
        t = reference_table
        async with context.store.begin() as conn:
            await conn.execute(t.delete().where(t.c.model == mc.name))
            await conn.execute(t.insert(), values)
        logger.info("model %s: reference uploaded (%d rows, %s)", mc.name, values["rows"], sha)
        fresh = ledger.prepare_again(mc)
        fresh.uploaded = sha  # before it is loaded: follow_uploads must not load it again
        await fresh.ready.wait()
    return await reference_info(ledger, fresh)


async def remove_reference(ledger: Ledger, state: ModelState) -> dict[str, Any]:
    """Delete the model's uploaded reference: the configured one is in force again."""
    await state.ready.wait()
    mc, t = state.config, reference_table
    async with ledger.uploading:
        async with ledger.context.store.begin() as conn:
            deleted = await conn.execute(
                t.delete().where(t.c.model == mc.name, t.c.source == UPLOAD_SOURCE)
            )
        if not deleted.rowcount:
            raise NotFound(f"model {mc.name!r} has no uploaded reference")
        logger.info("model %s: uploaded reference removed", mc.name)
        fresh = ledger.prepare_again(mc)
        await fresh.ready.wait()
    return await reference_info(ledger, fresh)


async def reference_info(ledger: Ledger, state: ModelState) -> dict[str, Any]:
    """Which reference is in force for the model (``upload``, ``config`` or ``none``)."""
    await state.ready.wait()
    mc, t = state.config, reference_table
    query = sa.select(
        t.c.source, t.c.sha256, t.c.rows, t.c.size, t.c.upload_type, t.c.created_at
    ).where(t.c.model == mc.name)
    async with ledger.context.store.connect() as conn:
        row = (await conn.execute(query)).first()
    uploaded = row is not None and row.source == UPLOAD_SOURCE
    info: dict[str, Any] = {
        "model": mc.name,
        "in_force": "upload" if state.uploaded else "config" if mc.reference else "none",
        "configured": mc.reference or None,
        "status": state.reference_status,
        "rows": None if state.reference is None else state.reference.rows,
        "features": None if state.open_schema else list(state.layout.features),
        "fingerprint": None if state.reference is None else state.layout.fingerprint,
        "upload": None,
    }
    if uploaded:
        assert row is not None
        info["upload"] = {
            "sha256": row.sha256,
            "bytes": int(row.size),
            "media_type": row.upload_type,
            "rows": int(row.rows),
            "uploaded_at": float(row.created_at),
        }
    return info


async def follow_uploads(ledger: Ledger) -> int:
    """Load again the reference of each model whose upload another daemon changed.

    Compares the upload SHA-256 of each stored row with the one this daemon serves;
    returns how many models were loaded again.
    """
    if ledger.uploading.locked():  # this daemon's own upload is being put in force
        return 0
    t = reference_table
    async with ledger.context.store.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.model, t.c.source, t.c.sha256))).all()
    stored = {r.model: r.sha256 if r.source == UPLOAD_SOURCE else "" for r in rows}
    moved = 0
    for name, state in list(ledger.models.items()):
        if state.ready.is_set() and stored.get(name, "") != state.uploaded:
            logger.info("model %s: the uploaded reference changed on another daemon", name)
            ledger.prepare_again(state.config)
            moved += 1
    return moved
