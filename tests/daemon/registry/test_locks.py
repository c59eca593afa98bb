"""The per-model lock: every daemon on one PostgreSQL store, re-entrant per task."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.store import Store
from mlwarden.daemon.registry.locks import ModelLocks, lock_key


@pytest.fixture
async def stores(store_url):
    """Two Stores on one database: two daemons' views of it."""
    opened = [Store(store_url), Store(store_url)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def _enter(lock) -> tuple[asyncio.Task, asyncio.Event]:
    """Start entering ``lock`` in a task; (the task, set once it got in)."""
    entered = asyncio.Event()

    async def enter():
        async with lock:
            entered.set()

    return asyncio.create_task(enter()), entered


async def _held_by(locks: ModelLocks, model: str) -> tuple[asyncio.Task, asyncio.Event]:
    """A task holding ``model``'s lock until the returned event is set."""
    release = asyncio.Event()

    async def hold():
        async with locks.hold(model):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.2)
    return holder, release


async def _waits_until_released(lock, holder: asyncio.Task, release: asyncio.Event) -> None:
    """Entering ``lock`` waits while ``holder`` holds it, and gets in once released."""
    task, entered = _enter(lock)
    await asyncio.sleep(0.5)
    assert not entered.is_set()
    release.set()
    await asyncio.wait_for(asyncio.gather(task, holder), 10)
    assert entered.is_set()


async def test_one_holder_per_model_within_a_daemon_and_reentrant_per_task(stores):
    locks = ModelLocks(stores[0])
    release = asyncio.Event()

    async def hold():
        async with locks.hold("m"), locks.hold("m"):  # re-entrant: no deadlock
            assert locks.held("m")
            # A task it spawns is another task: it waits like any other.
            child, child_in = _enter(locks.hold("m"))
            await release.wait()
        await child
        assert child_in.is_set()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.2)
    assert not locks.held("m")  # held by the other task, not this one
    async with locks.hold("other"):  # other models are free
        pass
    await _waits_until_released(locks.hold("m"), holder, release)


async def test_two_daemons_exclude_each_other_on_postgresql(stores):
    if stores[0].is_sqlite:
        pytest.skip("one daemon per SQLite base path: the daemon's own lock is the lock")
    a, b = ModelLocks(stores[0]), ModelLocks(stores[1])
    holder, release = await _held_by(a, "m")
    await _waits_until_released(b.hold("m"), holder, release)  # the other daemon waits


async def test_a_waiter_cancelled_leaves_no_lock_behind(stores):
    if stores[0].is_sqlite:
        pytest.skip("PostgreSQL advisory locks only")
    a, b = ModelLocks(stores[0]), ModelLocks(stores[1])

    async def wait_for_it():
        async with b.hold("m"):
            raise AssertionError("the cancelled waiter got the lock")

    holder, release = await _held_by(a, "m")
    waiter = asyncio.create_task(wait_for_it())
    await asyncio.sleep(0.3)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    # Nobody holds it now: both daemons get it at once, and PostgreSQL lists no lock.
    for locks in (a, b):
        async with asyncio.timeout(5):
            async with locks.hold("m"):
                pass
    key = lock_key("m")
    async with stores[0].connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :key"
            ),
            {"key": key & 0xFFFFFFFFFFFFFFFF},
        )
        assert rows.scalar() == 0


async def test_many_models_locked_at_once_leave_the_pool_to_the_work(postgres_url):
    """Holding a model's lock takes no pooled connection: twelve models held at once,
    each doing its work in a transaction, on a pool of two connections and no overflow.
    (Each lock on a pooled connection of its own would take the pool and wait for it.)"""
    from mlwarden.daemon.core.config import StoreConfig

    settings = StoreConfig(pool_size=2, max_overflow=0, pool_timeout_seconds=3.0)
    stores = [Store(postgres_url, settings), Store(postgres_url, settings)]
    for store in stores:
        await store.open()
    try:
        a, b = ModelLocks(stores[0]), ModelLocks(stores[1])
        models = [f"model-{i}" for i in range(12)]
        everyone_in = asyncio.Barrier(len(models))
        order: list[str] = []

        async def change(locks: ModelLocks, model: str) -> None:
            async with locks.hold(model):
                await everyone_in.wait()  # all twelve locks are held at this point
                async with locks.store.begin() as conn:
                    await conn.execute(sa.text("SELECT pg_sleep(0.05)"))
                order.append(model)

        async with asyncio.timeout(30):
            await asyncio.gather(*(change(a if i % 2 else b, m) for i, m in enumerate(models)))
        assert sorted(order) == sorted(models)
        # Across the two daemons the locks still exclude each other on that session.
        holder, release = await _held_by(a, "model-0")
        await _waits_until_released(b.hold("model-0"), holder, release)
        sessions = await _sessions(stores[0])
        assert sessions <= 2 * settings.pool_size + 2  # two pools and two lock sessions
    finally:
        for store in stores:
            await store.close()


async def _sessions(store: Store) -> int:
    async with store.connect() as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        return int((await conn.execute(sa.text(query))).scalar())
