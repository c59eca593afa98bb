"""The in-memory window of closed buckets: the same profile as merging every bucket anew."""

from __future__ import annotations

import contextlib
import contextvars
import math
import zipfile

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlwarden.daemon.ingest.bucket_window import BucketWindow
from mlwarden.daemon.ingest.tables import profile_table
from mlwarden.daemon.profiles.columns import Columns
from mlwarden.daemon.profiles.layout import Layout
from mlwarden.daemon.profiles.profile import Profile
from mlwarden.daemon.warden import Warden

#: The store-level tests run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends


def layout() -> Layout:
    edges = np.sort(np.random.default_rng(0).normal(size=(3, 9)), axis=1)
    return Layout(("x0", "x1", "x2"), ("c0",), edges, (("a", "b", "c"),), 2, "t")


def bucket(lay: Layout, rows: int, rng: np.random.Generator, sample_size: int) -> Profile:
    x = rng.normal(loc=rng.normal(), size=(rows, 3))
    x[rng.random(size=x.shape) < 0.02] = np.nan
    x[rng.random(size=x.shape) < 0.01] = np.inf
    codes = rng.integers(-2, 3, size=(rows, 1)).astype(np.int32)
    return Profile.from_columns(lay, Columns(x, codes), sample_size, rng)


def merged(lay: Layout, parts: list[Profile], sample_size: int) -> Profile:
    """The reference result: every bucket merged anew (what a full re-read gives)."""
    total = Profile(lay, sample_size)
    for part in parts:
        total.merge(part)
    return total


def assert_same(window: Profile, full: Profile) -> None:
    assert window.rows == full.rows
    for name in ("count", "nulls", "nans", "infs", "hist", "cat_counts", "cat_nulls"):
        np.testing.assert_array_equal(getattr(window, name), getattr(full, name), err_msg=name)
    np.testing.assert_array_equal(window.cat_unseen, full.cat_unseen)
    np.testing.assert_array_equal(window.minimum, full.minimum)
    np.testing.assert_array_equal(window.maximum, full.maximum)
    np.testing.assert_allclose(window.mean, full.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(window.m2, full.m2, rtol=1e-12)
    assert sorted(window.keys) == sorted(full.keys)
    np.testing.assert_array_equal(
        window.sample[np.argsort(window.keys)], full.sample[np.argsort(full.keys)]
    )


@pytest.mark.parametrize("sizes", [(400, 40), (20, 40)])  # samples cut, samples complete
def test_sliding_window_equals_merging_its_buckets_anew(sizes):
    rows, sample_size = sizes
    lay, rng = layout(), np.random.default_rng(3)
    stored = {seq: (float(seq), bucket(lay, rows, rng, sample_size)) for seq in range(1, 13)}
    window = BucketWindow(lay, sample_size, None, first=1.0)
    for seq, (start, profile) in stored.items():
        window.add(seq, "1", start, profile)
    assert_same(window.profile(), merged(lay, [p for _, p in stored.values()], sample_size))
    rebuilt = 0
    for seq in range(13, 40):  # one bucket closes, the oldest expires
        stored[seq] = (float(seq), bucket(lay, rows, rng, sample_size))
        window.add(seq, "1", float(seq), stored[seq][1])
        first = float(seq - 11)
        gone = window.expiring(first)
        assert window.evict(first, [stored.pop(s)[1] for s in gone], gone)
        if not window.exact():  # too few held rows left: what closed_buckets rebuilds
            rebuilt += 1
            window = BucketWindow(lay, sample_size, None, first)
            for s, (start, profile) in stored.items():
                window.add(s, "1", start, profile)
        assert window.exact()
        assert_same(window.profile(), merged(lay, [p for _, p in stored.values()], sample_size))
    # Held rows are bounded, and (with 12 buckets of 40 sampled rows for a 40-row window
    # sample) the margin is not always enough: the rebuild path is exercised too.
    assert len(window.keys) <= window.held_limit + sample_size // 8
    if rows > sample_size:
        assert window.cutoff < math.inf and rebuilt > 0


def test_the_window_sample_is_held_column_by_column_and_read_in_place():
    # The window's sample is assembled column by column when the window moves (off the
    # check): a check reads each feature's values in place, without a transposed copy.
    lay, rng = layout(), np.random.default_rng(8)
    window = BucketWindow(lay, 40, None, first=1.0)
    codes = np.zeros((200, 1), dtype=np.int32)
    parts = [  # every value finite: each column is a view (a copy of the finite values else)
        Profile.from_columns(lay, Columns(rng.normal(size=(200, 3)), codes), 40, rng)
        for _ in range(6)
    ]
    for seq, part in enumerate(parts, start=1):
        window.add(seq, "1", float(seq), part)
    profile = window.profile()
    assert profile.sample.strides[0] == profile.sample.itemsize
    full = merged(lay, parts, 40)
    assert_same(profile, full)
    names = lay.numeric
    for data, name in zip(profile.features_data(names), names, strict=True):
        assert data.sample is not None and not data.sample.flags.writeable
        assert np.shares_memory(data.sample, profile.sample)
        alone = full.feature_data(name)  # a sample held row by row: a copy per feature
        assert alone.sample is not None
        np.testing.assert_array_equal(np.sort(data.sample), np.sort(alone.sample))
    # An open bucket merged in keeps the layout; the window's own arrays are untouched.
    before = window.profile().sample.copy()
    total = window.profile().merge(bucket(lay, 100, rng, 40))
    assert total.sample.strides[0] == total.sample.itemsize
    np.testing.assert_array_equal(window.profile().sample, before)


def test_eviction_that_does_not_match_the_store_asks_for_a_rebuild():
    lay, rng = layout(), np.random.default_rng(4)
    parts = [bucket(lay, 50, rng, 10) for _ in range(3)]
    window = BucketWindow(lay, 10, None, first=0.0)
    for seq, part in enumerate(parts, start=1):
        window.add(seq, "1", float(seq), part)
    # The store lost bucket 1 (a purge): nothing comes back for it.
    assert not window.evict(2.0, [], window.expiring(2.0))


# -- through the ledger, with a clock that moves -----------------------------------------

BUCKET = 60
START = 1_700_000_040.0  # a bucket boundary


@pytest.fixture
def reference(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "kind": rng.choice(["a", "b"], n),
            "prediction": rng.normal(size=n),
        }
    )
    path = tmp_path / "reference.parquet"
    frame.to_parquet(path)
    return path


