"""The open buckets of a daemon that is gone: taken over by a live one (PostgreSQL).

Each daemon journals the batches of its open buckets under its own ``writer`` and
flushes only its own rows (daemon/ingest/ledger.py). A daemon that dies for good (kill -9,
a host that never returns, a graceful stop that is never followed by a start) leaves
its journal rows behind: the other daemons' windows count them (daemon/ingest/shared.py),
but nobody would ever write them into buckets, and they would fall out of the window
when it moves past their bucket instead of becoming stored buckets.

So a live daemon takes them over. A writer is **gone** when it has no member row whose
heartbeat is younger than ``cluster.lease_ttl_seconds`` (the rule the leases follow).
For each such writer the daemon takes the lease ``ingest-journal/<writer>`` (one taker
in the cluster), and in one transaction that starts with the lease's fence it checks
the writer is still gone (its member row locked) and moves the rows of the models it
watches, with its layout, to itself (``UPDATE … SET writer``). After the commit the rows
are folded into its open buckets, which its next flush writes as its own buckets:
exactly once, since from that commit on the rows are listed under the taker (the others'
windows drop the part they folded under the old writer and read it anew under the new).

The writer may not be dead, only paused (a frozen VM): when it wakes, its open buckets
still hold the batches taken over. Its flush therefore deletes its journal rows and
checks it deleted as many as its open bucket folded; when fewer remain, it writes
nothing and rebuilds its open buckets from the journal rows still its own
(``JournalTaken``), so no batch is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.leases import Lease, db_now, members_table
from ..profiles.columns import Columns
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from .prepare import BucketKey
from .state import ModelState
from .tables import journal_table
from .work import Work, fold

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["ORPHAN_WORK", "JournalTaken", "adopt_gone", "rebuild_open"]

logger = logging.getLogger(__name__)

#: The lease kind of a gone writer's journal rows (key: the writer's name).
ORPHAN_WORK = "ingest-journal"


class JournalTaken(RuntimeError):
    """This daemon's journal rows of an open bucket were taken over by another daemon."""

    def __init__(self, models: set[str]) -> None:
        super().__init__(f"journal rows of {', '.join(sorted(models))} were taken over")
        self.models = models


async def gone_writers(
    conn: AsyncConnection, me: str, models: Sequence[str], ttl: float
) -> list[str]:
    """Writers of journal rows of ``models`` that are not live members (``me`` aside)."""
    if not models:
        return []
    j, m = journal_table, members_table
    live = sa.select(m.c.instance).where(m.c.heartbeat_at > await db_now(conn) - ttl)
    query = (
        sa.select(j.c.writer)
        .distinct()
        .where(
            j.c.model.in_(list(models)),
            j.c.writer.is_not(None),
            j.c.writer != me,
            j.c.writer.not_in(live),
        )
    )
    return sorted(row.writer for row in (await conn.execute(query)).all())


async def reassign(
    conn: AsyncConnection,
    states: Sequence[ModelState],
    gone: str,
    me: str,
    ttl: float,
    sample_size: int,
) -> list[tuple[ModelState, BucketKey, Profile]]:
    """Move ``gone``'s journal rows of ``states`` to ``me``; their profiles to fold.

    Nothing moves when ``gone`` is a live member again (its row is locked meanwhile, so
    a restart under that name waits for this transaction before it replays). Rows of
    another layout than the watched one are left for a daemon that has it.
    """
    m, j = members_table, journal_table
    member = (
        await conn.execute(
            sa.select(m.c.heartbeat_at).where(m.c.instance == gone).with_for_update()
        )
    ).first()
    if member is not None and member.heartbeat_at > await db_now(conn) - ttl:
        return []
    taken: list[tuple[ModelState, BucketKey, Profile]] = []
    for state in states:
        rows = (
            await conn.execute(
                j.update()
                .where(
                    j.c.model == state.config.name,
                    j.c.writer == gone,
                    j.c.layout == state.layout.fingerprint,
                )
                .values(writer=me)
                .returning(j.c.seq, j.c.version, j.c.bucket_start, j.c.columns)
            )
        ).all()
        if not rows:
            continue
        profiles = await asyncio.to_thread(_profiles, rows, state.layout, sample_size)
        taken += [(state, key, profile) for key, profile in profiles]
        logger.warning(
            "model %s: took over %d journalled batches of %s (no heartbeat for %.0f s)",
            state.config.name,
            len(rows),
            gone,
            ttl,
        )
    return taken


