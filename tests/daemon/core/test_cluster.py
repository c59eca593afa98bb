"""Cluster membership and leases on a real store: fencing, fair share, takeover."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.cluster import CLUSTER_SCHEMA, Cluster
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.leases import LeaseLost, fair_share, fence, holding
from mlwarden.daemon.core.metrics import Metrics
from mlwarden.daemon.core.store import Schema, Store, create_tables

#: Stands in for the table a piece of leased work writes (a drift report, a step).
steps = sa.Table(
    "leased_steps",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("step", sa.String(50), nullable=False),
)


def member(name: str, ttl: float = 0.6, heartbeat: float = 0.2):
    config = load_config(
        None,
        env={},
        overrides={
            "cluster.instance": name,
            "cluster.lease_ttl_seconds": ttl,
            "cluster.heartbeat_seconds": heartbeat,
        },
    )
    return lambda: config


@pytest.fixture
async def store(store_url):
    store = Store(store_url)
    await store.open([CLUSTER_SCHEMA, Schema("steps", [create_tables(steps)])])
    yield store
    await store.close()


async def written(store: Store) -> list[str]:
    async with store.connect() as conn:
        return list((await conn.execute(sa.select(steps.c.step).order_by(steps.c.id))).scalars())


async def write_step(store: Store, step: str) -> None:
    """A write of leased work: fenced by the current lease, in its own transaction."""
    async with store.begin() as conn:
        await fence(conn)
        await conn.execute(steps.insert(), {"step": step})


async def test_a_paused_owner_cannot_write_after_a_takeover(store):
    a = Cluster(store, member("a"), Metrics())
    await a.join()
    lease_a = await a.singleton("rollout", "m")
    assert lease_a is not None and lease_a.owner == "a"
    with holding(lease_a):
        await write_step(store, "step 1 by a")
    # A pauses: no heartbeat, its lease lapses; B joins and takes the work over.
    await asyncio.sleep(0.7)
    b = Cluster(store, member("b"), Metrics())
    await b.join()
    lease_b = await b.singleton("rollout", "m")
    assert lease_b is not None and lease_b.owner == "b"
    assert lease_b.token == lease_a.token + 1
    # A wakes up and applies its next step with the old token: refused, nothing written.
    with holding(lease_a), pytest.raises(LeaseLost, match="now held by 'b'"):
        await write_step(store, "step 2 by a")
    with holding(lease_b):
        await write_step(store, "step 2 by b")
    assert await written(store) == ["step 1 by a", "step 2 by b"]
    # Outside leased work (an API call) nothing is fenced.
    await write_step(store, "on demand")
    assert (await written(store))[-1] == "on demand"


async def test_a_live_owner_keeps_its_lease_and_renews_it(store):
    a = Cluster(store, member("a"), Metrics())
    await a.join()
    first = await a.singleton("alerts")
    for _ in range(4):  # longer than the TTL, renewed by the heartbeat
        await asyncio.sleep(0.2)
        await a.heartbeat()
    again = await a.singleton("alerts")
    assert first is not None and again == first  # same owner, same token
    assert a.metrics.leases_held.labels("alerts")._value.get() == 1


async def test_a_released_lease_is_taken_with_a_new_token(store):
    a = Cluster(store, member("a"), Metrics())
    await a.join()
    first = await a.singleton("jobs")
    await a.release("jobs", [""])
    second = await a.singleton("jobs")
    assert first is not None and second is not None
    assert second.token == first.token + 1
    with holding(first), pytest.raises(LeaseLost):
        await write_step(store, "stale")


async def test_restart_under_the_same_name_bumps_the_tokens(store):
    a = Cluster(store, member("a"), Metrics())
    await a.join()
    before = await a.singleton("scheduler")
    again = Cluster(store, member("a"), Metrics())  # the same name after a kill -9
    await again.join()
    after = await again.singleton("scheduler")
    assert before is not None and after is not None and after.token == before.token + 1


def test_fair_share():
    assert fair_share(5, 2) == 3
    assert fair_share(4, 2) == 2
    assert fair_share(3, 3) == 1
    assert fair_share(3, 0) == 3
    assert fair_share(0, 2) == 0


async def test_work_spreads_and_moves_when_a_member_dies(postgres_url):
    store = Store(postgres_url)
    await store.open([CLUSTER_SCHEMA])
    try:
        models = ["m1", "m2", "m3", "m4"]
        a = Cluster(store, member("a"), Metrics())
        await a.join()
        assert set(await a.share("drift", models)) == set(models)  # alone: all of them
        b = Cluster(store, member("b"), Metrics())
        await b.join()
        # A sees two members: keeps its share, lets go of the rest; B takes those.
        mine_a = await a.share("drift", models)
        mine_b = await b.share("drift", models)
        assert len(mine_a) == 2 and len(mine_b) == 2
        assert set(mine_a) | set(mine_b) == set(models)
        view = await a.view()
        assert {m["instance"] for m in view["members"]} == {"a", "b"}
        assert {(x["key"], x["owner"]) for x in view["leases"]} == {
            *((k, "a") for k in mine_a),
            *((k, "b") for k in mine_b),
        }
        assert a.metrics.leases_held.labels("drift")._value.get() == 2
        # B dies (no heartbeat): after the TTL A counts one member and takes them all,
        # each of B's leases with a larger token.
        await asyncio.sleep(0.3)
        await a.heartbeat()
        assert set(await a.share("drift", models)) == set(mine_a)  # B still alive
        await asyncio.sleep(0.4)
        taken = await a.share("drift", models)
        assert set(taken) == set(models)
        for key in mine_b:
            assert taken[key].token == mine_b[key].token + 1
        # B comes back: it rejoins and gets its share again as A lets go.
        await b.join()
        await a.heartbeat()
        assert len(await a.share("drift", models)) == 2
        assert len(await b.share("drift", models)) == 2
        await b.leave()
        assert {m["instance"] for m in (await a.view())["members"]} == {"a"}
    finally:
        await store.close()


async def test_a_takeover_waits_for_a_write_in_flight(postgres_url):
    """The old owner's write that locked the lease row commits before the new owner's
    token exists; the new owner's takeover waits for it instead of racing it."""
    store = Store(postgres_url)
    await store.open([CLUSTER_SCHEMA, Schema("steps", [create_tables(steps)])])
    try:
        a = Cluster(store, member("a"), Metrics())
        b = Cluster(store, member("b"), Metrics())
        await a.join()
        await b.join()
        lease = await a.singleton("rollout", "m")
        assert lease is not None
        await asyncio.sleep(0.7)  # A's lease lapses while ...
        async with store.begin() as conn:  # ... its write is under way
            await lease.check(conn)
            # B's take skips the locked row (SKIP LOCKED): it does not get the lease now.
            assert await b.singleton("rollout", "m") is None
            await conn.execute(steps.insert(), {"step": "a's last"})
        taken = await b.singleton("rollout", "m")
        assert taken is not None and taken.token == lease.token + 1
        assert await written(store) == ["a's last"]
    finally:
        await store.close()


