"""The experiments service on a real Warden: real registry (MLflow), ingest, traffic tables.

Traffic is split by the rollout service's sticky hashing; each request's version is the
one ``rollouts.route`` picks, its outcome is ingested through the real ingest path, and
the warden's clock is moved forward to pass the minimum duration.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlwarden import hookimpl
from mlwarden.daemon.warden import Warden
from mlwarden.errors import Conflict
from tests.daemon.registry.helpers import log_model_files, log_sklearn_model

CONFIG = """
[ab_testing]
min_duration_hours = 1
min_samples = 100
evaluation_interval_seconds = 3600
[[models]]
name = "m"
"""


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Events:
    """A plugin that keeps every event it hears."""

    def __init__(self) -> None:
        self.seen: list = []

    @hookimpl
    def mlwarden_event(self, event):
        self.seen.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]


@pytest.fixture
async def lab(make_config, make_client):
    """A started Warden with model ``m`` at versions 1.0.0 (A) and 1.1.0 (B)."""

    async def make(extra: str = "", *, real_models: bool = False, interval: float = 3600):
        clock = Clock()
        config = CONFIG.replace("evaluation_interval_seconds = 3600",
                                f"evaluation_interval_seconds = {interval}")  # fmt: skip
        warden = Warden(make_config(config + extra), clock=clock)
        await warden.start()
        events = Events()
        warden.pm.register(events, name="test-events")
        registry = warden.registry
        for alpha, version in ((1.0, "1.0.0"), (0.1, "1.1.0")):
            if real_models:  # loadable by the gateway (a rollout's preflight loads them)
                _, model_id, _ = await asyncio.to_thread(log_sklearn_model, warden, alpha=alpha)
                uri = model_id
            else:
                run_id = await asyncio.to_thread(log_model_files, warden, inputs=("x",))
                uri = f"runs:/{run_id}/model"
            await registry.register("m", model_uri=uri, version=version)
        await warden.rollouts.set_traffic("m", {"1.0.0": 1.0}, reason="baseline", actor="test")
        await warden.ingest.model_state("m").ready.wait()
        made.append(warden)
        return warden, clock, events, await make_client(warden)

    made: list[Warden] = []
    yield make
    for warden in made:
        await warden.stop()


async def serve(warden, n, *, start=0, error_b=0.5, error_a=1.0, versions=None, seed=0):
    """Route ``n`` requests by key, ingest predictions and labels; B's errors are smaller."""
    rng = np.random.default_rng(seed)
    rollouts, ingest = warden.rollouts, warden.ingest
    records, labels = [], []
    for i in range(start, start + n):
        key = f"user-{i}"
        version = versions[i - start] if versions else rollouts.route("m", key)
        label = float(rng.normal())
        scale = error_b if version == "1.1.0" else error_a
        records.append({
            "id": key, "version": version, "features": {"x": label},
            "prediction": label + float(rng.normal(0, scale)),
            "latency_ms": float(rng.uniform(5, 15)),
        })  # fmt: skip
        labels.append({"id": key, "label": label})
    await ingest.record_predictions("m", {"records": records})
    await ingest.record_labels("m", {"labels": labels})


START = {"model_a": "m@1.0.0", "model_b": "m@1.1.0", "name": "ridge-b", "duration_hours": 2}