async def rebuild_open(ledger: Ledger, models: set[str]) -> None:
    """Rebuild the open buckets of ``models`` from this daemon's own journal rows.

    Run when a flush found fewer of its journal rows than its open buckets folded:
    another daemon took them over while this one was thought gone (a pause).
    """
    states = [ledger.models[name] for name in sorted(models) if name in ledger.models]
    rebuilt: list[list[tuple[BucketKey, Profile]]] = []

    async def write(conn: AsyncConnection) -> None:
        rebuilt[:] = [await own_journal(conn, s, ledger.writer, ledger.sample_size) for s in states]

    def after(_result: None) -> None:
        for state, profiles in zip(states, rebuilt, strict=True):
            logger.warning(
                "model %s: open buckets rebuilt from %d own journal rows (the others "
                "were taken over by another daemon)",
                state.config.name,
                len(profiles),
            )
            state.open.clear()
            state.journalled.clear()
            for key, profile in profiles:
                fold(state, key, profile)
            state.generation += 1

    await ledger.submit_moving(states, Work(write, after, exclusive=True))


async def adopt_gone(ledger: Ledger) -> int:
    """Take over the journal rows of the writers that are gone (see the module).

    Returns the batches taken over. Each gone writer's rows are moved under the
    lease ``ingest-journal/<writer>``, checked inside the moving transaction.
    """
    if not ledger.shared:
        return 0
    cluster = ledger.context.cluster
    # After an outage of the store every member's heartbeat is old: the others are
    # judged only once they have had a TTL to renew it (they are alive, just cut off
    # like this daemon was).
    if ledger.context.store.outage.reachable_for() < cluster.ttl:
        return 0
    states = [s for s in ledger.models.values() if s.ready.is_set() and not s.open_schema]
    async with ledger.context.store.connect() as conn:
        gone = await gone_writers(conn, ledger.writer, [s.config.name for s in states], cluster.ttl)
    adopted = 0
    for writer in gone:
        lease = await cluster.singleton(ORPHAN_WORK, writer)
        if lease is None:  # another daemon is taking them
            continue
        try:
            adopted += await _adopt(ledger, states, writer, lease)
        finally:
            await cluster.release(ORPHAN_WORK, [writer])
    return adopted


async def _adopt(ledger: Ledger, states: list[ModelState], gone: str, lease: Lease) -> int:
    taken: list[tuple[ModelState, BucketKey, Profile]] = []

    async def write(conn: AsyncConnection) -> None:
        # The writer task runs this, outside the caller's context: the lease is
        # checked by hand (what fence(conn) does under holding(lease)).
        await lease.check(conn)
        taken[:] = await reassign(
            conn, states, gone, ledger.writer, ledger.context.cluster.ttl, ledger.sample_size
        )

    def after(_result: None) -> None:
        for state, key, profile in taken:
            fold(state, key, profile)

    await ledger.submit_moving(states, Work(write, after, exclusive=True))
    return len(taken)


async def own_journal(
    conn: AsyncConnection, state: ModelState, me: str, sample_size: int
) -> list[tuple[BucketKey, Profile]]:
    """The profiles of ``me``'s journal rows of ``state`` (its open buckets, rebuilt)."""
    j = journal_table
    rows = (
        await conn.execute(
            sa.select(j.c.seq, j.c.version, j.c.bucket_start, j.c.columns).where(
                j.c.model == state.config.name,
                j.c.writer == me,
                j.c.layout == state.layout.fingerprint,
            )
        )
    ).all()
    return await asyncio.to_thread(_profiles, rows, state.layout, sample_size)


def _profiles(
    rows: Sequence[Any], layout: Layout, sample_size: int
) -> list[tuple[BucketKey, Profile]]:
    rng = np.random.default_rng()
    return [
        (
            (row.version, row.bucket_start),
            Profile.from_columns(layout, Columns.from_bytes(row.columns), sample_size, rng),
        )
        for row in sorted(rows, key=lambda row: row.seq)
    ]
