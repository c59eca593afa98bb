"""A model's kept windows of closed buckets, moved along the store one bucket at a time.

A check's window (the stored bucket profiles that start in ``[first, last)``) is kept
in memory per model and version filter (``ModelState.windows``) as a
:class:`~.bucket_window.BucketWindow`, which adds a closed bucket and evicts an expired
one without merging the whole window again. This module keeps each in step with the
store.

New buckets are found by their ``seq`` in ``profile_buckets`` (the store stays the one
source of truth, whoever wrote the row), and every change is checked against the
store's count, row sum and newest ``seq`` of the window; any mismatch (a purge, a
reused rowid) rebuilds the window from the store, and so does a window whose held
sample is no longer exact. A rebuild streams the stored buckets in seq order, a few at
a time, so its memory is bounded. The result depends only on which buckets are stored,
not on the order they arrived: the window after a restart is the window before it.

The ingest housekeeping moves every kept window right after it writes the closed
buckets (:func:`move_windows`), so the check after a bucket closes finds its window
moved and assembled; a check that comes first moves it itself, under the same lock.

A stored bucket that starts past the end of the checked window (the clock stepped
back after it was written) is counted by the kept window but is not in the check's:
the check then merges the buckets up to the end from the store, once, and reuses that
profile until the window changes (a bucket closes or expires).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ..core.store import Store
from ..profiles.blobs import decode_bucket
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from .bucket_window import BucketWindow
from .state import ModelState
from .tables import profile_table

__all__ = [
    "add_rows",
    "bucket_query",
    "closed_buckets",
    "move_windows",
    "moved_window",
    "window_profile",
]

#: Stored buckets decoded per thread hop while a window is rebuilt (two chunks in flight).
_CHUNK = 8
#: While a window is read from SQLite, this much of the database file is memory-mapped
#: (the blob pages are then copied from the map instead of read one pread at a time:
#: 2x faster for a 288-bucket window); the map is dropped when the read is done.
_MMAP_BYTES = 1 << 30
#: At most this many version filters keep a window per model.
_MAX_WINDOWS = 4

#: A ``profile_buckets`` row as a window reads it.
_BucketRow = sa.Row[int, str, float, bytes]  # seq, version, bucket_start, profile


async def closed_buckets(
    store: Store,
    state: ModelState,
    first: float,
    last: float,
    version: str | None,
    sample_size: int,
) -> Profile:
    """The merged profile of ``state``'s stored buckets starting in [first, last).

    The window is moved and caught up when it can be, rebuilt from the store when it
    cannot (see the module docstring).
    """
    async with state.window_lock:
        try:
            window = await moved_window(store, state, first, version, sample_size)
            return await window_profile(store, state, window, last)
        except BaseException:
            state.windows.pop(version, None)  # half moved: read it anew next time
            raise


async def window_profile(
    store: Store, state: ModelState, window: BucketWindow, last: float
) -> Profile:
    """The profile of ``window``'s buckets that start before ``last`` (a copy to merge into).

    The caller holds ``state.window_lock``.
    """
    if not window.beyond(last):
        return window.profile()
    # A bucket past the end (a clock stepped back): the window up to ``last`` is merged
    # apart, once per change of the window, not at every check.
    key = (window.first, last, window.generation, window.max_seq, len(window.buckets))
    if window.bounded is None or window.bounded[0] != key:
        bounded = await _build(
            store, state, window.layout, window.first, window.version, window.sample_size, last
        )
        window.bounded = (key, bounded.profile())
    return window.bounded[1].copy()  # merged into by the caller, as profile() is


async def move_windows(store: Store, state: ModelState, first: float, sample_size: int) -> int:
    """Move ``state``'s kept windows to ``first`` now, so that the next check finds them moved.

    Called by the ingest service's housekeeping after its flush (off the check path): a
    closed bucket is counted in, an expired one evicted, the window's profile assembled.
    Only windows already kept are moved (the first check after a start builds its
    own); a window that cannot be moved is rebuilt, as the check would. Returns how many
    windows were moved.
    """
    moved = 0
    if not state.windows:
        return moved
    async with state.window_lock:
        for version in list(state.windows):
            window = state.windows.get(version)
            if window is None or first < window.first or window.sample_size != sample_size:
                continue  # asked for by a longer window, or to be rebuilt by its check
            if first == window.first and window.generation == state.generation:
                continue  # nothing closed or expired since
            try:
                window = await moved_window(store, state, first, version, sample_size)
                await asyncio.to_thread(window.assemble)
            except BaseException:
                state.windows.pop(version, None)
                raise
            moved += 1
    return moved


async def moved_window(
    store: Store, state: ModelState, first: float, version: str | None, sample_size: int
) -> BucketWindow:
    """``state``'s window for ``version`` moved to ``first`` (or rebuilt), kept in ``state``.

    The caller holds ``state.window_lock``.
    """
    layout = state.layout
    window = state.windows.get(version)
    fresh = (
        window is not None
        and window.layout.fingerprint == layout.fingerprint
        and window.sample_size == sample_size
        and first >= window.first
    )
    if fresh:
        assert window is not None
        generation = state.generation
        changed = False
        if first > window.first:
            fresh = await _evict(store, state, window, first)
            changed = True
        if fresh and generation != window.generation:
            await _catch_up(store, state, window)
            changed = True
        if fresh and changed:
            fresh = await _matches_store(store, state, window)
        window.generation = generation
        fresh = fresh and window.exact()
    if not fresh:
        window = await _build(store, state, layout, first, version, sample_size)
    assert window is not None
    state.windows.pop(version, None)
    state.windows[version] = window
    while len(state.windows) > _MAX_WINDOWS:
        del state.windows[next(iter(state.windows))]
    return window


def bucket_query(
    state: ModelState, version: str | None, *columns: sa.ColumnElement[Any]
) -> sa.Select[*tuple[Any, ...]]:
    """Select ``columns`` of ``state``'s stored buckets (of ``version``, if given)."""
    b = profile_table
    query = sa.select(*columns).where(
        b.c.model == state.config.name, b.c.layout == state.layout.fingerprint
    )
    return query if version is None else query.where(b.c.version == version)


