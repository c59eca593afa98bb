"""One truth for which version serves: registry status, champion alias (in the real MLflow
store), traffic table and rollout state agree after every path, across a restart."""

from __future__ import annotations

import asyncio

import pytest

from mlwarden.daemon.warden import Warden
from tests.daemon.rollouts.helpers import MODEL_CONFIG, Clock, register_models, send_traffic

CONFIG = MODEL_CONFIG.replace(
    "[deployment.strategies.shadow]",
    "[deployment.strategies.rolling]\nreplicas = 2\n"
    "interval_seconds = 60\nmin_samples = 30\nmax_latency_ratio = 100\n"
    "latency_slack_seconds = 5\n[deployment.strategies.shadow]",
)


async def agree(warden: Warden, production: str, table: dict, rollout_state: str | None):
    """Check all four; ``rollout_state`` is the latest rollout's (None: no rollout yet)."""
    registry, rollouts = warden.registry, warden.rollouts
    records = {r["version"]: r for r in await registry.versions("price")}
    assert [v for v, r in records.items() if r["status"] == "production"] == [production]
    summary = await registry.model("price")
    assert summary["aliases"].get("champion") == production, summary["aliases"]
    champion = await asyncio.to_thread(
        warden.tracking.client.get_model_version_by_alias, "price", "champion"
    )
    assert int(champion.version) == records[production]["mlflow_version"]
    assert rollouts.traffic_tables.get("price") == pytest.approx(table)
    deployment = await rollouts.deployment("price")
    assert deployment["traffic"] == pytest.approx(table)
    latest = deployment["rollout"]
    assert (latest["state"] if latest else None) == rollout_state
    active = rollouts.active.get("price")
    assert (active is not None) == (rollout_state in ("pending", "progressing", "paused"))
    if hasattr(rollouts, "serving"):
        assert await rollouts.serving.pending("price") == []