def settings(reference) -> str:
    return (
        f"[monitoring]\nbucket_seconds = {BUCKET}\nsample_size = 30\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
    )


async def send(ingest, minute: int, n: int) -> None:
    rng = np.random.default_rng(minute)
    records = [
        {
            "id": f"r{minute}-{i}",
            "ts": START + minute * BUCKET + i * BUCKET / (2 * n),
            "features": {"x": float(rng.normal(loc=minute / 10)), "kind": "ab"[i % 2]},
            "prediction": float(rng.normal()),
        }
        for i in range(n)
    ]
    await ingest.record_predictions("m", {"records": records})


async def stored_window(warden: Warden, since: float, until: float) -> Profile:
    """Every stored bucket in the window merged anew (the reference result)."""
    state = warden.ingest.model_state("m")
    b = profile_table
    query = sa.select(b.c.profile).where(
        b.c.model == "m", b.c.bucket_start >= since, b.c.bucket_start < until
    )
    async with warden.store.connect() as conn:
        blobs = (await conn.execute(query)).scalars().all()
    return merged(state.layout, [Profile.from_bytes(state.layout, x, 30) for x in blobs], 30)


async def test_window_moves_with_the_clock_and_survives_a_restart(make_config, reference):
    now = [START]
    config = make_config(settings(reference), **{"monitoring.window_hours": 5 * BUCKET / 3600})
    async with Warden(config, clock=lambda: now[0]) as warden:
        ingest = warden.ingest
        state = ingest.model_state("m")
        await state.ready.wait()
        for minute in range(12):  # one bucket closes and, after 5, one expires per minute
            await send(ingest, minute, 40)
            now[0] = START + (minute + 1) * BUCKET
            await ingest.ledger.flush()
            since = now[0] - 5 * BUCKET
            window = await ingest.ledger.window(state, since, now[0])
            assert_same(window, await stored_window(warden, since, now[0]))
            assert window.rows == 40 * min(minute + 1, 5)
        kept = state.windows[None]
        assert min(b.start for b in kept.buckets.values()) == since
        before = await ingest.ledger.window(state, since, now[0])
        # A bucket deleted behind the window's back (as a purge would): the next move
        # finds the store does not match and reads the window anew.
        async with warden.store.begin() as conn:
            await conn.execute(
                profile_table.delete().where(profile_table.c.bucket_start == since + BUCKET)
            )
        await send(ingest, 12, 40)
        now[0] += BUCKET
        await ingest.ledger.flush()
        since += BUCKET
        after = await ingest.ledger.window(state, since, now[0])
        assert state.windows[None] is not kept
        assert after.rows == 40 * 4
        assert_same(after, await stored_window(warden, since, now[0]))
    async with Warden(config, clock=lambda: now[0]) as again:
        ingest = again.ingest
        state = ingest.model_state("m")
        await state.ready.wait()
        restarted = await ingest.ledger.window(state, since, now[0])
        assert_same(restarted, after)
        np.testing.assert_array_equal(restarted.mean, after.mean)  # bit for bit
        np.testing.assert_array_equal(restarted.m2, after.m2)
    assert before.rows == 40 * 5


