"""End to end: two real scikit-learn models in MLflow behind the gateway, driven by tick()."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mlwarden import hookimpl
from mlwarden.daemon.core.keys import new_key, write_key_file
from mlwarden.daemon.warden import Warden
from mlwarden.errors import Conflict, InvalidInput
from tests.daemon.rollouts.helpers import MODEL_CONFIG, Clock, register_models, send_traffic, shares
from tests.helpers import store_sql


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def rollout_warden(make_config, clock, request, tmp_path):
    text = MODEL_CONFIG
    if getattr(request, "param", None) == "encrypted":  # parametrized indirectly
        key_file = tmp_path / "keys"
        write_key_file(key_file, {"k1": new_key()})
        text += f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n'
    async with Warden(make_config(text), clock=clock) as warden:
        yield warden


@pytest.fixture
async def setup(rollout_warden, make_client):
    versions = await register_models(rollout_warden)
    client = await make_client(rollout_warden)
    return rollout_warden, client, versions


def _champion(warden: Warden) -> str:
    return warden.tracking.client.get_model_version_by_alias("price", "champion").version


async def test_good_candidate_walks_the_canary_steps_and_is_promoted(setup, clock):
    warden, client, (stable, good, _bad) = setup
    rollouts = warden.rollouts
    registry = warden.registry
    rollout = await rollouts.start_rollout("price", good, strategy="canary", actor="alice")
    assert (rollout["state"], rollout["step"], rollout["weight"]) == ("progressing", 0, 0.1)
    assert await rollouts.traffic("price") == {stable: 0.9, good: pytest.approx(0.1)}
    with pytest.raises(Conflict, match="already has an active rollout"):
        await rollouts.start_rollout("price", good, actor="alice")

    clock.advance(1)
    served = await send_traffic(client, 600, "a", seed=1)
    assert shares(served)[good] == pytest.approx(0.1, abs=0.05)
    clock.advance(60)
    [after] = await rollouts.tick()
    assert (after["state"], after["step"], after["weight"]) == ("progressing", 1, 0.5)

    clock.advance(1)
    served = await send_traffic(client, 400, "b", seed=2)
    assert shares(served)[good] == pytest.approx(0.5, abs=0.1)
    clock.advance(60)
    await rollouts.tick()

    resp = await client.get("/api/models/price/deployment")
    body = await resp.json()
    assert body["traffic"] == {good: 1.0}, body
    assert body["rollout"]["state"] == "promoted"
    analyses = body["rollout"]["analyses"]
    assert [a["verdict"] for a in analyses] == ["pass", "pass"]
    mse = next(c for c in analyses[0]["checks"] if c["metric"] == "mse")
    assert mse["candidate"] is not None and mse["threshold"] == pytest.approx(mse["baseline"] * 1.5)
    assert (await registry.production("price"))["version"] == good
    good_record = await registry.get("price", good)
    champion = await asyncio.to_thread(_champion, warden)
    assert str(champion) == str(good_record["mlflow_version"])  # the champion alias moved
    value = warden.metrics.rollouts.labels("price", "canary", "promoted")._value.get()
    assert value == 1
    assert warden.metrics.traffic_weight.labels("price", good)._value.get() == 1.0
    assert warden.metrics.traffic_weight.labels("price", stable)._value.get() == 0.0


async def test_bad_candidate_is_rolled_back_at_its_first_analysis(setup, clock):
    warden, client, (stable, _good, bad) = setup
    rollouts = warden.rollouts
    events = []

    class Listener:
        @hookimpl
        def mlwarden_event(self, event):
            events.append(event)

    warden.pm.register(Listener(), name="listener")
    await rollouts.start_rollout("price", bad, strategy="canary", actor="alice")
    clock.advance(1)
    await send_traffic(client, 600, "a", seed=3)
    clock.advance(60)
    [after] = await rollouts.tick()
    assert after["state"] == "rolled_back"
    assert await rollouts.traffic("price") == {stable: 1.0}
    [analysis] = (await rollouts.deployment("price"))["rollout"]["analyses"]
    assert analysis["verdict"] == "fail" and analysis["action"] == "rollback"
    mse = next(c for c in analysis["checks"] if c["metric"] == "mse")
    assert mse["passed"] is False and mse["candidate"] > mse["threshold"] > mse["baseline"]
    assert analysis["samples"]["candidate_outcomes"] >= 30
    assert (await warden.registry.get("price", bad))["status"] == "failed"
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["rollout_started", "rollout_step"] or "rollout_started" in kinds
    rolled = next(e for e in events if e.kind == "rollout_rolled_back")
    assert rolled.severity == "critical" and rolled.data["analysis"]["verdict"] == "fail"
    # A deployment failure raises an alert.
    firing = await warden.alerts.alerts(model="price")
    assert [a["rule"] for a in firing] == ["ModelRolloutFailed"], firing


async def test_blue_green_switches_and_switches_back(setup, clock):
    warden, client, (stable, _good, bad) = setup
    rollouts = warden.rollouts
    await send_traffic(client, 300, "before", seed=4)  # the baseline's window
    clock.advance(30)
    rollout = await rollouts.start_rollout("price", bad, strategy="blue_green", actor="alice")
    assert rollout["weight"] == 1.0
    assert await rollouts.traffic("price") == {bad: 1.0}  # switched
    clock.advance(1)
    served = await send_traffic(client, 300, "after", seed=5)
    assert shares(served) == {bad: 1.0}
    clock.advance(60)
    [after] = await rollouts.tick()
    assert after["state"] == "rolled_back" and after["reason"].startswith("switching back")
    assert await rollouts.traffic("price") == {stable: 1.0}  # switched back
    clock.advance(1)
    assert shares(await send_traffic(client, 50, "again", seed=6)) == {stable: 1.0}


async def test_a_restart_mid_canary_resumes_at_the_same_step(make_config, make_client, clock):
    config = make_config(MODEL_CONFIG)
    async with Warden(config, clock=clock) as warden:
        stable, good, _bad = await register_models(warden)
        client = await make_client(warden)
        rollouts = warden.rollouts
        await rollouts.start_rollout("price", good, strategy="canary", actor="alice")
        clock.advance(1)
        await send_traffic(client, 600, "a", seed=1)
        clock.advance(60)
        [before] = await rollouts.tick()
        assert before["step"] == 1
        await client.close()
    async with Warden(config, clock=clock) as warden:
        rollouts = warden.rollouts
        resumed = rollouts.active["price"]
        assert (resumed["id"], resumed["step"], resumed["weight"], resumed["state"]) == (
            before["id"],
            1,
            0.5,
            "progressing",
        )
        assert resumed["step_started_at"] == before["step_started_at"]
        assert rollouts.traffic_tables.get("price") == {stable: 0.5, good: 0.5}
        client = await make_client(warden)
        clock.advance(1)
        await send_traffic(client, 400, "b", seed=2)
        clock.advance(60)
        [after] = await rollouts.tick()
        assert after["state"] == "promoted"


async def test_confirm_promotion_hook_holds_then_allows(setup, clock):
    warden, client, (_stable, good, _bad) = setup
    rollouts = warden.rollouts
    answers = {"allow": False}

    class Gate:
        @hookimpl
        def mlwarden_confirm_promotion(self, model, version, rollout):
            return answers["allow"]

    warden.pm.register(Gate(), name="gate")
    await rollouts.start_rollout("price", good, strategy="shadow", actor="alice")
    clock.advance(1)
    await send_traffic(client, 300, "a", seed=7)
    await rollouts.gateway.drain()
    clock.advance(60)
    [held] = await rollouts.tick()
    assert held["state"] == "paused" and held["held"]["action"] == "promote"
    [still] = await rollouts.tick()
    assert still["state"] == "paused"
    answers["allow"] = True
    [after] = await rollouts.tick()
    assert after["state"] == "promoted"


async def test_shadow_mirrors_without_user_impact(setup, clock):
    warden, client, (stable, _good, bad) = setup
    rollouts = warden.rollouts
    await rollouts.start_rollout("price", bad, strategy="shadow", actor="alice")
    clock.advance(1)
    served = await send_traffic(client, 300, "a", seed=8)
    assert shares(served) == {stable: 1.0}  # users only see the baseline
    await rollouts.gateway.drain()
    clock.advance(60)
    [after] = await rollouts.tick()
    assert after["state"] == "rolled_back"
    [analysis] = (await rollouts.deployment("price"))["rollout"]["analyses"]
    mse = next(c for c in analysis["checks"] if c["metric"] == "mse")
    assert mse["passed"] is False and analysis["samples"]["candidate_outcomes"] == 300
    left = await rollouts.gateway.shadow_sample("price", bad, np.array(["a-0"]), 0, 1e12)
    assert left == {}  # the mirrored answers are dropped once the rollout ended


@pytest.mark.parametrize("rollout_warden", ["encrypted"], indirect=True)
async def test_shadow_ids_are_digested_at_rest_with_encryption_on(setup, clock):
    warden, client, (_stable, _good, bad) = setup
    rollouts = warden.rollouts
    await rollouts.start_rollout("price", bad, strategy="shadow", actor="alice")
    clock.advance(1)
    await send_traffic(client, 60, "customer", seed=9)
    await rollouts.gateway.drain()
    stored = await store_sql(warden.config.database_url, "SELECT id FROM shadow_predictions")
    assert len(stored) == 60 and not any("customer" in r["id"] for r in stored)
    # Found by the request ids as sent, as the analysis asks for them.
    sample = await rollouts.gateway.shadow_sample(
        "price", bad, np.array(["customer-0", "customer-7", "other"]), 0, 1e12
    )
    assert set(sample) == {"customer-0", "customer-7"}
    clock.advance(60)
    await rollouts.tick()
    [analysis] = (await rollouts.deployment("price"))["rollout"]["analyses"]
    assert analysis["samples"]["candidate_outcomes"] == 60


async def test_bad_input_is_refused_without_partial_state(setup):
    warden, client, (_stable, good, _bad) = setup
    rollouts = warden.rollouts
    with pytest.raises(InvalidInput, match="unknown strategy plugin 'nope'"):
        await rollouts.start_rollout("price", good, strategy="nope", actor="alice")
    assert rollouts.active == {}
    for path, body, status, needle in [
        ("/api/models/price/predict", {"records": []}, 400, "non-empty array"),
        ("/api/models/price/predict", {"records": [{"id": "1"}]}, 400, "records[0].features"),
        ("/api/models/price/predict", {"features": {"x1": 1}, "key": True}, 400, "body.key"),
        ("/api/models/ghost/predict", {"features": {"x1": 1.0}}, 404, "ghost"),
    ]:
        resp = await client.post(path, json=body)
        assert resp.status == status, await resp.text()
        assert needle in (await resp.json())["error"]["message"]
    resp = await client.get("/api/models/price/route")
    assert resp.status == 400 and "'key': required" in (await resp.json())["error"]["message"]
    resp = await client.put("/api/models/price/traffic", json={"weights": {good: 0.5}})
    assert resp.status == 400 and "sum to 1" in (await resp.json())["error"]["message"]
    resp = await client.put("/api/models/price/traffic", json={"weights": {"9.9.9": 1.0}})
    assert resp.status == 404
    assert rollouts.traffic_tables.get("price") != {good: 0.5}


async def test_route_endpoint_is_sticky(setup):
    _warden, client, (stable, good, _bad) = setup
    resp = await client.put("/api/models/price/traffic", json={"weights": {stable: 0.7, good: 0.3}})
    assert resp.status == 200, await resp.text()
    seen = {}
    for key in [f"user-{i}" for i in range(200)] * 2:
        resp = await client.get(f"/api/models/price/route?key={key}")
        version = (await resp.json())["version"]
        assert seen.setdefault(key, version) == version
    assert 0.15 < list(seen.values()).count(good) / len(seen) < 0.45


async def test_promote_and_rollback_routes_hand_over_to_the_controller(setup, clock):
    warden, client, (stable, good, _bad) = setup
    rollouts = warden.rollouts
    resp = await client.post(
        "/api/models/price/promote", json={"version": good, "strategy": "canary"}
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["state"], body["candidate"], body["baseline"]) == ("progressing", good, stable)
    resp = await client.post("/api/models/price/rollback", json={})
    body = await resp.json()
    assert resp.status == 200 and body["state"] == "rolled_back", body
    assert await rollouts.traffic("price") == {stable: 1.0}
    # The manual fast path does not fail the candidate: it may be rolled out again.
    assert (await warden.registry.get("price", good))["status"] == "staging"
    # Without a strategy (none asked, none configured for the model): a direct switch,
    # and the traffic table follows the new production version.
    resp = await client.post("/api/models/price/promote", json={"version": good})
    assert resp.status == 200 and (await resp.json())["strategy"] == "direct"
    for _ in range(100):
        if rollouts.traffic_tables.get("price") == {good: 1.0}:
            break
        await asyncio.sleep(0.02)
    assert rollouts.traffic_tables.get("price") == {good: 1.0}
    assert rollouts.route("price", "anyone") == good


async def test_a_tick_under_a_lost_lease_applies_no_step(setup, clock):
    """A former holder of the rollout ticks wakes up after a takeover: its step and
    analysis are refused (fencing), the new holder's step is applied once."""
    from mlwarden.daemon.core.leases import holding

    warden, client, (_stable, good, _bad) = setup
    rollouts = warden.rollouts
    await rollouts.start_rollout("price", good, strategy="canary", actor="alice")
    clock.advance(1)
    await send_traffic(client, 600, "a", seed=1)
    clock.advance(60)
    stale = await warden.cluster.singleton("rollouts")
    await warden.cluster.release("rollouts", [""])
    fresh = await warden.cluster.singleton("rollouts")
    assert stale is not None and fresh is not None and fresh.token == stale.token + 1
    with holding(stale):
        await rollouts.tick()
    assert any("is now held by" in e["message"] for e in warden.last_errors)
    body = await (await client.get("/api/models/price/deployment")).json()
    assert (body["rollout"]["step"], body["rollout"]["analyses"]) == (0, [])
    with holding(fresh):
        [after] = await rollouts.tick()
    assert (after["state"], after["step"], after["weight"]) == ("progressing", 1, 0.5)
    body = await (await client.get("/api/models/price/deployment")).json()
    assert body["rollout"]["step"] == 1 and len(body["rollout"]["analyses"]) == 1


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_the_holders_reread_waits_for_an_action_on_the_model(make_config, clock):
    """On PostgreSQL the rollout holder re-reads the active rollouts at every tick; an
    action holding the model's lock (an API rollback, a pause) keeps its copy until it
    ends, and the re-read then sees what it stored."""
    fast = MODEL_CONFIG.replace("tick_seconds = 3600", "tick_seconds = 0.05")
    async with Warden(make_config(fast), clock=clock) as warden:
        _stable, good, _bad = await register_models(warden)
        rollouts = warden.rollouts
        await rollouts.start_rollout("price", good, strategy="canary", actor="alice")
        async with rollouts.controller.locks["price"]:
            live = rollouts.active["price"]
            await asyncio.sleep(1.0)  # some twenty ticks of the loop try to re-read
            assert rollouts.active["price"] is live
            live["state"], live["held"] = "paused", None
            await rollouts.controller._save(live)
        for _ in range(200):  # the next tick's re-read: the stored copy
            if rollouts.active["price"] is not live:
                break
            await asyncio.sleep(0.05)
        assert rollouts.active["price"] is not live
        assert rollouts.active["price"]["state"] == "paused"