@pytest.mark.both_backends
async def test_experiment_runs_decides_and_is_recorded(lab):
    warden, clock, events, client = await lab()
    resp = await client.post("/api/experiments", json=START)
    record = await resp.json()
    assert resp.status == 201, record
    exp_id = record["id"]
    assert record["status"] == "running" and record["traffic_split"] == 0.5
    assert await warden.rollouts.traffic("m") == {"1.0.0": 0.5, "1.1.0": 0.5}
    assert "experiment_started" in events.kinds()

    again = await client.post("/api/experiments", json={**START, "name": "second"})
    body = await again.json()
    assert again.status == 409 and exp_id in body["error"]["message"]

    await serve(warden, 600)
    early = await (await client.post(f"/api/experiments/{exp_id}/evaluate")).json()
    assert early["status"] == "running"
    assert early["result"]["recommendation"] == "CONTINUE" and early["result"]["winner"] is None
    assert "minimum duration" in early["result"]["reason"]
    samples = early["result"]["samples"]
    assert samples["A"] + samples["B"] == 600 and min(samples.values()) > 250
    assert not early["result"]["srm"]["mismatch"]
    registry = warden.metrics.registry
    assert (
        registry.get_sample_value("mlwarden_experiment_samples", {"model": "m", "variant": "B"})
        == samples["B"]
    )
    assert registry.get_sample_value("mlwarden_experiment_p_value", {"model": "m"}) is not None

    clock.offset = 1.5 * 3600
    done = await (await client.post(f"/api/experiments/{exp_id}/evaluate")).json()
    result = done["result"]
    assert done["status"] == "concluded", result
    assert result["recommendation"] == "PROMOTE_B" and done["winner"] == "1.1.0"
    assert result["p_value"] <= 0.05 and result["interval"][1] < 0 and result["lift"] < 0
    assert result["power"]["required_samples"] > 0 and result["test"] == "welch+msprt"
    assert done["promotion"] == {"status": "not_started", "reason": "auto-promotion is off"}
    assert await warden.rollouts.traffic("m") == {"1.0.0": 1.0}
    concluded = [e for e in events.seen if e.kind == "experiment_concluded"]
    assert concluded and concluded[0].data["winner"] == "1.1.0"
    assert registry.get_sample_value("mlwarden_experiment_p_value", {"model": "m"}) is None

    detail = await (await client.get(f"/api/experiments/{exp_id}")).json()
    assert [e["recommendation"] for e in detail["evaluation_history"]] == ["PROMOTE_B", "CONTINUE"]
    history = await (await client.get("/api/experiments/history?model=m")).json()
    assert [e["id"] for e in history["experiments"]] == [exp_id]
    assert "_state" not in history["experiments"][0]

    # The MLflow run holds the parameters, the metrics per evaluation and the result.
    client_ml = warden.tracking.client
    run = await asyncio.to_thread(client_ml.get_run, done["mlflow_run_id"])
    assert run.data.params["version_b"] == "1.1.0" and run.data.params["metric"] == "squared_error"
    assert run.data.tags["mlwarden.winner"] == "1.1.0"
    assert run.data.metrics["samples_a"] == result["samples"]["A"]
    assert run.info.status == "FINISHED"
    history_p = await asyncio.to_thread(client_ml.get_metric_history, run.info.run_id, "p_value")
    assert len(history_p) == 2

    # A concluded experiment can be evaluated (no change) but not stopped.
    resp = await client.post(f"/api/experiments/{exp_id}/stop")
    assert resp.status == 409


async def test_winner_is_promoted_when_auto_promotion_is_on(lab):
    warden, clock, events, _ = await lab(real_models=True)
    exp_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "auto", 0.5, 2, auto_promote=True)
    await serve(warden, 600)
    clock.offset = 1.5 * 3600
    result = await warden.evaluate_ab_test(exp_id)
    assert result["recommendation"] == "PROMOTE_B" and result["winner"] == "1.1.0"
    assert result["promotion"]["status"] == "started", result["promotion"]
    rollout = result["promotion"]["rollout"]
    assert rollout["candidate"] == "1.1.0" and rollout["baseline"] == "1.0.0"
    assert rollout["state"] != "rolled_back", rollout
    assert "rollout_started" in events.kinds()
    # The rollout's start event did not stop the (already concluded) experiment.
    record = await warden.experiments.get(exp_id)
    assert record["status"] == "concluded"


async def test_background_loop_concludes_sequential_and_waits_for_fixed_horizon(lab):
    warden, clock, _, _ = await lab("", interval=0.2)
    service = warden.experiments
    seq_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "loop", 0.5, 2)
    await serve(warden, 600)
    clock.offset = 1.5 * 3600
    for _ in range(100):
        if (await service.get(seq_id))["status"] == "concluded":
            break
        await asyncio.sleep(0.1)
    record = await service.get(seq_id)
    assert record["status"] == "concluded" and record["winner"] == "1.1.0"
    assert record["evaluations"] >= 1

    # A fixed-horizon experiment is left alone by the loop until its planned end.
    fixed_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "fixed", 0.5, 4,
                                          sequential=False)  # fmt: skip
    await serve(warden, 600, start=600)
    await asyncio.sleep(1.0)
    assert (await service.get(fixed_id))["evaluations"] == 0
    clock.offset += 4 * 3600
    for _ in range(100):
        if (await service.get(fixed_id))["status"] != "running":
            break
        await asyncio.sleep(0.1)
    record = await service.get(fixed_id)
    assert record["evaluations"] == 1 and record["status"] == "concluded"
    assert record["result"]["test"] == "welch" and record["winner"] == "1.1.0"


