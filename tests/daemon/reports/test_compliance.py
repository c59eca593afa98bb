"""The compliance report of a history made here: register, gates failing then passing,
promotion, rollback, an alert, a token of each role; then an edited audit row."""

from __future__ import annotations

import asyncio

from mlwarden.daemon.api.auth import mint_token
from mlwarden.types import Event, Severity
from tests.daemon.registry.helpers import log_model_files
from tests.helpers import store_sql

TOKENS = {role: mint_token() for role in ("viewer", "auditor", "operator", "admin")}
CONFIG = (
    '[deployment]\ndefault_strategy = "direct"\n'
    '[[models]]\nname = "btc"\n[models.gates]\nmax_mse = 0.05\n'
    "[alerts]\ngroup_wait_seconds = 0\n"
    + "".join(
        f'[[auth.tokens]]\nname = "{role}-token"\nsha256 = "{digest}"\nrole = "{role}"\n'
        for role, (_, digest) in TOKENS.items()
    )
)


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role][0]}"}


async def test_compliance_report_lists_every_event_and_the_broken_row(make_warden, make_client):
    warden = await make_warden(CONFIG)
    client = await make_client(warden)
    runs = [
        await asyncio.to_thread(log_model_files, warden, params={"alpha": a}, metrics=m)
        for a, m in (("1", {"mse": 0.01}), ("2", {"mse": 0.5}), ("3", {"mse": 0.02}))
    ]
    registered = []
    for run in runs:
        body = {"run_id": run, "lineage": {"training_data": "s3://d/train.parquet",
                                           "training_data_sha256": "ab" * 32}}  # fmt: skip
        resp = await client.post("/api/models/btc/versions", json=body, headers=auth("operator"))
        assert resp.status == 201, await resp.text()
        registered.append((await resp.json())["version"])
    v1, v2, v3 = registered
    for version in (v1, v3):
        resp = await client.post(
            "/api/models/btc/promote", json={"version": version}, headers=auth("operator")
        )
        assert resp.status == 200, await resp.text()
    resp = await client.post("/api/models/btc/rollback", json={}, headers=auth("admin"))
    assert resp.status == 200, await resp.text()
    await warden.emit(
        Event(kind="drift_detected", model="btc", severity=Severity.WARNING,
              message="drift on x2", data={"drift_score": 0.5, "threshold": 0.2})
    )  # fmt: skip

    resp = await client.get("/api/compliance/report?format=json", headers=auth("auditor"))
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    inventory = {v["version"]: v for v in report["inventory"]}
    assert set(inventory) == {v1, v2, v3}
    assert inventory[v1]["registered_by"] == "operator-token"
    assert inventory[v1]["lineage"]["training_data_sha256"] == "ab" * 32
    assert inventory[v1]["lineage"]["run_id"] == runs[0]
    assert inventory[v2]["params"] == {"alpha": "2"}
    gates = {g["version"]: g["passed"] for g in report["gate_runs"]}
    assert gates == {v1: True, v2: False, v3: True}
    moves = [(t["version"], t["to_status"], t["actor"]) for t in report["transitions"]]
    assert (v1, "production", "operator-token") in moves
    assert (v3, "production", "operator-token") in moves
    assert (v1, "production", "admin-token") in moves  # the rollback
    assert any(t["actor"] == "admin-token" and t["to_status"] != "production" for t in
               report["transitions"])  # fmt: skip
    assert [i["rule"] for i in report["incidents"]] == ["ModelDataDrift"]
    assert {r["token"]: r["role"] for r in report["roles"]} == {
        f"{role}-token": role for role in TOKENS
    }
    actions = [(e["actor"], e["action"]) for e in report["audit"]["entries"]]
    assert ("operator-token", "POST /api/models/{name}/promote") in actions
    assert ("admin-token", "POST /api/models/{name}/rollback") in actions
    verification = report["audit"]["verification"]
    assert verification["intact"] is True and verification["first_broken_id"] is None
    first, last = report["audit"]["first_entry"], report["audit"]["last_entry"]
    assert first["id"] == 1 and last["id"] == len(report["audit"]["entries"])

    html = await (await client.get("/api/compliance/report", headers=auth("auditor"))).text()
    assert "Audit chain intact" in html and "operator-token" in html and "FAILED" in html

    victim = 2
    await store_sql(
        warden.config.database_url,
        "UPDATE audit_log SET actor = 'someone-else' WHERE id = :id",
        {"id": victim},
    )
    report = await (
        await client.get("/api/compliance/report?format=json", headers=auth("auditor"))
    ).json()
    verification = report["audit"]["verification"]
    assert verification["intact"] is False
    assert verification["first_broken_id"] == victim
    assert verification["broken_in_period"] is True
    html = await (await client.get("/api/compliance/report", headers=auth("admin"))).text()
    assert f"Audit chain BROKEN</strong> at row {victim}" in html
    for role in ("viewer", "operator"):
        resp = await client.get("/api/compliance/report", headers=auth(role))
        assert resp.status == 403