async def test_concurrent_flushes_write_a_closed_bucket_once(make_config, reference):
    import asyncio

    now = [START]
    async with Warden(make_config(settings(reference)), clock=lambda: now[0]) as warden:
        ingest = warden.ingest
        await ingest.model_state("m").ready.wait()
        await send(ingest, 0, 40)
        now[0] = START + BUCKET
        written = await asyncio.gather(ingest.ledger.flush(), ingest.ledger.flush())
        assert sorted(written) == [0, 1]
        query = sa.select(sa.func.count(), sa.func.sum(profile_table.c.rows))
        async with warden.store.connect() as conn:
            assert tuple((await conn.execute(query)).one()) == (1, 40)


@pytest.mark.parametrize("flushed", ["before", "after"])
async def test_a_bucket_flushed_while_the_window_is_read_counts_once(
    make_config, reference, monkeypatch, flushed
):
    """A flush between the read of the stored buckets and that of the open ones (or
    just before the store is read) neither loses the bucket nor counts it twice."""
    from mlwarden.daemon.ingest import ledger as ledger_module

    now = [START]
    async with Warden(make_config(settings(reference)), clock=lambda: now[0]) as warden:
        ingest = warden.ingest
        state = ingest.model_state("m")
        await state.ready.wait()
        await send(ingest, 0, 40)
        now[0] = START + BUCKET
        # The store's part: closed buckets (SQLite), with the other daemons' (shared).
        name = "shared_window" if ingest.ledger.shared else "closed_buckets"
        read = getattr(ledger_module, name)
        calls = []

        async def flushing_read(*args, **kwargs):
            calls.append(flushed)
            if len(calls) == 1 and flushed == "before":
                assert await ingest.ledger.flush() == 1
            profile = await read(*args, **kwargs)
            if len(calls) == 1 and flushed == "after":
                assert await ingest.ledger.flush() == 1
            return profile

        monkeypatch.setattr(ledger_module, name, flushing_read)
        window = await ingest.ledger.window(state, START, now[0])
        assert window.rows == 40
        assert len(calls) == 2  # read again: a flush was under way
        assert not state.open and state.moving == 0


_watched: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("watched", default=None)


@contextlib.contextmanager
def statements_run(warden: Warden):
    """The SQL statements that the code inside the block runs (and the tasks it starts):
    not those of the daemon's own timers beside it (leases, retention, the outbox)."""
    seen: list[str] = []

    def listener(conn, cursor, statement: str, *rest) -> None:
        if _watched.get() is seen:  # the context follows SQLAlchemy's greenlets
            seen.append(statement)

    engine = warden.store.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", listener)
    token = _watched.set(seen)
    try:
        yield seen
    finally:
        _watched.reset(token)
        sa.event.remove(engine, "before_cursor_execute", listener)


def assert_reads_only_the_listing(warden: Warden, statements: list[str]) -> None:
    """A kept window's check reads nothing on SQLite (one daemon); on PostgreSQL it asks
    the shared store, in one statement, what other daemons wrote since (and reads no
    bucket of its own)."""
    if warden.store.is_sqlite:
        assert statements == []
        return
    assert len(statements) == 1, statements
    [listing] = statements
    assert "profile_buckets.seq" in listing and "ingest_journal" in listing, listing
    assert "profile_buckets.profile" not in listing, listing


