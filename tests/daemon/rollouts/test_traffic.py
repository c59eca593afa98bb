"""Traffic tables and sticky routing: proportional, stable per key, validated, persisted."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats

from mlwarden.daemon.rollouts.traffic import (
    Router,
    key_point,
    pick_version,
    route_order,
    validate_weights,
)
from mlwarden.errors import InvalidInput


def test_key_point_is_uniform_on_unit_interval():
    points = np.array([key_point("m", f"user-{i}") for i in range(20_000)])
    assert points.min() >= 0 and points.max() < 1
    # Kolmogorov-Smirnov against U(0, 1): a hash that is not uniform fails at 1e-3.
    assert stats.kstest(points, "uniform").pvalue > 1e-3


@pytest.mark.parametrize(
    "weights",
    [{"1.0.0": 0.95, "1.1.0": 0.05}, {"1.0.0": 0.5, "2.0.0": 0.3, "2.1.0": 0.2}],
)
def test_route_shares_match_weights_over_100k_keys(weights):
    keys = [f"key-{i}" for i in range(100_000)]
    router = Router(weights)
    routed = [router.pick(key_point("btc", k)) for k in keys]
    versions = sorted(weights)
    observed = np.array([routed.count(v) for v in versions])
    expected = np.array([weights[v] for v in versions]) * len(keys)
    # Chi-square goodness of fit: shares match within statistical tolerance.
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # And the same key always gets the same version while the weights stand.
    again_router = Router(dict(reversed(weights.items())))
    again = [again_router.pick(key_point("btc", k)) for k in keys]
    assert again == routed


def test_a_canary_keeps_its_keys_as_it_grows():
    keys = [f"k{i}" for i in range(5000)]
    at5 = {
        k
        for k in keys
        if pick_version({"1.0.0": 0.95, "1.1.0": 0.05}, key_point("m", k)) == "1.1.0"
    }
    at25 = {
        k
        for k in keys
        if pick_version({"1.0.0": 0.75, "1.1.0": 0.25}, key_point("m", k)) == "1.1.0"
    }
    assert at5 and at5 <= at25
    assert route_order({"1.9.0": 1, "1.10.0": 1, "1.2.0": 1}) == ["1.10.0", "1.9.0", "1.2.0"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "non-empty object"),
        ([0.5, 0.5], "non-empty object"),
        ({"1.0.0": 0.5}, "sum to 1"),
        ({"1.0.0": 1.5}, "number in [0, 1]"),
        ({"1.0.0": -0.1, "1.1.0": 1.1}, "number in [0, 1]"),
        ({"1.0.0": "half", "1.1.0": 0.5}, "weight of version '1.0.0'"),
        ({"1.0.0": True}, "number in [0, 1]"),
        ({"1.0.0": float("nan")}, "number in [0, 1]"),
        ({"": 1.0}, "non-empty string"),
    ],
)
def test_bad_weights_are_refused_naming_the_entry(weights, message):
    with pytest.raises(InvalidInput, match="traffic of model 'm'") as info:
        validate_weights("m", weights)
    assert message in str(info.value)


def test_zero_weights_are_dropped():
    assert validate_weights("m", {"1.0.0": 1.0, "0.9.0": 0.0}) == {"1.0.0": 1.0}


BACKENDS = """
[daemon]
plugins = ["tests.fake_plugins.recording_backend"]
[deployment]
traffic_backends = ["mlflow_alias", "recording", "broken"]
[deployment.traffic_backend_options.recording]
label = "x"
"""


async def test_tables_persist_and_reach_every_backend(make_warden):
    import asyncio

    from tests.daemon.registry.helpers import log_model_files
    from tests.fake_plugins.recording_backend import RecordingBackend

    warden = await make_warden(BACKENDS)
    registry, rollouts = warden.registry, warden.rollouts
    for _ in range(2):
        run_id = await asyncio.to_thread(log_model_files, warden)
        await registry.register("m", model_uri=f"runs:/{run_id}/model")
    await registry.transition("m", "1.0.0", "staging", actor="t")
    await registry.transition("m", "1.0.0", "production", actor="t")
    for _ in range(1000):  # the table follows the new production version (a spawned task)
        if RecordingBackend.applied:
            break
        await asyncio.sleep(0.01)
    assert RecordingBackend.applied[-1] == ("m", {"1.0.0": 1.0})
    RecordingBackend.applied.clear()
    await rollouts.set_traffic("m", {"1.0.0": 0.75, "1.0.1": 0.25}, reason="test", actor="t")
    assert RecordingBackend.applied == [("m", {"1.0.0": 0.75, "1.0.1": 0.25})]
    # The failing backend is counted and named; the table still stands.
    assert warden.metrics.plugin_errors.labels("broken", "traffic_backend.apply")._value.get()
    health = await rollouts.health()
    assert health["status"] == "degraded" and "broken" in health["backend_errors"]
    # champion = the production version (the registry's), challenger = the other version
    # with the most traffic (mlflow_alias), a weight tag on each.
    client = warden.tracking.client

    def aliases():
        champion = client.get_model_version_by_alias("m", "champion")
        challenger = client.get_model_version_by_alias("m", "challenger")
        tags = {
            str(v.version): v.tags.get("mlwarden.traffic_weight")
            for v in client.search_model_versions("name='m'")
        }
        return champion.version, challenger.version, tags

    champion, challenger, tags = await asyncio.to_thread(aliases)
    assert (str(champion), str(challenger)) == ("1", "2")
    assert tags == {"1": "0.75", "2": "0.25"}
    # A bad table leaves nothing behind.
    with pytest.raises(InvalidInput):
        await rollouts.set_traffic("m", {"1.0.0": 0.5}, reason="bad")
    assert rollouts.traffic_tables.get("m") == {"1.0.0": 0.75, "1.0.1": 0.25}


async def test_a_restarted_daemon_routes_the_same(make_warden, make_config):
    from mlwarden.daemon.warden import Warden

    text = "[deployment]\ntraffic_backends = []\n"
    warden = await make_warden(text)
    from mlwarden.daemon.rollouts.serving import serving_change

    tables = warden.rollouts.traffic_tables
    change = serving_change("m", actor="t", reason="t", weights={"1.0.0": 0.6, "2.0.0": 0.4})
    await warden.rollouts.serving.apply(change)
    before = [tables.route("m", f"k{i}") for i in range(500)]
    await warden.stop()
    async with Warden(make_config(text)) as again:
        after = [again.rollouts.route("m", f"k{i}") for i in range(500)]
        assert after == before
        history = await again.rollouts.traffic_tables.history("m")
        assert history[0]["weights"] == {"1.0.0": 0.6, "2.0.0": 0.4}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[deployment]\ndefault_strategy = "canery"\n',
            "key 'deployment.default_strategy': unknown strategy 'canery'",
        ),
        (
            "[deployment.strategies.canary]\nsteps = [50, 10]\n",
            "key 'deployment.strategies.canary'",
        ),
        (
            '[[models]]\nname = "m"\nstrategy = "blue-green"\n',
            "key 'models[0].strategy': unknown strategy 'blue-green'",
        ),
    ],
)
async def test_a_bad_strategy_configuration_stops_start_naming_the_key(make_config, text, message):
    from mlwarden.daemon.warden import Warden
    from mlwarden.errors import ConfigError

    warden = Warden(make_config(text))
    with pytest.raises(ConfigError, match=re.escape(message)):
        await warden.start()
    await warden.stop()