async def test_the_heartbeat_loop_renews(store):
    a = Cluster(store, member("a", ttl=0.6, heartbeat=0.1), Metrics())
    await a.join()
    lease = await a.singleton("outbox")
    task = asyncio.create_task(a.run())
    try:
        await asyncio.sleep(1.0)
        b = Cluster(store, member("b"), Metrics())
        if not store.is_sqlite:  # SQLite: one daemon, a second join takes everything
            await b.join()
            assert await b.singleton("outbox") is None
        with holding(lease):
            await write_step(store, "still a's")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert a.metrics.cluster_members._value.get() >= 1


def test_model_gauges_are_exported_by_the_models_owner_only():
    metrics = Metrics()
    for model in ("mine", "theirs"):
        metrics.drift_score.labels(model).set(0.5)
        metrics.model_info.labels(model, "1.0.0", "production").set(1)
    metrics.predictions.labels("theirs").inc()  # per daemon: always exported
    sample = metrics.registry.get_sample_value
    assert sample("mlwarden_drift_score", {"model": "theirs"}) == 0.5  # no cluster: all
    metrics.owns_model = lambda model: model == "mine"
    assert sample("mlwarden_drift_score", {"model": "mine"}) == 0.5
    assert sample("mlwarden_drift_score", {"model": "theirs"}) is None
    labels = {"model": "theirs", "version": "1.0.0", "status": "production"}
    assert sample("mlwarden_model_info", labels) is None
    assert sample("mlwarden_predictions_total", {"model": "theirs"}) == 1


