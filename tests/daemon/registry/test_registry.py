"""The model registry against a real MLflow SQLite store and the real HTTP API."""

from __future__ import annotations

import asyncio

import pytest
from sklearn import metrics as skm

from mlwarden import hookimpl
from mlwarden.daemon.warden import Warden
from tests.daemon.registry.helpers import log_model_files

GATES = '[[models]]\nname = "btc"\n[models.gates]\nmax_mse = 0.05\n'
DAY = 86400.0


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def mlwarden_event(self, event):
        self.seen.append(event)

    def kinds(self, kind: str) -> list:
        return [e for e in self.seen if e.kind == kind]


@pytest.fixture
async def lab(make_config, make_client):
    """(start, clock, events): ``start()`` starts a Warden on the same base path."""
    clock = Clock()
    events = Events()
    wardens: list[Warden] = []

    async def start(text: str = GATES):
        warden = Warden(make_config(text), clock=clock)
        await warden.start()
        warden.pm.register(events, name=f"test-events-{len(wardens)}")
        wardens.append(warden)
        return warden, await make_client(warden)

    yield start, clock, events
    for warden in wardens:
        if warden.started_at is not None:
            await warden.stop()


async def register(client, run_id: str, expect: int = 201, **body):
    resp = await client.post("/api/models/btc/versions", json={"run_id": run_id, **body})
    data = await resp.json()
    assert resp.status == expect, data
    return data


def mlflow_state(warden: Warden, model: str = "btc") -> tuple[dict, dict]:
    """(aliases -> MLflow version, MLflow version -> status tag) as MLflow has them."""
    client = warden.tracking.client
    aliases = dict(client.get_registered_model(model).aliases)
    statuses = {
        int(v.version): v.tags.get("mlwarden.status")
        for v in client.search_model_versions(f"name = '{model}'")
    }
    return {k: int(v) for k, v in aliases.items()}, statuses


def assert_mirrored(warden: Warden, versions: list[dict]) -> None:
    aliases, statuses = mlflow_state(warden)
    assert statuses == {v["mlflow_version"]: v["status"] for v in versions}
    production = [v for v in versions if v["status"] == "production"]
    if production:
        assert aliases.get("champion") == production[0]["mlflow_version"]
    else:
        assert "champion" not in aliases


