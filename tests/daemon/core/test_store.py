"""The store on both backends: migrations applied once under concurrency, upserts, and
one daemon per SQLite store (the lock beside the database)."""

from __future__ import annotations

import asyncio
import os

import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.config import StoreConfig
from mlwarden.daemon.core.store import Schema, Store, create_tables, insert_ignore, upsert
from mlwarden.daemon.warden import Warden
from mlwarden.errors import ConfigError
from tests.daemon.core.test_audit import verify

_meta = sa.MetaData()
#: A key-value table for the upsert test, and one row per migration step run (no key:
#: a step applied twice would show as two rows).
_things = sa.Table(
    "things", _meta, sa.Column("k", sa.Text, primary_key=True), sa.Column("v", sa.Integer)
)
_step_runs = sa.Table("step_runs", _meta, sa.Column("step", sa.Integer, nullable=False))


def _counting_step(number: int):
    def step(conn: sa.Connection) -> None:
        conn.execute(_step_runs.insert().values(step=number))
        # Widen the window in which a second migrator could slip in.
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_sleep(0.05)"))

    step.__doc__ = f"count step {number}"
    return step


SCHEMA = Schema(
    "counting",
    [create_tables(_step_runs, _things), *(_counting_step(n) for n in (2, 3, 4))],
)


async def test_concurrent_migrations_apply_each_step_once(store_url):
    stores = [Store(store_url) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open([SCHEMA]) for s in stores))
        async with stores[0].connect() as conn:
            runs = (await conn.execute(sa.select(_step_runs.c.step))).scalars().all()
        assert sorted(runs) == [2, 3, 4]
        assert [await s.schema_versions() for s in stores] == [{"counting": 4}] * len(stores)
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    # A later start finds everything current and runs nothing.
    again = Store(store_url)
    await again.open([SCHEMA])
    async with again.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(_step_runs))
        ).scalar() == 3
    await again.close()


async def test_upsert_and_insert_ignore_are_atomic_under_concurrency(store_url):
    stores = [Store(store_url) for _ in range(3)]
    await asyncio.gather(*(s.open([SCHEMA]) for s in stores))
    try:

        async def write(store: Store, n: int) -> int:
            async with store.begin() as conn:
                await conn.execute(upsert(conn.dialect, _things), [{"k": "a", "v": n}])
                result = await conn.execute(
                    insert_ignore(conn.dialect, _things), [{"k": "b", "v": n}]
                )
                return result.rowcount

        claimed = await asyncio.gather(*(write(stores[n % 3], n) for n in range(12)))
        assert sum(claimed) == 1  # "b" inserted once, every other insert skipped
        async with stores[0].connect() as conn:
            rows = dict((await conn.execute(sa.select(_things.c.k, _things.c.v))).all())
        assert set(rows) == {"a", "b"} and rows["a"] in range(12)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_postgresql_engine_takes_the_pool_and_timeouts(postgres_url):
    settings = StoreConfig(
        pool_size=3,
        max_overflow=1,
        pool_timeout_seconds=5,
        statement_timeout_seconds=1.5,
        application_name="mlwarden-test",
    )
    store = Store(postgres_url, settings)
    await store.open()
    try:
        assert store.engine is not None
        pool = store.engine.sync_engine.pool
        assert (pool.size(), pool._max_overflow, pool._timeout) == (3, 1, 5)  # type: ignore[attr-defined]
        async with store.connect() as conn:
            show = (await conn.execute(sa.text("SHOW statement_timeout"))).scalar()
            name = (await conn.execute(sa.text("SHOW application_name"))).scalar()
            assert (show, name) == ("1500ms", "mlwarden-test")
            with pytest.raises(sa.exc.DBAPIError, match="statement timeout"):
                await conn.execute(sa.text("SELECT pg_sleep(3)"))
    finally:
        await store.close()


async def test_an_unreachable_postgresql_fails_within_the_connect_timeout():
    from tests.helpers import free_port

    store = Store(
        f"postgresql+asyncpg://u:secret@127.0.0.1:{free_port()}/nowhere",
        StoreConfig(connect_timeout_seconds=2),
    )
    with pytest.raises(ConfigError) as refused:
        await asyncio.wait_for(store.open(), 10)
    message = str(refused.value)
    assert message.startswith("cannot connect to the store postgresql+asyncpg://u:***@127.0.0.1")
    assert "secret" not in message and "ConnectionRefusedError" in message
    assert store.engine is None  # closed again: nothing left open


