"""The model registry against a real MLflow SQLite store and the real HTTP API."""

from __future__ import annotations

import asyncio

from .registry_helpers import log_model_files


async def test_register_from_run_gets_first_semver(warden, make_client):
    run_id = await asyncio.to_thread(log_model_files, warden, params={"depth": "3"})
    client = await make_client(warden)
    resp = await client.post(
        "/api/models/btc/versions", json={"run_id": run_id, "metrics": {"mse": 0.01}}
    )
    body = await resp.json()
    assert resp.status == 201, body
    assert body["version"] == "1.0.0"
    assert body["mlflow_version"] == 1
    assert body["status"] == "validation"
    assert body["framework"] == "sklearn"
    assert body["params"] == {"depth": "3"}