@pytest.mark.both_backends
async def test_lifecycle_gates_aliases_rollback_and_restart(lab):
    start, clock, events = lab
    warden, client = await start()
    runs = [
        await asyncio.to_thread(log_model_files, warden, params={"alpha": a}, metrics=m)
        for a, m in (("1", {"mse": 0.01}), ("1", {"mse": 0.02}), ("2", {"mse": 0.5}))
    ]
    v1 = await register(client, runs[0], lineage={"training_job": "job-1", "holdout": "h"})
    assert (v1["version"], v1["mlflow_version"], v1["status"]) == ("1.0.0", 1, "validation")
    assert v1["gate_report"]["passed"] is True
    assert v1["metrics"] == {"mse": 0.01} and v1["params"] == {"alpha": "1"}  # from the run
    assert len(warden.tracking.client.get_metric_history(runs[0], "mse")) == 1  # not re-logged
    assert v1["gate_report"]["checks"][0] == {
        "name": "max_mse", "metric": "mse", "measured": 0.01, "threshold": 0.05,
        "passed": True, "detail": "",
    }  # fmt: skip
    clock.now += 60
    v2 = await register(client, runs[1])  # same framework, inputs, params: patch
    assert v2["version"] == "1.0.1"
    clock.now += 60
    v3 = await register(client, runs[2], parent="1.0.0")  # params changed: minor
    assert (v3["version"], v3["parent"]) == ("1.1.0", "1.0.0")
    assert v3["gate_report"]["passed"] is False
    assert len(events.kinds("version_registered")) == 3

    # a version whose gates fail cannot leave validation
    resp = await client.post("/api/models/btc/versions/1.1.0/status", json={"status": "staging"})
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "gates_failed"
    assert "max_mse(mse): measured 0.5, threshold 0.05" in body["error"]["message"]
    resp = await client.post("/api/models/btc/versions/1.1.0/status", json={"status": "failed"})
    assert resp.status == 200

    # promote v1 (validation -> staging through its gates -> production)
    resp = await client.post("/api/models/btc/promote", json={"version": "1.0.0"})
    assert resp.status == 200, await resp.json()
    assert (await resp.json())["previous_version"] is None
    # an illegal transition is a 409 naming the rule
    resp = await client.post("/api/models/btc/versions/1.0.0/status", json={"status": "validation"})
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "illegal_transition"
    assert "production -> validation" in body["error"]["message"]
    assert "deprecated" in body["error"]["message"]

    clock.now += 60
    resp = await client.post("/api/models/btc/promote", json={"version": "1.0.1"})
    assert (await resp.json())["previous_version"] == "1.0.0"
    versions = (await (await client.get("/api/models/btc/versions")).json())["versions"]
    assert {v["version"]: v["status"] for v in versions} == {
        "1.0.0": "deprecated", "1.0.1": "production", "1.1.0": "failed",
    }  # fmt: skip
    assert next(v for v in versions if v["version"] == "1.0.1")["aliases"] == ["champion"]
    assert_mirrored(warden, versions)

    # rollback restores the previous production version
    clock.now += 60
    resp = await client.post("/api/models/btc/rollback", json={})
    result = await resp.json()
    assert resp.status == 200, result
    assert (result["version"], result["previous_version"]) == ("1.0.0", "1.0.1")
    model = await (await client.get("/api/models/btc")).json()
    assert model["production_version"] == "1.0.0"
    assert model["rollback_target"] == "1.0.1"
    changes = [
        (e.version, e.data["from"], e.data["to"]) for e in events.kinds("version_status_changed")
    ]
    assert changes[-2:] == [
        ("1.0.1", "production", "deprecated"),
        ("1.0.0", "deprecated", "production"),
    ]
    audit = await warden.audit.entries(200)
    assert any(
        e["action"] == "version status change" and e["detail"]["to"] == "production" for e in audit
    )

    # all of it survives a restart: a new Warden on the same base path
    before = await warden.registry.versions("btc")
    # MLflow drifting from the registry (a crash between the two, a hand edit) is repaired
    # at start: the registry's tables are the lifecycle's source of truth.
    mlflow = warden.tracking.client
    await asyncio.to_thread(mlflow.delete_registered_model_alias, "btc", "champion")
    await asyncio.to_thread(
        mlflow.set_model_version_tag, "btc", "2", "mlwarden.status", "production"
    )
    await warden.stop()
    again, client2 = await start()
    after = await again.registry.versions("btc")
    assert after == before
    assert_mirrored(again, after)
    detail = await (await client2.get("/api/models/btc/versions/1.0.0")).json()
    assert [h["to_status"] for h in detail["history"]] == [
        "validation", "staging", "production", "deprecated", "production",
    ]  # fmt: skip
    resp = await client2.post("/api/models/btc/rollback", json={})
    assert (await resp.json())["version"] == "1.0.1"


async def test_registration_metadata_in_mlflow(lab):
    start, _, _ = lab
    warden, client = await start('[[models]]\nname = "btc"\n')
    run_id = await asyncio.to_thread(log_model_files, warden, params={"depth": "3"})
    window = {"start": "2026-01-01", "end": "2026-06-01"}
    record = await register(
        client, run_id, version="2.5.0", metrics={"mse": 0.01},
        params={"lr": 0.1, "layers": [64, 32]}, tags={"team": "quant"}, author="ana",
        data_window=window,
        lineage={"training_job": "j-9", "data_reference": "s3://bucket/btc.parquet"},
    )  # fmt: skip
    assert record["version"] == "2.5.0"
    assert record["params"] == {"depth": "3", "lr": "0.1", "layers": "[64, 32]"}
    assert record["framework"] == "sklearn" and record["inputs"] == ["x1", "x2"]
    mlflow = warden.tracking.client
    version = mlflow.get_model_version("btc", "1")
    assert version.tags["mlwarden.version"] == "2.5.0"
    assert version.tags["mlwarden.status"] == "validation"
    assert version.tags["mlwarden.training_job"] == "j-9"
    assert version.tags["mlwarden.author"] == "ana"
    assert version.tags["team"] == "quant"
    run = mlflow.get_run(run_id)
    assert run.data.params == {"depth": "3", "lr": "0.1", "layers": "[64, 32]"}
    assert run.data.metrics == {"mse": 0.01}
    # duplicates are refused
    body = await register(client, run_id, expect=409, version="2.5.0")
    assert body["error"]["code"] == "version_exists"
    # the next automatic version follows the highest one
    assert (await register(client, run_id))["version"] == "2.5.1"


