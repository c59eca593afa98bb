"""Strategy options in the config file: "no metric check" is expressible, bad types are named."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.daemon.rollouts.analysis import VersionSample, compare
from mlwarden.daemon.warden import Warden
from mlwarden.errors import ConfigError
from mlwarden.types import Thresholds


def test_false_means_no_model_metric_check():
    assert Thresholds(max_metric_increase=False).max_metric_increase is None
    # An unlabelled candidate passes on errors and latency alone: nothing holds it.
    unlabelled = VersionSample(requests=400, latency=np.full(400, 0.01))
    assert compare(unlabelled, unlabelled, Thresholds(max_metric_increase=False)).verdict == "pass"
    # Not silently the strictest setting (0): a slightly worse candidate would fail at 0.
    assert Thresholds(max_metric_increase=0).max_metric_increase == 0


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_metric_increase", "", "a number >= 0, or false for no model-metric check"),
        ("max_metric_increase", True, "a number >= 0, or false for no model-metric check"),
        ("max_metric_increase", "0.1", "a number >= 0, or false"),
        ("max_error_rate", "0.05", "a finite number"),
        ("max_latency_ratio", False, "a finite number"),
        ("latency_quantile", [0.9], "a finite number"),
        ("min_samples", "100", "an integer >= 1"),
        ("min_samples", 2.5, "an integer >= 1"),
    ],
)
def test_wrong_types_are_named_by_their_key(key, value, expected):
    with pytest.raises(ValueError, match=f"option '{key}': expected {expected}"):
        Thresholds(**{key: value})


async def test_config_false_is_off_and_strings_are_config_errors(make_config):
    text = "[deployment.strategies.canary]\nmax_metric_increase = false\n"
    async with Warden(make_config(text)) as warden:
        canary = warden.rollouts.controller.strategy_for("canary", None)
        assert canary.thresholds.max_metric_increase is None
        assert canary.options()["max_metric_increase"] is None
    text = '[deployment.strategies.canary]\nmax_metric_increase = ""\n'
    warden = Warden(make_config(text))
    with pytest.raises(ConfigError) as info:
        await warden.start()
    await warden.stop()
    message = str(info.value)
    assert "deployment.strategies.canary" in message
    assert "option 'max_metric_increase': expected a number >= 0, or false" in message
    assert "not supported between" not in message
