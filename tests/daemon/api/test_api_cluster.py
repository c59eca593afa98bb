"""``GET /api/system/cluster``: members with their heartbeat, leases with their owner."""

from __future__ import annotations

import asyncio

from tests.daemon.api.test_auth import TOKENS, tokens_toml

MODEL = '[[models]]\nname = "m"\nfeatures = ["x1"]\n'


async def test_one_daemon_is_the_only_member_and_holds_every_lease(make_warden, make_client):
    warden = await make_warden(MODEL, **{"cluster.instance": "solo"})
    client = await make_client(warden)
    for _ in range(100):  # the loops take their leases as they start
        body = await (await client.get("/api/system/cluster")).json()
        held = {(x["kind"], x["key"]) for x in body["leases"]}
        if {("model", "m"), ("scheduler", ""), ("training-jobs", "")} <= held:
            break
        await asyncio.sleep(0.05)
    assert {("model", "m"), ("scheduler", ""), ("training-jobs", "")} <= held
    assert body["instance"] == "solo" and body["lease_ttl_seconds"] == 15.0
    [member] = body["members"]
    assert member["instance"] == "solo" and member["alive"]
    assert 0 <= member["heartbeat_age_seconds"] < 15
    for lease in body["leases"]:
        assert lease["owner"] == "solo" and lease["token"] >= 1 and not lease["expired"]
        assert lease["expires_at"] > body["now"]
    text = await (await client.get("/metrics")).text()
    assert "mlwarden_cluster_members 1.0" in text
    assert 'mlwarden_leases_held{kind="model"} 1.0' in text


async def test_the_cluster_view_is_for_viewers(make_warden, make_client):
    client = await make_client(await make_warden(tokens_toml()))
    assert (await client.get("/api/system/cluster")).status == 401
    viewer = {"Authorization": f"Bearer {TOKENS['viewer'][0]}"}
    assert (await client.get("/api/system/cluster", headers=viewer)).status == 200


async def test_a_stopped_daemon_leaves_and_lets_go(make_warden):
    warden = await make_warden(MODEL, **{"cluster.instance": "leaving"})
    await warden.cluster.heartbeat()
    assert (await warden.cluster.view())["members"]
    store = warden.store
    await warden.cluster.leave()
    view = await warden.cluster.view()
    assert view["members"] == [] and view["leases"] == []
    assert store.engine is not None