BAD_REGISTRATIONS = [
    ({}, "exactly one of 'model_uri' and 'run_id'"),
    ({"model_uri": "s3://x"}, "model_uri: expected 'runs:/<run_id>/<path>'"),
    ({"model_uri": "runs:/0123456789abcdef0123456789abcdef/model"}, "model_uri 'runs:/0123"),
    ({"model_uri": "m-doesnotexist"}, "model_uri 'm-doesnotexist'"),
    ({"model_uri": "models:/btc/7"}, "model_uri 'models:/btc/7'"),
    ({"speed": "x"}, "unknown field 'speed' (expected: model_uri, run_id,"),
    ({"run_id": "RUN", "version": "1.0"}, "version: expected a semantic version"),
    ({"run_id": "RUN", "bump": "huge"}, "bump: expected one of major, minor, patch"),
    ({"run_id": "RUN", "metrics": {"mse": "low"}}, "metrics.mse: expected a finite number"),
    ({"run_id": "RUN", "params": {"a": None}}, "params.a: expected a string, number"),
    ({"run_id": "RUN", "params": {"a": [float("nan")]}}, "params.a: expected JSON-serialisable"),
    ({"run_id": "RUN", "parent": "9.9.9"}, "parent: model 'btc' has no version '9.9.9'"),
    ({"run_id": "RUN", "data_window": {"from": 1}}, "data_window: expected"),
    ({"run_id": "RUN", "artifact_path": "nope"}, "run RUN has no model logged at 'nope'"),
]


async def test_bad_registrations_are_400_and_leave_nothing(lab):
    start, _, _ = lab
    warden, client = await start()
    run_id = await asyncio.to_thread(log_model_files, warden)
    for body, message in BAD_REGISTRATIONS:
        body = {k: (v.replace("RUN", run_id) if isinstance(v, str) else v) for k, v in body.items()}
        resp = await client.post("/api/models/btc/versions", json=body)
        data = await resp.json()
        assert resp.status == 400, (body, data)
        assert message.replace("RUN", run_id) in data["error"]["message"], (body, data)
    assert await warden.registry.versions("btc") == []
    assert warden.tracking.client.search_model_versions("name = 'btc'") == []


async def test_bad_requests_on_lifecycle_routes(lab):
    start, _, _ = lab
    warden, client = await start()
    run_id = await asyncio.to_thread(log_model_files, warden, metrics={"mse": 0.01})
    await register(client, run_id)
    cases = [
        ("/api/models/btc/versions/1.0.0/status", {"status": "live"}, 400, "expected one of"),
        ("/api/models/btc/versions/1.0.0/status", {"reason": "x"}, 400, "status: required"),
        ("/api/models/btc/versions/9.0.0/status", {"status": "failed"}, 404, "no version '9.0.0'"),
        ("/api/models/btc/promote", {}, 400, "version: required"),
        (
            "/api/models/btc/promote",
            {"version": "1.0.0", "speed": 1},
            400,
            "unknown field 'speed' (expected: version, strategy, reason)",
        ),
        ("/api/models/btc/rollback", {}, 409, "no previous production version"),
        ("/api/models/nope/versions", {"model_uri": "bad"}, 400, "model_uri: expected"),
        ("/api/system/cleanup", {"older_than_days": -1}, 400, "older_than_days: expected"),
        ("/api/system/cleanup", {"dry_run": "yes"}, 400, "dry_run: expected bool, got str"),
    ]
    for path, body, status, message in cases:
        resp = await client.post(path, json=body)
        data = await resp.json()
        assert resp.status == status, (path, body, data)
        assert message in data["error"]["message"], (path, data)
    compares = [
        ("a=btc@1.0.0", "'b': required"),
        ("a=btc&b=btc@1.0.0", "NAME@VERSION"),
        ("a=btc@1.0.0&b=btc@2.0.0", "no version '2.0.0'"),
    ]
    for query, message in compares:
        resp = await client.get(f"/api/models/compare?{query}")
        assert message in (await resp.json())["error"]["message"]
    resp = await client.get("/api/models/unknown")
    assert resp.status == 404
    assert (await warden.registry.get("btc", "1.0.0"))["status"] == "validation"


