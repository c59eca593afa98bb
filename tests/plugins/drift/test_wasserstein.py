"""wasserstein: scipy's distance, divided by the reference spread."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlwarden.plugins.drift.wasserstein import Wasserstein
from mlwarden.types import FeatureData


def numeric(values) -> FeatureData:
    return FeatureData("x", "numeric", sample=np.asarray(values, dtype=float))


@pytest.mark.parametrize("seed", range(4))
def test_matches_scipy_wasserstein_distance_over_reference_std(seed):
    rng = np.random.default_rng(seed)
    ref = rng.gamma(2.0, 3.0, size=int(rng.integers(50, 5_000)))
    cur = rng.gamma(2.0, 3.5, size=int(rng.integers(50, 5_000)))
    if seed % 2:
        ref, cur = np.round(ref), np.round(cur)  # ties
    score = Wasserstein().fit(numeric(ref)).score(numeric(cur))
    distance = stats.wasserstein_distance(ref, cur)
    assert score.details["distance"] == pytest.approx(distance, rel=1e-12)
    assert score.statistic == pytest.approx(distance / np.std(ref, ddof=1), rel=1e-12)
    assert score.p_value is None


def test_iqr_scale_and_a_mean_shift_reads_in_sd_units():
    rng = np.random.default_rng(1)
    ref = rng.normal(100.0, 20.0, size=20_000)
    cur = ref + 6.0  # exactly 0.3 sd shifted
    std = Wasserstein().fit(numeric(ref)).score(numeric(cur))
    assert std.statistic == pytest.approx(6.0 / np.std(ref, ddof=1), rel=1e-9)
    assert std.drifted
    iqr = Wasserstein(scale="iqr").fit(numeric(ref)).score(numeric(cur))
    q1, q3 = np.quantile(ref, [0.25, 0.75])
    assert iqr.statistic == pytest.approx(6.0 / (q3 - q1), rel=1e-9)


def test_constant_reference_is_not_divided():
    score = Wasserstein().fit(numeric([3.0] * 10)).score(numeric([3.0] * 5 + [4.0] * 5))
    assert score.details["scale"] == 1.0
    assert score.statistic == pytest.approx(0.5)


@pytest.mark.parametrize("options", [{"threshold": 0}, {"scale": "mad"}, {"threshold": True}])
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'"wasserstein": option "{next(iter(options))}"'):
        Wasserstein(**options)
