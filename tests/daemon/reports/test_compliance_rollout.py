"""The compliance report of a canary started by an operator and rolled back by an admin,
through the real HTTP API with tokens: who did each, in which role, why, and how the
traffic weights moved."""

from __future__ import annotations

import asyncio
import re

from mlwarden.daemon.api.auth import mint_token
from tests.daemon.rollouts.helpers import MODEL_CONFIG, register_models

TOKENS = {role: mint_token() for role in ("viewer", "auditor", "operator", "admin")}
CONFIG = MODEL_CONFIG + "".join(
    f'[[auth.tokens]]\nname = "{role}-token"\nsha256 = "{digest}"\nrole = "{role}"\n'
    for role, (_, digest) in TOKENS.items()
)
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
START_WHY = "retrained on the October data"
ROLLBACK_WHY = "p99 latency doubled on the canary"


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role][0]}"}


def rows_of(html: str, table_id: str) -> list[list[str]]:
    """The cells of each body row of the table ``table_id`` (tags stripped)."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S)
    assert table, f"no table {table_id!r} in the report"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)[1:]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", r, re.S)]
            for r in rows]  # fmt: skip


async def test_canary_by_an_operator_rolled_back_by_an_admin(make_warden, make_client):
    warden = await make_warden(CONFIG)
    client = await make_client(warden)
    stable, good, _bad = await register_models(warden)
    # The traffic table follows the setup's in-process promotion (spawned): wait for it.
    for _ in range(100):
        if await warden.rollouts.traffic("price") == {stable: 1.0}:
            break
        await asyncio.sleep(0.02)
    assert await warden.rollouts.traffic("price") == {stable: 1.0}

    body = {"version": good, "strategy": "canary", "reason": START_WHY}
    resp = await client.post("/api/models/price/promote", json=body, headers=auth("operator"))
    rollout = await resp.json()
    assert resp.status == 200, rollout
    assert (rollout["state"], rollout["baseline"]) == ("progressing", stable)
    canary = await warden.rollouts.traffic("price")
    assert canary == {good: 0.1, stable: 0.9}
    # An auditor may read all of it and change none of it.
    for path, payload in (("promote", {"version": good}), ("rollback", {})):
        resp = await client.post(f"/api/models/price/{path}", json=payload, headers=auth("auditor"))
        assert resp.status == 403, (path, await resp.text())
    resp = await client.post(
        "/api/models/price/rollback", json={"reason": ROLLBACK_WHY}, headers=auth("admin")
    )
    ended = await resp.json()
    assert resp.status == 200 and ended["state"] == "rolled_back", ended
    assert await warden.rollouts.traffic("price") == {stable: 1.0}

    resp = await client.get("/api/compliance/report?format=json", headers=auth("auditor"))
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    events = [(p["event"], p["version"], p["actor"], p["role"]) for p in report["promotions"]]
    assert events == [
        # The setup's promotion, in-process: an actor that is no token has no role.
        ("promotion", stable, "test", ""),
        ("rollout started", good, "operator-token", "operator"),
        ("rollout rolled_back", good, "admin-token", "admin"),
    ]
    _setup, started, rolled_back = report["promotions"]
    assert START_WHY in started["reason"] and started["rollout"] == rollout["id"]
    assert ROLLBACK_WHY in rolled_back["reason"] and rolled_back["rollout"] == rollout["id"]
    assert all(re.fullmatch(ISO, p["ts_iso"]) for p in report["promotions"])

    changes = [
        (c["weights_before"], c["weights"], c["actor"], c["actor_role"])
        for c in report["traffic_changes"]
    ]
    assert changes == [
        ({}, {stable: 1.0}, "registry", "system"),  # following the setup's promotion
        ({stable: 1.0}, canary, "mlwarden", "system"),  # the canary's first step
        (canary, {stable: 1.0}, "admin-token", "admin"),
    ]
    assert rollout["id"] in report["traffic_changes"][1]["reason"]
    assert ROLLBACK_WHY in report["traffic_changes"][2]["reason"]
    (row,) = report["rollouts"]
    assert (row["actor"], row["actor_role"], row["state"]) == (
        "operator-token", "operator", "rolled_back",
    )  # fmt: skip
    # The candidate went to staging for its rollout, by the operator, with the reason.
    (staged,) = [t for t in report["transitions"]
                 if t["version"] == good and t["to_status"] == "staging"]  # fmt: skip
    assert (staged["actor"], staged["actor_role"]) == ("operator-token", "operator")
    assert START_WHY in staged["reason"]
    # The role is recorded with each request in the audit log.
    roles = {(e["actor"], e["detail"].get("role")) for e in report["audit"]["entries"]}
    assert {("operator-token", "operator"), ("admin-token", "admin"),
            ("auditor-token", "auditor")} <= roles  # fmt: skip

    resp = await client.get("/api/compliance/report", headers=auth("auditor"))
    assert resp.status == 200
    html = await resp.text()
    promotions = rows_of(html, "promotions")
    assert [r[3:6] for r in promotions] == [
        ["promotion", "test", ""],
        ["rollout started", "operator-token", "operator"],
        ["rollout rolled_back", "admin-token", "admin"],
    ]
    assert START_WHY in promotions[1][6] and ROLLBACK_WHY in promotions[2][6]
    traffic = rows_of(html, "traffic")
    assert [r[2:5] for r in traffic] == [
        [f"none &rarr; {stable} 100%", "registry", "system"],
        [f"{stable} 100% &rarr; {good} 10% / {stable} 90%", "mlwarden", "system"],
        [f"{good} 10% / {stable} 90% &rarr; {stable} 100%", "admin-token", "admin"],
    ]
    assert ROLLBACK_WHY in traffic[2][5]
    for row in (*promotions, *traffic):
        assert re.fullmatch(ISO, row[0]), row