async def test_compare_side_by_side(lab):
    start, _, _ = lab
    warden, client = await start('[[models]]\nname = "btc"\n')
    r1 = await asyncio.to_thread(log_model_files, warden, params={"alpha": "1", "depth": "2"})
    r2 = await asyncio.to_thread(log_model_files, warden, params={"alpha": "2", "seed": "7"})
    await register(client, r1, metrics={"mse": 0.02, "mae": 0.1})
    await register(client, r2, metrics={"mse": 0.01})
    resp = await client.get("/api/models/compare?a=btc@1.0.0&b=btc@1.1.0&hours=2")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["metrics"]["mse"] == {"a": 0.02, "b": 0.01, "diff": pytest.approx(-0.01)}
    assert body["metrics"]["mae"] == {"a": 0.1, "b": None, "diff": None}
    assert body["params"]["changed"] == {"alpha": {"a": "1", "b": "2"}}
    assert body["params"]["only_a"] == {"depth": "2"} and body["params"]["only_b"] == {"seed": "7"}
    assert body["window"]["hours"] == 2
    assert set(body["drift"]) == {"a", "b"}
    # live performance of both versions over the same window, from the ingest path
    ingest = warden.ingest
    truth = {"1.0.0": ([1.0, 2.0, 3.0], [1.5, 2.0, 2.0]), "1.1.0": ([1.0, 2.0], [1.0, 2.5])}
    now = warden.clock()
    for version, (labels, predictions) in truth.items():
        records = [
            {"id": f"{version}-{i}", "ts": now - 60, "version": version,
             "features": {"x": 1.0}, "prediction": p}
            for i, p in enumerate(predictions)
        ]  # fmt: skip
        await ingest.record_predictions("btc", {"records": records})
        labelled = [{"id": f"{version}-{i}", "label": y} for i, y in enumerate(labels)]
        await ingest.record_labels("btc", {"labels": labelled})
    body = await (await client.get("/api/models/compare?a=btc@1.0.0&b=btc@1.1.0")).json()
    assert body["performance"]["a"]["mse"] == pytest.approx(skm.mean_squared_error(*truth["1.0.0"]))
    assert body["performance"]["b"]["mse"] == pytest.approx(skm.mean_squared_error(*truth["1.1.0"]))
    assert body["performance"]["a"]["samples"] == 3 and body["performance"]["b"]["samples"] == 2


def artifact_dir(record: dict):
    from pathlib import Path
    from urllib.parse import urlparse

    return Path(urlparse(record["artifact_uri"]).path)


