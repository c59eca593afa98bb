"""The jobs routes: retrain, list, read, cancel, and every bad input."""

from __future__ import annotations

import json
import sys

import pytest

PY = sys.executable
CONFIG = (
    "[training]\nmin_training_data_points = 0\nkill_grace_seconds = 1\n"
    '[[models]]\nname = "btc"\n[models.trainer]\nplugin = "command"\n'
    f"command = {json.dumps([PY, '-c', 'import time; time.sleep(30)'])}\n"
    '[[models]]\nname = "untrained"\n'
)


@pytest.fixture
async def client(make_warden, make_client):
    return await make_client(await make_warden(CONFIG))


async def test_retrain_list_get_cancel(client):
    resp = await client.post("/api/models/btc/retrain", json={"reason": "new data"})
    assert resp.status == 202
    job = await resp.json()
    assert job["model"] == "btc" and job["reason"] == "new data" and job["trigger"] == "manual"
    resp = await client.post("/api/models/btc/retrain")  # no body: a default reason
    assert resp.status == 200
    assert (await resp.json())["id"] == job["id"]
    resp = await client.get("/api/jobs?model=btc")
    assert [j["id"] for j in (await resp.json())["jobs"]] == [job["id"]]
    resp = await client.get(f"/api/jobs/{job['id']}")
    assert resp.status == 200 and (await resp.json())["id"] == job["id"]
    resp = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    resp = await client.post(f"/api/jobs/{job['id']}/cancel")
    assert resp.status == 409
    assert "already cancelled" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/jobs?state=cancelled&limit=1")
    assert len((await resp.json())["jobs"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/api/models/nope/retrain", {}, 404, "model 'nope' is not configured"),
        ("POST", "/api/models/untrained/retrain", {}, 409, "no trainer configured"),
        ("POST", "/api/models/btc/retrain", {"why": "x"}, 400, "unknown field 'why'"),
        ("POST", "/api/models/btc/retrain", {"reason": ""}, 400, "reason: expected str of length"),
        ("POST", "/api/models/btc/retrain", {"reason": 3}, 400, "reason: expected str, got int"),
        ("POST", "/api/models/btc/retrain", [1], 400, "must be a JSON object"),
        ("GET", "/api/jobs?state=done", None, 400, "state must be one of queued"),
        ("GET", "/api/jobs?limit=0", None, 400, "'limit': expected int >= 1"),
        ("GET", "/api/jobs?limit=ten", None, 400, "'limit': expected int, got str"),
        ("GET", "/api/jobs/abc", None, 404, "training job 'abc' not found"),
        ("POST", "/api/jobs/abc/cancel", None, 404, "training job 'abc' not found"),
    ],
)
async def test_bad_input_is_refused_and_leaves_nothing(client, method, path, body, status, needle):
    resp = (
        await client.request(method, path, json=body)
        if body is not None
        else (await client.request(method, path))
    )
    assert resp.status == status
    assert needle in (await resp.json())["error"]["message"]
    resp = await client.get("/api/jobs")
    assert (await resp.json())["jobs"] == []


async def test_malformed_json_body(client):
    resp = await client.post(
        "/api/models/btc/retrain", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
