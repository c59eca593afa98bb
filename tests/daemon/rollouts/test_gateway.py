"""The serving gateway: pyfunc models from MLflow, a bounded cache, recorded predictions."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.daemon.warden import Warden
from tests.daemon.rollouts.helpers import (
    MODEL_CONFIG,
    Clock,
    register_broken,
    register_models,
    send_traffic,
    shares,
)

#: The store-level tests run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _start(make_config, make_client, clock, extra: str = ""):
    warden = Warden(
        make_config(MODEL_CONFIG.replace("[deployment]\n", f"[deployment]\n{extra}")), clock=clock
    )
    await warden.start()
    versions = await register_models(warden)
    return warden, await make_client(warden), versions


async def test_predictions_are_served_recorded_and_cached(make_config, make_client, clock):
    warden, client, (stable, good, _bad) = await _start(
        make_config, make_client, clock, "max_loaded_models = 1\n"
    )
    try:
        rollouts = warden.rollouts
        await rollouts.set_traffic("price", {stable: 0.5, good: 0.5}, reason="test")
        served = await send_traffic(client, 200, "a", seed=1)
        assert set(shares(served)) == {stable, good}
        # Each answer is what that version's sklearn model predicts.
        by_version = {p["version"]: p for p in served}
        assert all(isinstance(p["prediction"], float) for p in served)
        assert len(by_version) == 2
        # Recorded on the ingest path with version and latency; labels joined.
        outcomes = await warden.ingest.outcomes("price", version=good)
        assert len(outcomes) == sum(p["version"] == good for p in served)
        assert np.isfinite(outcomes.latency).all() and not outcomes.error.any()
        count = warden.metrics.prediction_latency.labels("price", good)._sum.get()
        assert count > 0
        # max_loaded_models = 1: two versions served, one stays loaded.
        assert len(rollouts.gateway.loaded) == 1
        # Sticky: the gateway routes a key where /route says it goes.
        resp = await client.post(
            "/api/models/price/predict",
            json={"key": "user-42", "features": {"x1": 1.0, "x2": 0.0, "x3": 2.0}},
        )
        body = await resp.json()
        assert body["predictions"][0]["version"] == rollouts.route("price", "user-42")
    finally:
        await warden.stop()


async def test_a_candidate_that_errors_is_served_around_and_rolled_back(
    make_config, make_client, clock
):
    warden, client, (stable, _good, _bad) = await _start(make_config, make_client, clock)
    try:
        rollouts = warden.rollouts
        failing = await register_broken(warden, "failing")
        await rollouts.start_rollout("price", failing, strategy="canary", actor="alice")
        clock.advance(1)
        served = await send_traffic(client, 600, "a", seed=2)
        # Users never see the failure: the baseline answers for the candidate.
        assert shares(served) == {stable: 1.0}
        calls, errors, _ = rollouts.gateway.serving("price", failing).window(0, clock.now)
        assert calls == errors > 20
        # The fast path does not wait for the step's interval.
        [after] = await rollouts.tick()
        assert after["state"] == "rolled_back" and "gateway errors" in after["reason"]
        [analysis] = (await rollouts.deployment("price"))["rollout"]["analyses"]
        check = analysis["checks"][0]
        assert (check["metric"], check["candidate"], check["threshold"]) == (
            "gateway_error_rate",
            1.0,
            0.05,
        )
        assert await rollouts.traffic("price") == {stable: 1.0}
    finally:
        await warden.stop()


async def test_a_candidate_that_fails_to_load_fails_its_analysis(make_config, make_client, clock):
    warden, _client, (stable, _good, _bad) = await _start(make_config, make_client, clock)
    try:
        rollouts = warden.rollouts
        broken = await register_broken(warden, "unloadable")
        rollout = await rollouts.start_rollout("price", broken, strategy="canary", actor="alice")
        assert rollout["state"] == "rolled_back"
        [analysis] = await rollouts.analyses(rollout["id"])
        assert analysis["checks"][0]["metric"] == "model_load"
        assert "failed to load" in analysis["reason"]
        assert await rollouts.traffic("price") == {stable: 1.0}  # never got traffic
    finally:
        await warden.stop()


async def test_gateway_switched_off_still_routes(make_config, make_client, clock):
    warden, client, (stable, _good, _bad) = await _start(
        make_config, make_client, clock, "gateway = false\n"
    )
    try:
        resp = await client.post(
            "/api/models/price/predict", json={"features": {"x1": 1.0, "x2": 0.0, "x3": 2.0}}
        )
        assert resp.status == 404
        assert "deployment.gateway = false" in (await resp.json())["error"]["message"]
        resp = await client.get("/api/models/price/route?key=u1")
        assert (await resp.json())["version"] == stable
    finally:
        await warden.stop()