async def test_cleanup_removes_only_what_it_may(lab):
    start, clock, _ = lab
    warden, client = await start('[[models]]\nname = "btc"\n')
    registry = warden.registry
    runs = [await asyncio.to_thread(log_model_files, warden) for _ in range(5)]
    for run_id in runs[:4]:
        await register(client, run_id)
    shared = await register(client, runs[3], version="3.0.0")  # same artifacts as 1.0.3
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        clock.now += 60
        assert (
            await client.post("/api/models/btc/promote", json={"version": version})
        ).status == 200
    await registry.transition("btc", "1.0.0", "archived", actor="t")
    await registry.transition("btc", "1.0.3", "failed", actor="t")
    clock.now += 40 * DAY
    await register(client, runs[4])  # 3.0.1, fresh
    assert (await client.post("/api/models/btc/promote", json={"version": "3.0.1"})).status == 200
    # now: 1.0.0 archived (old), 1.0.1 deprecated (old), 1.0.2 deprecated just now (rollback
    # target), 1.0.3 failed (old, artifacts shared with 3.0.0), 3.0.0 validation, 3.0.1 production
    records = {r["version"]: r for r in await registry.versions("btc")}

    resp = await client.post("/api/system/cleanup", json={"older_than_days": 30, "dry_run": True})
    plan = await resp.json()
    assert resp.status == 200, plan
    assert sorted(r["version"] for r in plan["would_remove"]) == ["1.0.0", "1.0.1", "1.0.3"]
    kept = {r["version"]: r["reason"] for r in plan["kept"]}
    assert kept == {"1.0.2": "rollback target"}
    assert {r["version"]: r["artifacts"] for r in plan["would_remove"]}["1.0.3"].startswith("kept")
    assert len(await registry.versions("btc")) == 6
    assert all(artifact_dir(r).exists() for r in records.values())

    resp = await client.post("/api/system/cleanup", json={"older_than_days": 30})
    result = await resp.json()
    assert sorted(r["version"] for r in result["removed"]) == ["1.0.0", "1.0.1", "1.0.3"]
    left = {r["version"]: r["status"] for r in await registry.versions("btc")}
    assert left == {"1.0.2": "deprecated", "3.0.0": "validation", "3.0.1": "production"}
    assert not artifact_dir(records["1.0.0"]).exists()
    assert not artifact_dir(records["1.0.1"]).exists()
    assert artifact_dir(shared).exists()  # still used by 3.0.0
    assert artifact_dir(records["1.0.2"]).exists()
    mlflow_versions = {
        int(v.version) for v in warden.tracking.client.search_model_versions("name = 'btc'")
    }
    assert mlflow_versions == {records[v]["mlflow_version"] for v in ("1.0.2", "3.0.0", "3.0.1")}
    assert any(e["action"] == "cleanup" for e in await warden.audit.entries(50))
    # nothing more to do, and the rollback target still works
    again = await (await client.post("/api/system/cleanup", json={"older_than_days": 30})).json()
    assert again["removed"] == []
    resp = await client.post("/api/models/btc/rollback", json={})
    assert (await resp.json())["version"] == "1.0.2"


async def test_sklearn_model_logged_and_registered_through_the_api(lab):
    from tests.daemon.registry.helpers import log_sklearn_model

    start, _, _ = lab
    warden, client = await start('[[models]]\nname = "ridge"\n[models.gates]\nmax_mse = 0.05\n'
                                 "max_worse_than_production = 0.10\n")  # fmt: skip
    run_a, model_a, mse_a = await asyncio.to_thread(log_sklearn_model, warden, alpha=0.1)
    _, model_b, mse_b = await asyncio.to_thread(log_sklearn_model, warden, alpha=300.0)
    assert mse_a < 0.05 < mse_b
    url = "/api/models/ridge/versions"
    resp = await client.post(url, json={"model_uri": f"runs:/{run_a}/model"})
    first = await resp.json()
    assert resp.status == 201, first
    assert (first["version"], first["model_id"], first["framework"]) == (
        "1.0.0",
        model_a,
        "sklearn",
    )
    assert first["metrics"]["mse"] == pytest.approx(mse_a) and first["params"] == {"alpha": "0.1"}
    assert first["gate_report"]["passed"]
    resp = await client.post("/api/models/ridge/promote", json={"version": "1.0.0"})
    assert resp.status == 200
    resp = await client.post(url, json={"model_uri": model_b, "author": "bob"})  # bare m- id
    second = await resp.json()
    assert resp.status == 201, second
    assert second["version"] == "1.1.0"  # alpha changed: minor
    checks = {(c["name"], c["metric"]): c for c in second["gate_report"]["checks"]}
    assert not checks[("max_mse", "mse")]["passed"]
    assert not checks[("max_worse_than_production", "mse")]["passed"]
    assert second["gate_report"]["production_version"] == "1.0.0"
    resp = await client.post("/api/models/ridge/promote", json={"version": "1.1.0"})
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "gates_failed"
    mlflow = warden.tracking.client
    assert str(mlflow.get_model_version_by_alias("ridge", "champion").version) == "1"
    assert mlflow.get_model_version("ridge", "2").tags["mlwarden.gates"] == "failed"
    import mlflow as mlflow_module

    mlflow_module.set_tracking_uri(warden.tracking.uri)
    loaded = await asyncio.to_thread(mlflow_module.sklearn.load_model, "models:/ridge@champion")
    assert loaded.alpha == 0.1