async def _build(
    store: Store,
    state: ModelState,
    layout: Layout,
    first: float,
    version: str | None,
    sample_size: int,
    last: float | None = None,
) -> BucketWindow:
    """A window built from every stored bucket starting at or after ``first``."""
    b = profile_table
    generation = state.generation
    window = BucketWindow(layout, sample_size, version, first)
    query = bucket_query(state, version, b.c.seq, b.c.version, b.c.bucket_start, b.c.profile).where(
        b.c.bucket_start >= first
    )
    if last is not None:
        query = query.where(b.c.bucket_start < last)
    adding: asyncio.Future[None] | None = None
    mapped = store.is_sqlite
    try:
        async with store.connect() as conn:
            if mapped:  # the blobs' overflow pages read from a map, not a pread each
                await conn.exec_driver_sql(f"PRAGMA mmap_size={_MMAP_BYTES}")
            try:
                # No ORDER BY: SQLite would sort the rows, blobs and all, in a temporary
                # b-tree (the window does not depend on the order its buckets are added in).
                result = await conn.stream(query)
                # The next chunk is read while the last one is decoded and added (two
                # threads: the driver's and the one adding); at most two chunks are held.
                async for rows in result.partitions(_CHUNK):
                    if adding is not None:
                        await adding
                    adding = asyncio.ensure_future(asyncio.to_thread(add_rows, window, rows))
            finally:
                if mapped:
                    await conn.exec_driver_sql("PRAGMA mmap_size=0")
        if adding is not None:
            await adding
    except BaseException:
        if adding is not None and not adding.done():
            await asyncio.wait([adding])  # never leave a thread adding to a window
        raise
    window.generation = generation
    return window


async def _catch_up(store: Store, state: ModelState, window: BucketWindow) -> None:
    """Count in the buckets stored since the window last looked (seq above its newest)."""
    b = profile_table
    # The new seqs first (a range of the primary key), then their blobs by key: one
    # statement filtering the blob rows on the start index cost tens of ms.
    query = bucket_query(state, window.version, b.c.seq, b.c.bucket_start)
    async with store.connect() as conn:
        found = (await conn.execute(query.where(b.c.seq > window.max_seq))).all()
        seqs = [seq for seq, start in found if start >= window.first]
        # Buckets that start before the window never enter it (the start only moves on).
        window.max_seq = max([window.max_seq, *(seq for seq, _ in found)])
        if not seqs:
            return
        blobs = bucket_query(
            state, window.version, b.c.seq, b.c.version, b.c.bucket_start, b.c.profile
        )
        rows = (await conn.execute(blobs.where(b.c.seq.in_(seqs)))).all()
    await asyncio.to_thread(add_rows, window, sorted(rows, key=lambda row: row.seq))


async def _evict(store: Store, state: ModelState, window: BucketWindow, first: float) -> bool:
    """Move the window's start to ``first``; False when it must be rebuilt."""
    seqs = window.expiring(first)
    expired: list[Profile] = []
    if seqs:
        b = profile_table
        query = bucket_query(state, window.version, b.c.profile).where(b.c.seq.in_(seqs))
        async with store.connect() as conn:
            blobs = (await conn.execute(query)).scalars().all()
        expired = await asyncio.to_thread(
            lambda: [
                decode_bucket(window.layout, blob, window.sample_size, False) for blob in blobs
            ]
        )
    return window.evict(first, expired, seqs)


async def _matches_store(store: Store, state: ModelState, window: BucketWindow) -> bool:
    """Whether the store holds exactly the buckets the window counts."""
    b = profile_table
    query = bucket_query(
        state, window.version, sa.func.count(), sa.func.sum(b.c.rows), sa.func.max(b.c.seq)
    ).where(b.c.bucket_start >= window.first)
    async with store.connect() as conn:
        count, rows, newest = (await conn.execute(query)).one()
    mine = window.buckets
    return (count, rows or 0, newest or 0) == (len(mine), window.rows, max(mine, default=0))


def add_rows(window: BucketWindow, rows: Iterable[_BucketRow]) -> None:
    for row in rows:
        profile = decode_bucket(window.layout, row.profile, window.sample_size, True)
        window.add(row.seq, row.version, row.bucket_start, profile)