async def test_the_config_refuses_a_ttl_shorter_than_the_heartbeat(tmp_path):
    from mlwarden.errors import ConfigError

    path = tmp_path / "c.toml"
    path.write_text("[cluster]\nlease_ttl_seconds = 2\nheartbeat_seconds = 5\n")
    with pytest.raises(ConfigError, match=r"cluster\.lease_ttl_seconds"):
        load_config(path, env={})


async def test_a_write_in_flight_never_costs_its_own_daemon_the_lease(postgres_url):
    """The loop that renews its share while another of the daemon's writes holds a lease
    row (FOR SHARE) waits for that write; it must not skip the row and let it go."""
    store = Store(postgres_url)
    await store.open([CLUSTER_SCHEMA, Schema("steps", [create_tables(steps)])])
    try:
        a = Cluster(store, member("a", ttl=5.0, heartbeat=1.0), Metrics())
        await a.join()
        first = await a.share("model", ["m1", "m2"])
        single = await a.singleton("training-jobs")
        async with store.begin() as conn:
            await first["m1"].check(conn)
            assert single is not None
            await single.check(conn)
            renewing = asyncio.ensure_future(a.share("model", ["m1", "m2"]))
            again = asyncio.ensure_future(a.singleton("training-jobs"))
            beat = asyncio.ensure_future(a.heartbeat())
            await asyncio.sleep(0.3)
            assert not renewing.done()  # it waits for the write, it does not skip it
            await conn.execute(steps.insert(), {"step": "in flight"})
        assert await renewing == first
        assert await again == single
        await beat
        assert set(a.held) == {("model", "m1"), ("model", "m2"), ("training-jobs", "")}
    finally:
        await store.close()


async def test_an_owner_that_cannot_renew_gives_its_leases_up_before_they_expire(store):
    """No heartbeat (the store out of reach, a stall): the daemon drops its leases
    after ttl - heartbeat; once expired, a lease is taken again with a new token, even
    by its former owner, and work begun under the old token can no longer write."""
    a = Cluster(store, member("a", ttl=0.6, heartbeat=0.2), Metrics())
    await a.join()
    await a.heartbeat()
    lease = await a.singleton("rollouts")
    assert lease is not None and a.held
    sample = a.metrics.registry.get_sample_value
    assert sample("mlwarden_leases_held", {"kind": "rollouts"}) == 1
    await asyncio.sleep(0.5)  # ttl - heartbeat = 0.4 s after the heartbeat began
    assert a.held == {}
    assert sample("mlwarden_leases_held", {"kind": "rollouts"}) == 0
    await asyncio.sleep(0.2)  # now expired in the store too, and nobody took it
    await a.heartbeat()  # renews nothing: an expired lease is not renewed
    assert a.held == {}
    again = await a.singleton("rollouts")
    assert again is not None and again.token == lease.token + 1
    with holding(lease), pytest.raises(LeaseLost):
        await write_step(store, "begun before the outage")
    with holding(again):
        await write_step(store, "after the outage")
    assert await written(store) == ["after the outage"]
    await a.leave()


async def test_a_stop_on_a_locked_sqlite_store_waits_for_wait_not_busy_timeout(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await store.open([CLUSTER_SCHEMA])
    try:
        a = Cluster(store, member("a"), Metrics())
        await a.join()
        held = asyncio.Event()
        release = asyncio.Event()

        async with store.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE locker (x INTEGER)"))

        async def hold_the_write_lock() -> None:
            async with store.begin() as conn:
                await conn.execute(sa.text("INSERT INTO locker VALUES (1)"))
                held.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_write_lock(), name="the-holder")
        await held.wait()
        assert store.holders().startswith("the-holder for ")
        began = asyncio.get_running_loop().time()
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            await a.leave(wait=0.3)
        # SQLite's busy_timeout is 30 s: the stop gave up after its own wait.
        assert asyncio.get_running_loop().time() - began < 15
        release.set()
        await holder
        assert store.holders() == "none"
        await a.leave(wait=0.3)
        async with store.connect() as conn:
            members = (await conn.execute(sa.text("SELECT count(*) FROM cluster_members"))).scalar()
            # Every pooled connection waits busy_timeout again.
            timeout = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert members == 0
        assert timeout == 30_000
    finally:
        await store.close()
