"""The variance CUSUM on synthetic returns with known change points."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.stats.cusum import VolatilityCusum, returns_from


def regime_series(seed: int, sigmas: list[float], length: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, s, length) for s in sigmas])


def test_finds_each_injected_change_point_once_with_a_short_delay():
    # Variance ratio 2 at each change (sigma x sqrt(2) up, then down, then up again).
    sigmas = [1.0, np.sqrt(2), 1.0, np.sqrt(0.5), 1.0]
    x = regime_series(7, sigmas, 2000)
    alarms = VolatilityCusum().detect(x)
    changes = [2000, 4000, 6000, 8000]
    assert [a.direction for a in alarms] == ["up", "down", "down", "up"]
    for alarm, change in zip(alarms, changes, strict=True):
        assert 0 <= alarm.index - change < 500, (alarm, change)
        # The start estimate lands near the true change.
        assert abs(alarm.start_index - change) < 300


def test_measured_delay_and_false_alarm_rate():
    """The numbers in docs/training.md: delay for a ratio-2 change, false alarms per 10k."""
    detector = VolatilityCusum()
    delays = {"up": [], "down": []}
    for seed in range(40):
        for direction, sigma in (("up", np.sqrt(2)), ("down", np.sqrt(0.5))):
            x = regime_series(1000 + seed, [1.0, sigma], 1000)
            late = [a for a in detector.detect(x) if a.index >= 1000]
            assert late and late[0].direction == direction
            delays[direction].append(late[0].index - 1000)
    assert 30 < np.median(delays["up"]) < 120
    assert 60 < np.median(delays["down"]) < 200
    stationary = np.random.default_rng(42).normal(size=100_000)
    false_alarms = len(detector.detect(stationary))
    assert false_alarms / 10 <= 0.5  # per 10,000 steps (measured: ~0.05)
    # A lower threshold trades delay for false alarms, as the docs say.
    eager = VolatilityCusum(threshold=6.0)
    assert len(eager.detect(stationary)) > false_alarms


def test_heavy_tails_are_clipped_not_alarmed():
    x = np.random.default_rng(3).normal(size=5000)
    x[2500] = 40.0  # one 40-sigma print
    assert VolatilityCusum().detect(x) == []


def test_transforms_and_nan_handling():
    prices = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 500)))
    r = returns_from(prices, "log_return")
    assert r.shape == (499,) and abs(r.std() - 0.01) < 0.002
    assert returns_from(np.array([1.0, 3.0, 6.0]), "diff").tolist() == [2.0, 3.0]
    x = regime_series(5, [1.0, 2.0], 1500)
    x[100:110] = np.nan
    alarms = VolatilityCusum().detect(x)
    assert alarms and alarms[0].index >= 1500
    with pytest.raises(ValueError, match="transform"):
        returns_from(prices, "pct")


@pytest.mark.parametrize("options", [{"ratio": 1.0}, {"threshold": 0}, {"warmup": 5}, {"clip": -1}])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError, match="option"):
        VolatilityCusum(**options)
