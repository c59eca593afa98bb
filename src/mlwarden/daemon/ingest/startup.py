"""Preparing a watched model for ingest: its reference profile and the journal replay.

At start (and when a model's configuration or uploaded reference changes) the ingest
service's :class:`~mlwarden.daemon.ingest.ledger.Ledger` loads the model's reference
profile, reusing the stored one while the source file is unchanged, then rebuilds the
open buckets from the journal of batches committed but not yet flushed. An uploaded
reference (``reference_profiles.upload``) takes precedence over the configured one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from ...errors import Conflict
from ..core.context import Context
from ..profiles.columns import Columns
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from ..profiles.reference import (
    UPLOAD_SOURCE,
    Reference,
    decode_reference,
    layout_without_reference,
    params_fingerprint,
    profile_values,
    read_reference,
    reference_table,
    source_sha256,
    source_stat,
)
from .prepare import BucketKey
from .reference_body import Schema, build_uploaded
from .state import ModelState
from .tables import journal_table

__all__ = ["load_reference", "replay_journal"]

logger = logging.getLogger(__name__)


async def load_reference(context: Context, state: ModelState, loading: asyncio.Semaphore) -> None:
    """Give ``state`` its reference profile and the layout that follows from it.

    The stored profile is reused while its source is unchanged; otherwise the source is
    read (one read at a time, under ``loading``) and its profile stored.
    """
    mc, monitoring = state.config, context.config.monitoring
    t = reference_table
    listed = [c for c in t.columns if c.name != "upload"]  # the body only when rebuilt
    async with context.store.connect() as conn:
        row = (await conn.execute(sa.select(*listed).where(t.c.model == mc.name))).first()
    if row is not None and row.source == UPLOAD_SOURCE:
        await _load_uploaded(context, state, row, loading)
        return
    if not mc.reference:
        layout = layout_without_reference(mc, monitoring)
        state.reference_status = "none"
        if layout is not None:
            state.layout, state.open_schema = layout, False
        return
    params = params_fingerprint(mc, monitoring)
    size, mtime = await asyncio.to_thread(source_stat, mc.reference)
    if row is not None and (row.params, row.source) != (params, mc.reference):
        row = None  # another source or other profiling parameters: rebuilt
    sha = None
    if row is not None and (row.size, row.mtime_ns) != (size, mtime):
        sha = await asyncio.to_thread(source_sha256, mc.reference)
        if sha != row.sha256:
            row = None  # the content changed: rebuilt
    if row is not None:
        reference = await asyncio.to_thread(decode_reference, row, monitoring.reference_sample_size)
        state.reference_status = "ready (stored profile)"
        if (row.size, row.mtime_ns) != (size, mtime):
            async with context.store.begin() as conn:
                await conn.execute(
                    t.update().where(t.c.model == mc.name).values(size=size, mtime_ns=mtime)
                )
    else:
        if sha is None:
            sha = await asyncio.to_thread(source_sha256, mc.reference)
        fingerprint = f"{params[:16]}{sha[:16]}"
        async with loading:
            reference = await asyncio.to_thread(
                read_reference, mc, monitoring, context.config.tracking_uri, fingerprint
            )
        values = {
            "model": mc.name,
            "source": mc.reference,
            "params": params,
            "size": size,
            "mtime_ns": mtime,
            "sha256": sha,
            **profile_values(reference),
            "created_at": context.clock(),
        }
        async with context.store.begin() as conn:
            await conn.execute(_configured_row(conn.dialect), values)
        state.reference_status = "ready (built)"
        logger.info(
            "model %s: reference profile built from %s (%d rows)",
            mc.name,
            mc.reference,
            reference.rows,
        )
    _in_force(context, state, reference)


def _configured_row(dialect: sa.Dialect) -> Any:
    """Insert or replace a model's row with its configured reference's, unless the row
    holds an upload meanwhile (another daemon's: it wins, follow_uploads loads it).

    An upsert, not a delete and an insert: daemons starting together on PostgreSQL
    would otherwise both insert, and one fail on the primary key.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    t = reference_table
    insert = (postgresql if dialect.name == "postgresql" else sqlite).insert(t)
    rest = {c.name: insert.excluded[c.name] for c in t.columns if c.name != "model"}
    return insert.on_conflict_do_update(
        index_elements=[t.c.model], set_=rest, where=t.c.source != UPLOAD_SOURCE
    )


def _in_force(context: Context, state: ModelState, reference: Reference) -> None:
    # The sample is read back from the row just read or written when methods are fitted.
    sample_size = context.config.monitoring.reference_sample_size
    reference = reference.sample_in_store(context.store, state.config.name, sample_size)
    state.reference, state.layout, state.open_schema = reference, reference.layout, False


async def _load_uploaded(
    context: Context, state: ModelState, row: sa.Row[Any], loading: asyncio.Semaphore
) -> None:
    """The uploaded reference of ``row``: its stored profile, or rebuilt from its body
    when the profiling parameters changed since (checked against the configuration)."""
    mc, monitoring = state.config, context.config.monitoring
    params = params_fingerprint(mc, monitoring, UPLOAD_SOURCE)
    state.uploaded = row.sha256
    if row.params == params:
        reference = await asyncio.to_thread(decode_reference, row, monitoring.reference_sample_size)
        state.reference_status = "ready (uploaded, stored profile)"
        _in_force(context, state, reference)
        return
    t = reference_table
    async with context.store.connect() as conn:
        body = (await conn.execute(sa.select(t.c.upload).where(t.c.model == mc.name))).scalar()
    if body is None:  # removed meanwhile (another daemon): the configured one, next time
        raise Conflict(f"model {mc.name!r}: the uploaded reference was removed meanwhile")
    fingerprint = f"{params[:16]}{row.sha256[:16]}"
    schema = Schema.in_force(mc, layout_without_reference(mc, monitoring))
    async with loading:
        reference = await asyncio.to_thread(
            build_uploaded, body, row.upload_type, mc, monitoring, schema, fingerprint
        )
    del body
    values = {"params": params, **profile_values(reference), "created_at": context.clock()}
    async with context.store.begin() as conn:
        await conn.execute(t.update().where(t.c.model == mc.name, t.c.sha256 == row.sha256), values)
    state.reference_status = "ready (uploaded, rebuilt)"
    logger.info("model %s: uploaded reference profiled again (%d rows)", mc.name, reference.rows)
    _in_force(context, state, reference)


async def replay_journal(
    context: Context, state: ModelState, sample_size: int, writer: str
) -> list[tuple[BucketKey, Profile]]:
    """The open buckets' profiles rebuilt from the journal of committed batches.

    Only ``writer``'s rows (this daemon's: other daemons replay theirs); rows written
    before the ``writer`` column (one daemon then) are taken over by the first daemon
    that starts. Journal rows of another reference layout are deleted.
    """
    j = journal_table
    name, fingerprint = state.config.name, state.layout.fingerprint
    mine = sa.select(j).where(j.c.model == name, j.c.writer == writer).order_by(j.c.seq)
    unclaimed = sa.select(j.c.seq).where(j.c.model == name, j.c.writer.is_(None)).limit(1)
    async with context.store.connect() as conn:
        old = (await conn.execute(unclaimed)).first() is not None
    if old:  # written before the writer column: taken over in one transaction
        async with context.store.begin() as conn:
            await conn.execute(
                j.update().where(j.c.model == name, j.c.writer.is_(None)).values(writer=writer)
            )
    async with context.store.connect() as conn:
        rows = (await conn.execute(mine)).all()
    stale = [r.seq for r in rows if r.layout != fingerprint]
    if stale:
        logger.warning(
            "model %s: %d journal batches belong to another reference; dropped",
            name,
            len(stale),
        )
        async with context.store.begin() as conn:
            await conn.execute(j.delete().where(j.c.seq.in_(stale)))
    good = [r for r in rows if r.layout == fingerprint]
    if not good:
        return []
    profiles = await asyncio.to_thread(
        _replay_rows, good, state.layout, sample_size, np.random.default_rng()
    )
    logger.info("model %s: %d journalled batches folded back into open buckets", name, len(good))
    return profiles


def _replay_rows(
    rows: Sequence[sa.Row[*tuple[Any, ...]]],
    layout: Layout,
    sample_size: int,
    rng: np.random.Generator,
) -> list[tuple[BucketKey, Profile]]:
    return [
        (
            (r.version, r.bucket_start),
            Profile.from_columns(layout, Columns.from_bytes(r.columns), sample_size, rng),
        )
        for r in rows
    ]