@pytest.mark.both_backends
async def test_a_running_experiment_and_its_sequential_state_survive_a_restart(lab, make_config):
    warden, _, _, _ = await lab()
    exp_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "durable", 0.5, 2)
    await serve(warden, 300)
    first = await warden.evaluate_ab_test(exp_id)
    assert first["sequential_state"]["primary"]["looks"] == 1
    await warden.stop()
    async with Warden(make_config(CONFIG)) as again:
        await again.ingest.model_state("m").ready.wait()
        record = await again.experiments.get(exp_id)
        assert record["status"] == "running" and record["evaluations"] == 1
        second = await again.evaluate_ab_test(exp_id)
        state = second["sequential_state"]["primary"]
        assert state["looks"] == 2 and state["p_value"] <= first["p_value"]
        assert second["samples"] == first["samples"]


async def test_sample_ratio_mismatch_blocks_the_winner(lab):
    warden, clock, _, _ = await lab()
    exp_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "srm", 0.5, 2)
    versions = ["1.0.0"] * 900 + ["1.1.0"] * 1100  # 45/55 under a 50/50 split
    await serve(warden, 2000, versions=versions)
    clock.offset = 3 * 3600
    result = await warden.evaluate_ab_test(exp_id)
    assert result["recommendation"] == "INVALID_SRM" and result["winner"] is None
    assert result["srm"]["mismatch"] and result["srm"]["observed"] == [900, 1100]
    assert result["status"] == "running"
    value = warden.metrics.registry.get_sample_value(
        "mlwarden_experiment_srm_detected", {"model": "m"}
    )
    assert value in (None, 1.0)  # declared by the dashboards work when present


async def test_stop_restores_traffic_and_names_no_winner(lab):
    warden, _, events, client = await lab()
    exp_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "stop me", 0.2, 2)
    assert await warden.rollouts.traffic("m") == {"1.0.0": 0.8, "1.1.0": 0.2}
    resp = await client.post(f"/api/experiments/{exp_id}/stop", json={"reason": "bad idea"})
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "stopped" and body["winner"] is None
    assert body["result"]["stopped_reason"] == "bad idea"
    assert await warden.rollouts.traffic("m") == {"1.0.0": 1.0}
    assert events.seen[-1].kind == "experiment_concluded"
    # Now the model is free for another experiment.
    assert await warden.start_ab_test("m@1.0.0", "m@1.1.0", "again", 0.5, 2)


async def test_a_rollout_taking_the_table_stops_the_experiment(lab):
    warden, _, _, _ = await lab(real_models=True)
    exp_id = await warden.start_ab_test("m@1.0.0", "m@1.1.0", "preempted", 0.5, 2)
    rollouts = warden.rollouts
    rollout = await rollouts.start_rollout("m", "1.1.0", strategy="canary", actor="test")
    assert rollout["active"], rollout
    record = await warden.experiments.get(exp_id)
    assert record["status"] == "stopped" and "rollout" in record["result"]["stopped_reason"]
    # The rollout's table was left alone, and no experiment starts while it is active.
    assert (await rollouts.traffic("m")).get("1.1.0", 0.0) < 0.5
    with pytest.raises(Conflict, match=r"active rollout of version 1\.1\.0"):
        await warden.start_ab_test("m@1.0.0", "m@1.1.0", "blocked", 0.5, 2)


