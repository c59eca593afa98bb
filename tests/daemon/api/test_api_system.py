"""System routes: JSON errors, body limit, OpenAPI, health, readiness, metrics."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from mlwarden.daemon.api.http import ROUTES
from mlwarden.types import Event
from tests.fake_plugins import fake_routes
from tests.helpers import require_binary

ROOT = Path(__file__).resolve().parents[3]
RAISING = "tests.fake_plugins.raising_event"


@pytest.fixture
async def client(make_warden, make_client):
    warden = await make_warden("[daemon]\nmax_body_bytes = 1024\n")
    return await make_client(warden, extra_routes=fake_routes.routes())


async def error_of(resp, status: int) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


async def test_unknown_route_is_a_json_404(client):
    error = await error_of(await client.get("/api/nope"), 404)
    assert error["code"] == "not_found"


async def test_wrong_method_is_a_json_405(client):
    error = await error_of(await client.post("/healthz", json={}), 405)
    assert error["code"] == "method_not_allowed"


async def test_body_over_the_limit_is_a_json_413_naming_the_limit(client):
    resp = await client.post(
        "/api/fake/items/big",
        data=b'{"x": "' + b"y" * 2000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    error = await error_of(resp, 413)
    assert error["code"] == "body_too_large"
    assert "1024 bytes (daemon.max_body_bytes)" in error["message"]
    # Nothing was stored.
    assert (await (await client.get("/api/fake/items")).json())["items"] == {}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"x": ', "malformed_json", "not valid JSON"),
        (b"", "empty_body", "empty"),
        (b"[1, 2]", "wrong_type", "JSON object"),
        (b"\xff\xfe", "malformed_json", "not valid JSON"),
    ],
)
async def test_bad_json_is_a_400_saying_what_is_wrong(client, body, code, words):
    resp = await client.post(
        "/api/fake/items/x", data=body, headers={"Content-Type": "application/json"}
    )
    error = await error_of(resp, 400)
    assert error["code"] == code
    assert words in error["message"]
    assert (await (await client.get("/api/fake/items")).json())["items"] == {}


async def test_openapi_lists_every_route_with_its_role(client):
    doc = await (await client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    table = client.server.app[ROUTES]
    listed = {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert set(listed) == set(table)
    for key, route in table.items():
        assert listed[key]["x-mlwarden-role"] == route.role
        assert ("security" in listed[key]) == (route.role != "open")
    assert {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}} in (
        listed[("POST", "/api/fake/items/{name}")]["parameters"]
    )


async def test_system_health_lists_components_plugins_and_uptime(client):
    body = await (await client.get("/api/system/health")).json()
    assert body["status"] == "ok"
    assert body["components"]["store"]["status"] == "ok"
    assert body["components"]["store"]["schema"]["audit"] >= 1
    assert body["components"]["mlflow"]["status"] == "ok"
    assert body["components"]["mlflow"]["tracking_uri"].startswith("sqlite:///")
    assert body["uptime_seconds"] >= 0
    log = next(p for p in body["plugins"] if p["name"] == "log")
    assert log == {
        "name": "log",
        "kind": "notifier",
        "plugin": "mlwarden.plugins.notifiers.log",
        "version": body["version"],
        "origin": "builtin",
    }


async def test_readyz_checks_mlflow(client, base_path):
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["checks"]["mlflow"] == "ok"
    db = sqlite3.connect(base_path / "mlflow.db")
    try:
        db.execute("ALTER TABLE experiments RENAME TO experiments_away")
        db.commit()
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["ready"] is False
        assert body["checks"]["mlflow"].startswith("down")
        assert body["checks"]["store"] == "ok"
        assert (await client.get("/healthz")).status == 200  # alive, not ready
    finally:
        db.execute("ALTER TABLE experiments_away RENAME TO experiments")
        db.commit()
        db.close()
    assert (await client.get("/readyz")).status == 200


async def test_metrics_names_and_request_histogram(client):
    await client.get("/api/fake/items")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    for name in (
        "mlwarden_build_info{",
        "mlwarden_http_request_duration_seconds_bucket{",
        "# TYPE mlwarden_plugin_errors_total counter",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info{",
    ):
        assert name in text, name
    assert 'route="/api/fake/items"' in text


async def test_raising_event_plugin_is_counted_and_isolated(make_warden, make_client):
    from tests.fake_plugins import collector

    collector.RECEIVED.clear()
    warden = await make_warden(
        f'[daemon]\nplugins = ["{RAISING}", "tests.fake_plugins.collector"]\n'
        '[[notifiers]]\nname = "c"\nplugin = "collector"\n'
        "[alerts]\ngroup_wait_seconds = 0\ntick_seconds = 0.1\n"
        '[[alerts.rules]]\nname = "Boom"\nfire_on = ["boom"]\n'
    )
    client = await make_client(warden)
    await warden.emit(Event(kind="boom", model="m"))
    await warden.emit(Event(kind="boom", model="m2"))
    counter = warden.metrics.plugin_errors.labels(RAISING, "mlwarden_event")
    assert counter._value.get() == 2
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    health = await (await client.get("/api/system/health")).json()
    assert health["last_errors"][-1]["where"] == f"plugin {RAISING} (mlwarden_event)"
    # The other listeners still heard the events: the alert engine notified.
    deadline = time.monotonic() + 20
    while len(collector.RECEIVED) < 2 and time.monotonic() < deadline:
        import asyncio

        await asyncio.sleep(0.05)
    assert {n.model for _, n in collector.RECEIVED} == {"m", "m2"}


def test_real_daemon_metrics_pass_promtool_and_count_plugin_errors(daemon_factory, tmp_path):
    promtool = require_binary("promtool")
    daemon = daemon_factory(
        f'[daemon]\nplugins = ["{RAISING}", "tests.fake_plugins.startup_event"]\n',
        env={"PYTHONPATH": str(ROOT)},
    ).start()
    assert daemon.call("GET", "/healthz")[0] == 200
    assert daemon.call("GET", "/api/system/health")[0] == 200
    status, text = daemon.call("GET", "/metrics")
    assert status == 200
    line = f'mlwarden_plugin_errors_total{{hook="mlwarden_event",plugin="{RAISING}"}} 1.0'
    assert line in text.splitlines(), text
    assert "mlwarden_http_request_duration_seconds_count{" in text
    assert daemon.call("GET", "/readyz")[0] == 200
    status, body = daemon.call("PUT", "/readyz", body={})
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "" and result.stderr == "", result.stdout + result.stderr
    assert daemon.stop() == 0
    assert "plugin tests.fake_plugins.raising_event raised RuntimeError" in daemon.log()
