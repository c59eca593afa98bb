"""A model's window of closed buckets, kept in memory and moved one bucket at a time.

The window of a drift check is the sum of the stored bucket profiles that start in
``[first, last)``. Re-reading and merging every stored bucket whenever a bucket closes
or the window slides (once per ``bucket_seconds``) costs O(window): 288 buckets of a
24-hour window carry up to ``sample_size`` sampled rows each. :class:`BucketWindow`
keeps instead, per model (and per version filter):

- the sums of the additive parts (row, value, null/NaN/inf counts, histograms,
  category counts): a closed bucket is added, an expired one subtracted, exactly (the
  expired bucket's counts are read back from the store: one row, not the window);
- per bucket, its count, mean, M2, min and max (a few numbers per feature): mean and M2
  of the window are merged from them (Chan et al.'s pairwise formula, vectorised over
  the buckets in (start, version, seq) order), min and max are taken over them;
- the sampled rows of its buckets whose bottom-k key is at most a ``cutoff``: all of
  them while at most ``sample_size * 5 / 4`` are held, otherwise the cutoff drops to the
  key of rank ``sample_size * 9 / 8``. The window's sample is the ``sample_size`` held
  rows with the smallest keys (held sorted by key and column by column, the sample is a
  view of them whose per-feature columns a check reads in place). That
  is exactly the bottom-k sample of the union of the stored bucket samples (what a full
  merge gives) as long as at least ``sample_size`` rows are held or the cutoff was never
  lowered; when evictions leave fewer, the window is rebuilt.

New buckets are found by their ``seq`` in ``profile_buckets`` (the store stays the one
source of truth, whoever wrote the row), and every change is checked against the
store's count, row sum and newest ``seq`` of the window; any mismatch (a purge, a
reused rowid) rebuilds the window from the store. A rebuild streams the stored
buckets in seq order, a few at a time, so its memory is bounded. The result depends
only on which buckets are stored, not on the order they arrived: the window after a
restart is the window before it.

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
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa

from ..core.config import ModelConfig
from ..core.store import Store
from ..profiles.blobs import decode_bucket
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from .tables import profile_table

__all__ = [
    "BucketWindow",
    "WindowState",
    "add_rows",
    "bucket_query",
    "closed_buckets",
    "move_windows",
    "moved_window",
    "window_profile",
]

#: The additive parts of a profile, summed and subtracted exactly.
_SUMS = ("count", "nulls", "nans", "infs", "hist", "cat_counts", "cat_nulls", "cat_unseen")
_MOMENTS = ("count", "mean", "m2", "minimum", "maximum")
#: Stored buckets decoded per thread hop while a window is rebuilt (two chunks in flight).
_CHUNK = 8
#: While a window is read from SQLite, this much of the database file is memory-mapped
#: (the blob pages are then copied from the map instead of read one pread at a time:
#: 2x faster for a 288-bucket window); the map is dropped when the read is done.
_MMAP_BYTES = 1 << 30
#: At most this many version filters keep a window per model.
_MAX_WINDOWS = 4


@dataclass
class _Bucket:
    """What the window keeps of one stored bucket besides its share of the sums."""

    seq: int
    version: str
    start: float
    rows: int
    moments: np.ndarray  # (5, F) float64: count, mean, m2, minimum, maximum


class BucketWindow:
    """The closed buckets of one model (and version filter) starting at or after ``first``."""

    def __init__(self, layout: Layout, sample_size: int, version: str | None, first: float):
        self.layout = layout
        self.sample_size = sample_size
        self.version = version
        self.first = first
        self.generation = -1
        self.max_seq = 0
        self.rows = 0
        empty = Profile(layout, sample_size)
        self.sums = {name: getattr(empty, name) for name in _SUMS}
        self.buckets: dict[int, _Bucket] = {}
        self.cutoff = math.inf
        self.keys = np.zeros(0)
        self.sample = np.zeros((0, len(layout.numeric)))
        self.starts = np.zeros(0)
        # Held rows added since the last gather, concatenated once (not at every add).
        self._parts: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._pending = 0
        self._sorted = True
        self._profile: Profile | None = None
        #: ((first, last, generation), profile) of the buckets before ``last`` when some
        #: counted bucket starts at or after it (clock skew): merged apart, kept until
        #: the window changes.
        self.bounded: tuple[tuple[float, float, int, int, int], Profile] | None = None

    @property
    def held_limit(self) -> int:
        """Held sampled rows are cut back to this many (an eighth over ``sample_size``)."""
        return self.sample_size + max(self.sample_size // 8, 1)

    # -- changes -----------------------------------------------------------------------

    def add(self, seq: int, version: str, start: float, profile: Profile) -> None:
        """Count a stored bucket (its profile as decoded, sample included) in."""
        self.max_seq = max(self.max_seq, seq)
        if start < self.first or seq in self.buckets:
            return
        self.rows += profile.rows
        for name in _SUMS:
            self.sums[name] = self.sums[name] + getattr(profile, name)
        moments = np.array([getattr(profile, name) for name in _MOMENTS], dtype=np.float64)
        self.buckets[seq] = _Bucket(seq, version, start, profile.rows, moments)
        keys = profile.keys
        if len(keys):
            keep = keys <= self.cutoff
            if keep.all():  # copies: the decoded arrays are views of the stored blob
                keys, sample = keys.copy(), profile.sample.copy()
            else:
                keys, sample = keys[keep], profile.sample[keep]
            if len(keys):
                self._parts.append((keys, sample, start))
                self._pending += len(keys)
                self._sorted = False
                if len(self.keys) + self._pending > self.held_limit + self.sample_size // 8:
                    self._lower_cutoff()
        self._profile = None

    def _gather(self) -> None:
        """Concatenate the held rows added since the last gather."""
        if not self._parts:
            return
        keys, samples, starts = zip(*self._parts, strict=True)
        self.keys = np.concatenate([self.keys, *keys])
        self.sample = np.concatenate([self.sample, *samples])
        self.starts = np.concatenate(
            [self.starts, *(np.full(len(k), start) for k, start in zip(keys, starts, strict=True))]
        )
        self._parts, self._pending = [], 0

    def expiring(self, first: float) -> list[int]:
        """The seqs of the buckets that start before ``first``."""
        return [b.seq for b in self.buckets.values() if b.start < first]

    def evict(self, first: float, expired: list[Profile], seqs: list[int]) -> bool:
        """Move the window's start to ``first``, subtracting the ``expired`` buckets.

        ``expired`` are the stored profiles of ``seqs`` (``expiring(first)``), read back
        from the store (their counts are needed, not their samples). False when they do
        not match what the window counted: the window must then be rebuilt.
        """
        gone = [self.buckets.pop(seq) for seq in seqs]
        self.first = first
        if len(expired) != len(gone) or sum(p.rows for p in expired) != sum(b.rows for b in gone):
            return False
        for profile in expired:
            self.rows -= profile.rows
            for name in _SUMS:
                self.sums[name] = self.sums[name] - getattr(profile, name)
        self._gather()
        if len(self.starts):
            keep = self.starts >= first
            self.keys, self.sample, self.starts = (
                self.keys[keep], self.sample[keep], self.starts[keep]
            )  # fmt: skip
        self._profile = None
        return True

    def exact(self) -> bool:
        """Whether the held rows still give the exact bottom-k sample of the window."""
        return self.cutoff == math.inf or len(self.keys) + self._pending >= self.sample_size

    def beyond(self, last: float) -> bool:
        """Whether a counted bucket starts at or after ``last`` (outside the window)."""
        return any(b.start >= last for b in self.buckets.values())

    def _lower_cutoff(self) -> None:
        self._gather()
        limit = self.held_limit
        self.cutoff = float(np.partition(self.keys, limit - 1)[limit - 1])
        keep = self.keys <= self.cutoff  # every held row up to the cutoff, ties included
        self.keys, self.sample, self.starts = self.keys[keep], self.sample[keep], self.starts[keep]

    # -- the window's profile ----------------------------------------------------------

    def profile(self) -> Profile:
        """The merged profile of the counted buckets (cached until the window changes)."""
        return self.assemble().copy()

    def assemble(self) -> Profile:
        """The cached merged profile, assembled now if the window changed (blocking)."""
        if self._profile is None:
            self._profile = self._assemble()
        return self._profile

    def _assemble(self) -> Profile:
        profile = Profile(self.layout, self.sample_size)
        if not self.buckets:
            return profile
        profile.rows = self.rows
        for name in _SUMS:
            setattr(profile, name, self.sums[name])
        order = sorted(self.buckets.values(), key=lambda b: (b.start, b.version, b.seq))
        count, mean, m2, low, high = np.stack([b.moments for b in order], axis=1)
        n = self.sums["count"]
        with np.errstate(invalid="ignore", divide="ignore"):
            total_mean = np.where(n > 0, (count * mean).sum(axis=0) / n, 0.0)
            spread = (count * (mean - total_mean) ** 2).sum(axis=0)
        profile.mean = total_mean
        profile.m2 = np.where(n > 0, m2.sum(axis=0) + spread, 0.0)
        profile.minimum, profile.maximum = low.min(axis=0), high.max(axis=0)
        self._gather()
        if not self._sorted:  # held rows by key: the window's sample is a prefix, not a copy
            by_key = np.argsort(self.keys, kind="stable")
            self.keys, self.sample, self.starts = (
                self.keys[by_key], self.sample[by_key], self.starts[by_key]
            )  # fmt: skip
            self._sorted = True
        if not self.sample.flags.f_contiguous:
            # Held column by column: each feature's sampled values are contiguous, so a
            # check reads them in place (Profile.features_data) instead of transposing
            # the sample (5,000 x 50 values) at every check.
            self.sample = np.asfortranarray(self.sample)
        profile.keys, profile.sample = (
            self.keys[: self.sample_size],
            self.sample[: self.sample_size],
        )
        return profile


# -- the store side --------------------------------------------------------------------


class WindowState(Protocol):
    """What the windows of one model are kept in: the ingest service's ModelState.

    A Protocol, not ModelState itself: daemon/ingest/state.py imports this module.
    """

    @property
    def config(self) -> ModelConfig:
        """The model's configuration (its ``name`` selects its buckets)."""
        ...

    @property
    def layout(self) -> Layout:
        """The layout of its stored buckets (their ``fingerprint`` selects them)."""
        ...

    @property
    def generation(self) -> int:
        """Bumped whenever closed buckets are written."""
        ...

    @property
    def windows(self) -> dict[str | None, BucketWindow]:
        """The kept windows by version filter (None: every version)."""
        ...

    @property
    def window_lock(self) -> asyncio.Lock:
        """Held while a window is moved or rebuilt."""
        ...


