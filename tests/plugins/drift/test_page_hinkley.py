"""page_hinkley: a hand-computed stream, direction, alarm index, false alarms."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.plugins.drift.page_hinkley import PageHinkley
from mlwarden.types import FeatureData


def numeric(values) -> FeatureData:
    return FeatureData("x", "numeric", sample=np.asarray(values, dtype=float))


def test_hand_computed_stream():
    # reference -1/+1 fifty times each: mean 0, sd sqrt(100/99), clip range [-1, 1]
    ref = np.tile([-1.0, 1.0], 50)
    sd = np.sqrt(100 / 99)
    ph = PageHinkley(threshold=1.4, delta=0.25).fit(numeric(ref))
    score = ph.score(numeric([0.0, 0.0, 1.0, 1.0, 5.0]))  # 5 is clipped to 1
    z = 1 / sd
    # U: -0.25, -0.5, -0.5 + z - 0.25, ... ; running minimum -0.5 from t = 1 on
    excursions = [0.0, 0.0, z - 0.25, 2 * (z - 0.25), 3 * (z - 0.25)]
    assert score.statistic == pytest.approx(excursions[-1])
    assert score.details["alarm_at"] == 3  # 2 (z - 0.25) = 1.49 is the first above 1.4
    assert score.details["direction"] == "up"
    assert score.drifted and score.p_value is None


def test_one_outlier_does_not_raise_an_alarm():
    rng = np.random.default_rng(3)
    ph = PageHinkley().fit(numeric(rng.lognormal(size=5_000)))
    stream = rng.lognormal(size=1_000)
    stream[500] = 1e6
    assert not ph.score(numeric(stream)).drifted


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
