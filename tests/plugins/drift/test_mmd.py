"""mmd: the unbiased statistic against a direct computation, seeded permutation test."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.plugins.drift.mmd import MaximumMeanDiscrepancy
from mlwarden.types import FeatureData


def rows(values) -> FeatureData:
    return FeatureData("m", "multivariate", sample=np.asarray(values), columns=("a", "b"))


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.vstack([x, y])
    d2 = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    width2 = np.median(d2[np.triu_indices(len(pooled), 1)])
    k = np.exp(-d2 / (2 * width2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_statistic_is_the_unbiased_mmd2_of_standardised_rows():
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -1.0], [2.0, 0.5], size=(80, 2))
    y = rng.normal([5.5, -1.0], [2.0, 0.5], size=(60, 2))
    score = MaximumMeanDiscrepancy().fit(rows(x)).score(rows(y))
    centre, spread = x.mean(axis=0), x.std(axis=0)
    expected = direct_mmd2((x - centre) / spread, (y - centre) / spread)
    assert score.statistic == pytest.approx(expected, rel=1e-9)
    assert score.details["rows"] == [80, 60]


def test_permutation_p_value_is_seeded_and_bounded():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    a = MaximumMeanDiscrepancy(permutations=50, seed=3).fit(rows(x)).score(rows(y))
    b = MaximumMeanDiscrepancy(permutations=50, seed=3).fit(rows(x)).score(rows(y))
    assert a == b
    assert 1 / 51 <= a.p_value <= 1.0
    shifted = MaximumMeanDiscrepancy(permutations=50).fit(rows(x)).score(rows(y + 1.0))
    assert shifted.p_value == pytest.approx(1 / 51) and shifted.drifted


def test_rows_are_capped_at_max_rows_and_nan_rows_dropped():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3_000, 2))
    y = rng.normal(size=(2_000, 2))
    y[::2, 1] = np.nan
    score = MaximumMeanDiscrepancy(max_rows=300).fit(rows(x)).score(rows(y))
    assert score.details["rows"] == [300, 300]


def test_column_mismatch_is_refused():
    mmd = MaximumMeanDiscrepancy().fit(rows(np.zeros((10, 2)) + np.arange(10)[:, None]))
    with pytest.raises(ValueError, match='"m" has 3 columns, the reference 2'):
        mmd.score(FeatureData("m", "multivariate", sample=np.ones((10, 3))))


@pytest.mark.parametrize(
    "options", [{"permutations": 5}, {"max_rows": 1}, {"seed": -1}, {"threshold": 2}]
)
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'"mmd": option "{next(iter(options))}"'):
        MaximumMeanDiscrepancy(**options)
