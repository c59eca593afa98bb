"""page_hinkley: a hand-computed stream, direction, alarm index, false alarms."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.plugins.drift.page_hinkley import PageHinkley
from mlwarden.types import FeatureData


def numeric(values) -> FeatureData:
    return FeatureData("x", "numeric", sample=np.asarray(values, dtype=float))


def test_hand_computed_stream():
    # reference mean 0, sd 1 (values -1, 1 with ddof=1: sd = sqrt(2)); use +-1 x 50
    ref = np.tile([-1.0, 1.0], 50)
    sd = np.std(ref, ddof=1)
    ph = PageHinkley(threshold=3.0, delta=0.5).fit(numeric(ref))
    stream = np.array([0.0, 0.0, 3.0, 3.0, 3.0]) * sd  # z = 0, 0, 3, 3, 3
    # U: -0.5, -1.0, 1.5, 4.0, 6.5; min so far (with 0): 0, ... -0.5, -1.0, -1.0, -1.0, -1.0
    # excursions: 0, 0, 2.5, 5.0, 7.5 -> first above 3 at index 3
    score = ph.score(numeric(stream))
    assert score.statistic == pytest.approx(7.5)
    assert score.details["alarm_at"] == 3
    assert score.details["direction"] == "up"
    assert score.drifted and score.p_value is None


def test_a_fall_is_found_too():
    rng = np.random.default_rng(0)
    ph = PageHinkley().fit(numeric(rng.normal(10.0, 2.0, size=5_000)))
    score = ph.score(numeric(rng.normal(8.0, 2.0, size=400)))  # -1 sd
    assert score.drifted and score.details["direction"] == "down"
    assert score.details["alarm_at"] < 100


def test_no_alarm_on_a_long_stationary_stream():
    rng = np.random.default_rng(4)
    ph = PageHinkley().fit(numeric(rng.normal(size=10_000)))
    score = ph.score(numeric(rng.normal(size=20_000)))
    assert not score.drifted and score.details["alarm_at"] is None


@pytest.mark.parametrize("options", [{"threshold": 0}, {"delta": -0.1}, {"delta": "x"}])
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'"page_hinkley": option "{next(iter(options))}"'):
        PageHinkley(**options)
