"""A deployment strategy from the example plugin project, chosen by name."""

from __future__ import annotations

from mlwarden.daemon.warden import Warden
from tests.daemon.rollouts.helpers import (
    DEPLOYMENT_CONFIG,
    MODELS_CONFIG,
    Clock,
    register_models,
    send_traffic,
)


async def test_example_plugin_strategy_is_chosen_by_name(
    example_plugin_site, monkeypatch, make_config, make_client
):
    monkeypatch.syspath_prepend(str(example_plugin_site))
    monkeypatch.setenv("MLWARDEN_DISABLE_PLUGIN_AUTOLOAD", "")
    text = (
        DEPLOYMENT_CONFIG + "[deployment.strategies.halfway]\npercent = 40\ninterval_seconds = 60\n"
        "min_samples = 30\nmax_metric_increase = 0.5\nmax_latency_ratio = 100\n"
        "latency_slack_seconds = 5\n" + MODELS_CONFIG
    )
    clock = Clock()
    async with Warden(make_config(text), clock=clock) as warden:
        info = {i.name: i for i in warden.plugins.infos()}["halfway"]
        assert (info.kind, info.plugin) == ("strategy", "example")
        _stable, good, _bad = await register_models(warden)
        client = await make_client(warden)
        rollouts = warden.rollouts
        rollout = await rollouts.start_rollout("price", good, strategy="halfway", actor="alice")
        assert (rollout["strategy"], rollout["weight"]) == ("halfway", 0.4)
        assert rollout["options"]["percent"] == 40
        clock.advance(1)
        await send_traffic(client, 300, "a", seed=1)
        clock.advance(60)
        [after] = await rollouts.tick()
        assert after["state"] == "promoted", after
        assert await rollouts.traffic("price") == {good: 1.0}