@contextlib.asynccontextmanager
async def kept_window(make_config, reference):
    """A daemon (its clock moved by hand) keeping a 3-bucket window of one closed bucket."""
    now = [START]
    config = make_config(settings(reference), **{"monitoring.window_hours": 3 * BUCKET / 3600})
    async with Warden(config, clock=lambda: now[0]) as warden:
        ingest = warden.ingest
        ledger, state = ingest.ledger, ingest.model_state("m")
        await state.ready.wait()
        await send(ingest, 0, 40)
        now[0] = START + BUCKET
        await ledger.flush()
        await ledger.window(state, now[0] - 3 * BUCKET, now[0])  # the first check builds it
        yield warden, ingest, state, now


async def test_housekeeping_moves_the_window_so_the_check_reads_nothing(make_config, reference):
    async with kept_window(make_config, reference) as (warden, ingest, state, now):
        ledger = ingest.ledger
        for minute in range(1, 7):  # a bucket closes, and from minute 3 on one expires
            await send(ingest, minute, 40)
            now[0] = START + (minute + 1) * BUCKET
            await ledger.flush()
            assert await ledger.move_windows() == 1
            kept = state.windows[None]
            since = now[0] - 3 * BUCKET
            assert kept.first == since and kept.generation == state.generation
            assert len(kept.buckets) == min(minute + 1, 3)
            with statements_run(warden) as statements:
                window = await ledger.window(state, since, now[0])
            # Moved by the housekeeping: the check reads no bucket.
            assert_reads_only_the_listing(warden, statements)
            assert state.windows[None] is kept
            assert_same(window, await stored_window(warden, since, now[0]))
        # Nothing closed and nothing expired: moving again is a no-op.
        assert await ledger.move_windows() == 0 and state.windows[None] is kept


async def test_a_window_that_cannot_be_moved_is_dropped_and_reported(make_config, reference):
    async with kept_window(make_config, reference) as (warden, ingest, state, now):
        ledger = ingest.ledger
        await send(ingest, 1, 40)
        now[0] += BUCKET
        await ledger.flush()
        async with warden.store.begin() as conn:  # the bucket just written is unreadable
            await conn.execute(
                profile_table.update()
                .where(profile_table.c.bucket_start == START + BUCKET)
                .values(profile=b"not a profile")
            )
        assert await ledger.move_windows() == 0  # the housekeeping goes on
        assert None not in state.windows
        assert any(e["where"] == "window m" for e in warden.last_errors)
        with pytest.raises(zipfile.BadZipFile):  # the check reads it anew and fails itself
            await ledger.window(state, now[0] - 3 * BUCKET, now[0])


async def test_a_clock_stepped_back_merges_the_window_apart_once(make_config, reference):

    async with kept_window(make_config, reference) as (warden, ingest, state, now):
        ledger = ingest.ledger
        now[0] = START + 4 * BUCKET
        for minute in (1, 2, 3):
            await send(ingest, minute, 40)
        await ledger.flush()
        now[0] = START + 3 * BUCKET  # the clock steps back: bucket 3 is past the window's end
        expected = await stored_window(warden, START, now[0])
        window = await ledger.window(state, START, now[0])
        assert window.rows == 120 and state.windows[None].beyond(now[0])
        assert_same(window, expected)
        with statements_run(warden) as statements:
            again = await ledger.window(state, START, now[0])
        assert_reads_only_the_listing(warden, statements)  # merged apart once, not each check
        assert_same(again, expected)
        # An open bucket merged into one check's result leaves the next one's alone.
        late = [
            {"id": f"late-{i}", "ts": START + 2 * BUCKET + i, "features": {"x": 0.5, "kind": "a"},
             "prediction": 1.0}
            for i in range(10)
        ]  # fmt: skip
        await ingest.record_predictions("m", {"records": late})
        assert (await ledger.window(state, START, now[0])).rows == 130
        assert (await ledger.window(state, START, now[0])).rows == 130
        now[0] = START + 4 * BUCKET + 1  # the clock catches up: the kept window again
        assert (await ledger.window(state, START + BUCKET, now[0])).rows == 130
