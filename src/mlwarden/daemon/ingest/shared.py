"""A model's window on a store that several daemons write (PostgreSQL).

Every daemon folds the batches it accepted into its own open buckets, journals them
(``ingest_journal``, with its ``writer``: ``Config.instance``) and writes each closed
bucket as its own ``profile_buckets`` row. Profiles are mergeable, so the window a
check sees is the merge of

- every daemon's closed buckets: the kept in-memory window (daemon/ingest/window.py),
  brought up to the store's list of buckets before each check: buckets another daemon
  wrote since are read and counted in by ``seq`` (only the new ones, never the whole
  window again);
- this daemon's open buckets (in memory);
- the other daemons' open buckets: their journal rows, profiled here once each and
  folded per (writer, version, bucket start); the rows already folded are not read
  again, and a part whose rows left the journal (its writer flushed it: it is now a
  stored bucket) is dropped.

The bucket and journal lists are read in one statement (one snapshot, even under READ
COMMITTED), so a bucket that another daemon flushes meanwhile is counted either as its
journal rows or as its stored row, never both and never neither. When a read that
follows the listing finds the store moved on (rows flushed or purged in between), the
window is listed again. On a shared store a ``seq`` committed late (a lower one after a
higher one) is still found: the window compares the set of seqs, not a high-water mark.

The result counts each accepted record once, whichever daemon took it: the same rows,
histograms and counts as one daemon fed everything (the sample keys of another
daemon's open rows are drawn anew when profiled here, so the sampled rows may differ).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa

from ..core.store import Store
from ..profiles.columns import Columns
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from .bucket_window import BucketWindow
from .state import ModelState, OpenPart
from .tables import journal_table, profile_table
from .window import add_rows, bucket_query, moved_window, window_profile

__all__ = ["StoreChanged", "merge_open", "shared_count", "shared_window"]

#: Listings of the store tried before a check gives up (the store kept moving between
#: the listing and the reads that follow it: buckets flushed or purged meanwhile).
_ATTEMPTS = 4
_CHUNK = 500

_PartKey = tuple[str, str, float]  # writer, version, bucket start


class StoreChanged(RuntimeError):
    """The store changed under every listing tried: the check is refused, not wrong."""


def merge_open(total: Profile, profile: Profile) -> Profile:
    """Merge an open bucket's ``profile`` into ``total`` without sharing its arrays.

    An open bucket's sample changes in place as batches fold in (Profile.fold); a merge
    into an empty total would take over its arrays, so they are copied first.
    """
    if not total.rows:
        profile = profile.copy()
        profile.keys, profile.sample = profile.keys.copy(), profile.sample.copy()
    return total.merge(profile)


async def shared_window(
    store: Store,
    state: ModelState,
    writer: str,
    first: float,
    last: float,
    version: str | None,
    sample_size: int,
) -> Profile:
    """Every daemon's closed buckets and the other daemons' open ones in [first, last).

    ``writer`` is this daemon (its own open buckets are the caller's to merge).
    """
    name = state.config.name
    async with state.window_lock:
        try:
            for _ in range(_ATTEMPTS):
                stored, journal = await _listing(store, state, writer, first, version)
                window = await moved_window(store, state, first, version, sample_size)
                if not await _reconcile(store, state, window, stored):
                    state.windows.pop(version, None)  # counts a bucket the listing lacks
                    continue
                if not await _sync_open(store, state, journal, sample_size):
                    continue
                total = await window_profile(store, state, window, last)
                for (_, v, start), part in state.others.items():
                    if first <= start < last and (version is None or v == version):
                        total = merge_open(total, part.profile)
                return total
        except BaseException:
            state.windows.pop(version, None)  # half moved: read it anew next time
            raise
    raise StoreChanged(
        f"the stored buckets of {name!r} changed under {_ATTEMPTS} reads in a row; "
        "the next check reads them again"
    )


async def shared_count(store: Store, model: str, writer: str, since: float | None) -> int:
    """Records of ``model`` in every stored bucket and every other daemon's open one.

    The other daemons' open buckets are their journal rows (a dead daemon's too, until
    a live one takes them over); both are read in one statement, so a bucket flushed
    meanwhile counts once. ``writer``'s own open buckets are the caller's to add.
    """
    b, j = profile_table, journal_table
    journal = sa.select(sa.literal(1).label("kind"), sa.literal(0).label("rows"), j.c.columns)
    journal = journal.where(j.c.model == model, j.c.writer.is_distinct_from(writer))
    stored = sa.select(sa.literal(0), sa.func.coalesce(sa.func.sum(b.c.rows), 0), sa.null()).where(
        b.c.model == model
    )
    if since is not None:
        journal = journal.where(j.c.bucket_start >= since)
        stored = stored.where(b.c.bucket_start >= since)
    async with store.connect() as conn:
        rows = (await conn.execute(sa.union_all(journal, stored))).all()
    blobs = [blob for kind, _, blob in rows if kind == 1]
    total = sum(int(count) for kind, count, _ in rows if kind == 0)
    return total + sum(await asyncio.to_thread(lambda: [Columns.count(x) for x in blobs]))


async def _listing(
    store: Store, state: ModelState, writer: str, first: float, version: str | None
) -> tuple[set[int], dict[_PartKey, set[int]]]:
    """The seqs of the stored buckets and of the other writers' journal rows, one snapshot."""
    b, j = profile_table, journal_table
    stored = bucket_query(
        state, version, sa.literal(0).label("kind"), b.c.seq, b.c.writer, b.c.version,
        b.c.bucket_start,
    ).where(b.c.bucket_start >= first)  # fmt: skip
    # Every version's journal rows: the parts are kept across checks of other filters.
    journal = sa.select(sa.literal(1), j.c.seq, j.c.writer, j.c.version, j.c.bucket_start).where(
        j.c.model == state.config.name,
        j.c.layout == state.layout.fingerprint,
        j.c.writer != writer,
        j.c.bucket_start >= first,
    )
    async with store.connect() as conn:
        rows = (await conn.execute(sa.union_all(stored, journal))).all()
    buckets: set[int] = set()
    parts: dict[_PartKey, set[int]] = {}
    for kind, seq, by, v, start in rows:
        if kind == 0:
            buckets.add(seq)
        else:
            parts.setdefault((by, v, start), set()).add(seq)
    return buckets, parts