BAD_STARTS = [
    ({"model_a": "m@1.0.0"}, 400, "model_b: required"),
    ({**START, "model_b": "other@1.1.0"}, 400, "versions of one model"),
    ({**START, "model_a": "1.0.0"}, 400, "'name@version' when 'model' is not given"),
    ({**START, "colour": "red"}, 400, "unknown field 'colour'"),
    ({**START, "traffic_split": 1.5}, 400, "traffic_split must be in (0, 1)"),
    ({**START, "traffic_split": "half"}, 400, "traffic_split: expected float, got str"),
    ({**START, "duration_hours": 0.5}, 400, "shorter than ab_testing.min_duration_hours"),
    ({**START, "metric": "mape"}, 400, "metric must be one of"),
    ({**START, "test": "ztest"}, 400, "needs a 0/1 metric"),
    ({**START, "sequential": "yes"}, 400, "sequential: expected bool | null, got str"),
    ({**START, "model_b": "m@1.0.0"}, 400, "both version '1.0.0'"),
    ({**START, "model_b": "m@9.9.9"}, 404, "9.9.9"),
    ({**START, "model_a": "ghost@1.0.0", "model_b": "ghost@1.1.0"}, 404, "ghost"),
]


@pytest.mark.both_backends
async def test_bad_starts_are_refused_and_leave_nothing(lab):
    warden, _, events, client = await lab()
    for body, status, message in BAD_STARTS:
        resp = await client.post("/api/experiments", json=body)
        answer = await resp.json()
        assert resp.status == status, (body, answer)
        assert message in answer["error"]["message"], (body, answer)
        assert await warden.experiments.history() == []
        assert await warden.rollouts.traffic("m") == {"1.0.0": 1.0}
        assert "experiment_started" not in events.kinds()


async def test_unknown_ids_and_bad_queries(lab):
    _, _, _, client = await lab()
    for method, path in (("GET", "/api/experiments/nope"),
                         ("POST", "/api/experiments/nope/evaluate"),
                         ("POST", "/api/experiments/nope/stop")):  # fmt: skip
        resp = await client.request(method, path)
        assert resp.status == 404 and "nope" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/experiments/history?status=done")
    assert resp.status == 400 and "status" in (await resp.json())["error"]["message"]
    resp = await client.get("/api/experiments/history?limit=0")
    assert resp.status == 400 and "limit" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/experiments", data=b"not json")
    assert resp.status == 400


def test_guardrails_count_timed_calls_not_rows():
    from types import SimpleNamespace

    from mlwarden.daemon.experiments.records import arm_from_outcomes

    outcomes = SimpleNamespace(
        ts=np.array([1.0, 1.0, 1.0, 2.0, 3.0, 3.0]),
        latency=np.array([0.05, 0.05, 0.05, 0.01, np.nan, np.nan]),
        error=np.array([False, False, False, True, False, True]),
        prediction=np.array([1.0, 2.0, 3.0, np.nan, 1.0, 1.0]),
        label=np.array([1.0, 1.0, 1.0, 1.0, 3.0, 1.0]),
    )
    arm = arm_from_outcomes("squared_error", outcomes)
    assert arm.values.tolist() == [0.0, 1.0, 4.0, 4.0]  # failed calls left out
    assert sorted(arm.latency.tolist()) == [0.01, 0.05]  # one batch timed once = one call
    assert sorted(arm.error.tolist()) == [False, False, True, True]
    assert arm.assigned == 6


async def test_no_minimum_duration_makes_the_default_duration_zero(make_warden, make_client):
    """``min_duration_hours = 0``: an experiment without ``duration_hours`` starts (its
    documented default is ``min_duration_hours``) and a negative one is still refused."""
    warden = await make_warden(CONFIG.replace("min_duration_hours = 1", "min_duration_hours = 0"))
    for version in ("1.0.0", "1.1.0"):
        run_id = await asyncio.to_thread(log_model_files, warden, inputs=("x",))
        await warden.registry.register("m", model_uri=f"runs:/{run_id}/model", version=version)
    await warden.rollouts.set_traffic("m", {"1.0.0": 1.0}, reason="baseline", actor="test")
    client = await make_client(warden)
    body = {k: v for k, v in START.items() if k != "duration_hours"}
    resp = await client.post("/api/experiments", json=body)
    answer = await resp.json()
    assert resp.status == 201, answer
    assert answer["duration_hours"] == 0.0 and answer["status"] == "running"
    await client.post(f"/api/experiments/{answer['id']}/stop", json={})
    resp = await client.post("/api/experiments", json={**body, "duration_hours": -1})
    answer = await resp.json()
    assert resp.status == 400 and "duration_hours must be a number >= 0" in str(answer), answer
