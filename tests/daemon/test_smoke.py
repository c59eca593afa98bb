from __future__ import annotations


async def test_healthz_and_system_health(api_client):
    resp = await api_client.get("/healthz")
    assert resp.status == 200
    resp = await api_client.get("/api/system/health")
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["components"]["mlflow"]["status"] == "ok"
    assert any(p["name"] == "log" for p in body["plugins"])


def test_real_daemon_answers(daemon_factory):
    d = daemon_factory().start()
    status, body = d.call("GET", "/readyz")
    assert status == 200, body
    assert d.stop() == 0