async def _reconcile(
    store: Store, state: ModelState, window: BucketWindow, stored: set[int]
) -> bool:
    """Count in the listed buckets the window lacks; False if it counts an unlisted one."""
    if not window.buckets.keys() <= stored:
        return False
    new = sorted(stored - window.buckets.keys())
    if not new:
        return True
    b = profile_table
    rows: list[sa.Row[int, str, float, bytes]] = []
    async with store.connect() as conn:
        for i in range(0, len(new), _CHUNK):
            query = bucket_query(
                state, window.version, b.c.seq, b.c.version, b.c.bucket_start, b.c.profile
            ).where(b.c.seq.in_(new[i : i + _CHUNK]))
            rows.extend((await conn.execute(query)).all())
    if len(rows) != len(new):  # purged meanwhile
        return False
    await asyncio.to_thread(add_rows, window, sorted(rows, key=lambda row: row.seq))
    window.max_seq = max(window.max_seq, new[-1])
    return True


async def _sync_open(
    store: Store, state: ModelState, listed: dict[_PartKey, set[int]], sample_size: int
) -> bool:
    """Bring the other writers' open parts to the listed journal rows; False: read again."""
    others = state.others
    for key in list(others):
        listed_seqs = listed.get(key)
        if listed_seqs is None or not others[key].seqs <= listed_seqs:
            del others[key]  # flushed by its writer (now a stored bucket)
    wanted = {
        seq: key
        for key, seqs in listed.items()
        for seq in (seqs - others[key].seqs if key in others else seqs)
    }
    if not wanted:
        return True
    j = journal_table
    seqs = sorted(wanted)
    blobs: list[sa.Row[int, bytes]] = []
    async with store.connect() as conn:
        for i in range(0, len(seqs), _CHUNK):
            query = sa.select(j.c.seq, j.c.columns).where(j.c.seq.in_(seqs[i : i + _CHUNK]))
            blobs.extend((await conn.execute(query)).all())
    if len(blobs) != len(seqs):  # some were flushed meanwhile: their bucket is stored now
        return False
    layout = state.layout
    profiles = await asyncio.to_thread(_profiles, blobs, layout, sample_size)
    for seq, profile in profiles:
        key = wanted[seq]
        part = others.get(key)
        if part is None:
            others[key] = OpenPart({seq}, profile)
        else:
            part.profile = part.profile.fold(profile)
            part.seqs.add(seq)
    return True


def _profiles(
    rows: Sequence[sa.Row[int, bytes]], layout: Layout, sample_size: int
) -> list[tuple[int, Profile]]:
    rng = np.random.default_rng()
    return [
        (seq, Profile.from_columns(layout, Columns.from_bytes(blob), sample_size, rng))
        for seq, blob in sorted(rows, key=lambda row: row[0])
    ]