async def test_a_wrong_password_is_named_without_showing_it(postgres_url):
    user, _, rest = postgres_url.removeprefix("postgresql+asyncpg://").partition("@")
    if ":" in user:
        user = user.split(":", 1)[0]
    store = Store(f"postgresql+asyncpg://nobody-{user}:wrong-pw-123@{rest}")
    with pytest.raises(ConfigError) as refused:
        await store.open()
    message = str(refused.value)
    assert "wrong-pw-123" not in message and f"nobody-{user}:***@" in message


# -- one daemon per SQLite store ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's own lock
async def test_a_second_warden_on_one_sqlite_store_is_refused(make_config, base_path):
    config = make_config()
    async with Warden(config) as first:
        second = Warden(config)
        with pytest.raises(ConfigError) as refused:
            await second.start()
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message
        assert str(base_path / "mlwarden.db") in message and "PostgreSQL" in message
        # The refused one touched nothing: the first still works.
        await first.audit.record(actor="t", action="still-here")
        # The CLI's read-only commands open the store beside the daemon.
        beside = verify(base_path)
        assert beside.returncode == 0, beside.stderr
    # Released at stop: the next daemon starts.
    async with Warden(config) as third:
        assert third.daemon_lock is not None and third.daemon_lock.held


async def test_wardens_on_postgresql_take_no_file_lock(make_config, postgres_url):
    config = make_config(**{"store.url": postgres_url})
    async with Warden(config) as first, Warden(config) as second:
        assert first.daemon_lock is None and second.daemon_lock is None


def test_a_second_daemon_process_is_refused_and_a_killed_one_leaves_no_lock(
    daemon_factory, tmp_path
):
    first = daemon_factory(name="state").start()
    second = daemon_factory(name="state")  # the same base path
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(60) == 2
    log = second.log()
    assert "another mlwarden daemon" in log and f"pid {first.proc.pid}" in log
    assert str(first.base_path / "mlwarden.db") in log
    assert first.call("GET", "/healthz")[0] == 200
    first.kill()  # kill -9: the kernel drops the lock with the process
    again = daemon_factory(name="state").start()
    assert again.call("GET", "/healthz")[0] == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_failed_start_stops_what_started_and_releases_the_store(make_config, monkeypatch):
    config = make_config()
    warden = Warden(config)
    started = list(warden.services.values())
    assert len(started) > 2

    async def broken() -> None:
        raise RuntimeError("the last service could not start")

    monkeypatch.setattr(started[-1], "start", broken)
    with pytest.raises(RuntimeError, match="could not start"):
        await warden.start()
    # The services before it were stopped, their tasks and the heartbeat cancelled,
    # the cluster left, the store closed and its lock released.
    assert warden._started == [] and warden._tasks == set()
    assert warden.store.engine is None and warden.cluster.started_at is None
    assert warden.daemon_lock is not None and not warden.daemon_lock.held
    async with Warden(config) as again:
        assert again.daemon_lock is not None and again.daemon_lock.held


# SQLite: a connection invalidated there may stay open with its lock. On PostgreSQL the
# pool's pre-ping runs before a checkout is recorded (Store.busy), and a connection cut
# there is ended by the server.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_stop_cancels_no_task_in_the_middle_of_a_statement(make_config):
    warden = Warden(make_config())
    await warden.start()
    invalidated: list[BaseException | None] = []
    sa.event.listen(
        warden.store.engine.sync_engine, "invalidate", lambda _c, _r, exc: invalidated.append(exc)
    )
    started = asyncio.Event()

    async def busy_writer() -> None:
        # Always in a transaction but for the moment between two.
        while True:
            async with warden.store.begin() as conn:
                await conn.execute(sa.text("UPDATE cluster_members SET heartbeat_at = 0"))
                started.set()
                await conn.execute(sa.text("SELECT count(*) FROM audit_log"))

    warden.spawn(busy_writer(), name="busy-writer")
    await started.wait()
    await warden.stop()
    # Cancelled mid-statement, SQLAlchemy invalidates the connection (CancelledError);
    # the stop waits for the moment between two transactions instead.
    assert invalidated == []