#: A ``profile_buckets`` row as a window reads it.
_BucketRow = sa.Row[int, str, float, bytes]  # seq, version, bucket_start, profile


async def closed_buckets(
    store: Store,
    state: WindowState,
    first: float,
    last: float,
    version: str | None,
    sample_size: int,
) -> Profile:
    """The merged profile of ``state``'s stored buckets starting in [first, last).

    ``state`` is the ingest service's ModelState (see WindowState). The window is moved
    and caught up when it can be, rebuilt from the store when it cannot (see the module
    docstring).
    """
    async with state.window_lock:
        try:
            window = await moved_window(store, state, first, version, sample_size)
            return await window_profile(store, state, window, last)
        except BaseException:
            state.windows.pop(version, None)  # half moved: read it anew next time
            raise


async def window_profile(
    store: Store, state: WindowState, window: BucketWindow, last: float
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


async def move_windows(store: Store, state: WindowState, first: float, sample_size: int) -> int:
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
    store: Store, state: WindowState, first: float, version: str | None, sample_size: int
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
    state: WindowState, version: str | None, *columns: sa.ColumnElement[Any]
) -> sa.Select[*tuple[Any, ...]]:
    """Select ``columns`` of ``state``'s stored buckets (of ``version``, if given)."""
    b = profile_table
    query = sa.select(*columns).where(
        b.c.model == state.config.name, b.c.layout == state.layout.fingerprint
    )
    return query if version is None else query.where(b.c.version == version)


async def _build(
    store: Store,
    state: WindowState,
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


async def _catch_up(store: Store, state: WindowState, window: BucketWindow) -> None:
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


async def _evict(store: Store, state: WindowState, window: BucketWindow, first: float) -> bool:
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


async def _matches_store(store: Store, state: WindowState, window: BucketWindow) -> bool:
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