async def test_every_path_leaves_the_four_in_agreement(make_config, make_client):
    clock = Clock()
    config = make_config(CONFIG)
    async with Warden(config, clock=clock) as warden:
        stable, good, bad = await register_models(warden)  # stable in production
        client = await make_client(warden)
        rollouts = warden.rollouts
        # The helper moved production by hand in the registry; the table follows it.
        for _ in range(200):
            if rollouts.traffic_tables.get("price") == {stable: 1.0}:
                break
            await asyncio.sleep(0.02)
        async with rollouts.controller.locks["price"]:  # the follower has finished
            pass
        await agree(warden, stable, {stable: 1.0}, None)

        # blue_green switches: the candidate takes the traffic, production stays.
        resp = await client.post(
            "/api/models/price/promote", json={"version": good, "strategy": "blue_green"}
        )
        rollout = await resp.json()
        assert resp.status == 200 and rollout["state"] == "progressing", rollout
        await agree(warden, stable, {good: 1.0}, "progressing")
        # A direct promote of the candidate under it is refused, naming the rollout.
        for body in ({"version": good}, {"version": good, "strategy": "direct"}):
            resp = await client.post("/api/models/price/promote", json=body)
            answer = await resp.json()
            assert resp.status == 409 and rollout["id"] in answer["error"]["message"], answer
        resp = await client.post(
            f"/api/models/price/versions/{good}/status", json={"status": "production"}
        )
        assert resp.status == 409 and rollout["id"] in (await resp.json())["error"]["message"]
        await agree(warden, stable, {good: 1.0}, "progressing")
        # Manual rollback: back to the stable version everywhere.
        resp = await client.post("/api/models/price/rollback", json={})
        assert resp.status == 200 and (await resp.json())["state"] == "rolled_back"
        await agree(warden, stable, {stable: 1.0}, "rolled_back")
        assert (await warden.registry.get("price", good))["status"] == "staging"

        # blue_green to the end: the candidate is promoted.
        clock.advance(100)
        await send_traffic(client, 300, "before", seed=2)  # the baseline's window
        clock.advance(30)
        await rollouts.start_rollout("price", good, strategy="blue_green", actor="t")
        clock.advance(1)
        await send_traffic(client, 300, "bg", seed=1)
        clock.advance(61)
        await rollouts.tick()
        await agree(warden, good, {good: 1.0}, "promoted")
        assert (await warden.registry.get("price", stable))["status"] == "deprecated"
        # Rollback with no rollout: the previous production version, at once.
        resp = await client.post("/api/models/price/rollback", json={})
        assert resp.status == 200, await resp.text()
        await agree(warden, stable, {stable: 1.0}, "promoted")

        # canary: steps then promotion.
        await rollouts.start_rollout("price", good, strategy="canary", actor="t")
        await agree(warden, stable, {stable: 0.9, good: 0.1}, "progressing")
        for i in range(3):
            clock.advance(1)
            await send_traffic(client, 600, f"c{i}", seed=10 + i)
            clock.advance(61)
            await rollouts.tick()
            if "price" not in rollouts.active:
                break
        await agree(warden, good, {good: 1.0}, "promoted")

        # Direct promote (no strategy) back to the stable version.
        resp = await client.post(
            "/api/models/price/promote", json={"version": stable, "strategy": "direct"}
        )
        assert resp.status == 200, await resp.text()
        await agree(warden, stable, {stable: 1.0}, "promoted")

        # Automatic rollback of a bad candidate: it fails, the stable one stays.
        await rollouts.start_rollout("price", bad, strategy="canary", actor="t")
        clock.advance(1)
        await send_traffic(client, 600, "bad", seed=20)
        clock.advance(61)
        await rollouts.tick()
        await agree(warden, stable, {stable: 1.0}, "rolled_back")
        assert (await warden.registry.get("price", bad))["status"] == "failed"

        # rolling: two replicas, the second batch is the promotion.
        await rollouts.start_rollout("price", good, strategy="rolling", actor="t")
        await agree(warden, stable, {stable: 0.5, good: 0.5}, "progressing")
        clock.advance(1)
        await send_traffic(client, 400, "r", seed=30)
        clock.advance(61)
        await rollouts.tick()
        await agree(warden, good, {good: 1.0}, "promoted")

        # shadow: mirrored only, then promoted.
        await rollouts.start_rollout("price", stable, strategy="shadow", actor="t")
        await agree(warden, good, {good: 1.0}, "progressing")
        clock.advance(1)
        await send_traffic(client, 300, "s", seed=40)
        await rollouts.gateway.drain()
        clock.advance(61)
        await rollouts.tick()
        await agree(warden, stable, {stable: 1.0}, "promoted")

        # A restart in the middle of a change: the registry moved, then the daemon
        # stopped before the table and the rollout were written.
        clock.advance(100)
        await send_traffic(client, 300, "x-before", seed=51)
        clock.advance(30)
        await rollouts.start_rollout("price", good, strategy="blue_green", actor="t")
        clock.advance(1)
        await send_traffic(client, 300, "x", seed=50)
        clock.advance(61)

        class Crash(Exception):
            pass

        async def crash(*args, **kwargs):
            raise Crash("stopped mid-change")

        rollouts.serving._commit = crash
        with pytest.raises(Crash):
            await rollouts.controller.advance(rollouts.active["price"])
        assert len(await rollouts.serving.pending("price")) == 1
        assert (await warden.registry.production("price"))["version"] == good
        assert rollouts.traffic_tables.get("price") == {good: 1.0}
        await client.close()
    async with Warden(config, clock=clock) as again:
        await agree(again, good, {good: 1.0}, "promoted")
        # And a restart with nothing pending changes nothing.
    async with Warden(config, clock=clock) as again:
        await agree(again, good, {good: 1.0}, "promoted")


async def test_unknown_model_deployment_is_404(make_warden, make_client):
    warden = await make_warden(CONFIG)
    client = await make_client(warden)
    resp = await client.get("/api/models/nosuch/deployment")
    assert resp.status == 404 and "nosuch" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/models/price/deployment")  # configured, nothing yet
    assert resp.status == 200 and (await resp.json())["traffic"] == {}


async def test_deployment_never_shows_a_finished_rollout_with_the_old_table(
    make_config, make_client
):
    """Read while the last canary step promotes: the state and the table are read as one
    serving change left them (the state used to be written before the table)."""
    clock = Clock()
    async with Warden(make_config(CONFIG), clock=clock) as warden:
        stable, good, _bad = await register_models(warden)
        client = await make_client(warden)
        rollouts = warden.rollouts
        await rollouts.start_rollout("price", good, strategy="canary", actor="t")
        seen: list[tuple[str, dict]] = []
        for i in range(2):
            clock.advance(1)
            await send_traffic(client, 600, f"d{i}", seed=60 + i)
            clock.advance(61)
            stop = asyncio.Event()

            async def poll(stop: asyncio.Event = stop) -> None:
                while not stop.is_set():
                    d = await rollouts.deployment("price")
                    seen.append((d["rollout"]["state"], d["traffic"]))
                    await asyncio.sleep(0)

            poller = asyncio.create_task(poll())
            await asyncio.sleep(0)
            await rollouts.tick()
            await asyncio.sleep(0.05)
            stop.set()
            await poller
        assert ("promoted", {good: 1.0}) in seen
        wrong = [(s, t) for s, t in seen if s == "promoted" and t != {good: 1.0}]
        assert wrong == [], wrong[:3]
        assert stable not in rollouts.traffic_tables.get("price")
