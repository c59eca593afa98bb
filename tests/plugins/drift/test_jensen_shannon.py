"""jensen_shannon: hand-computed tables, scipy's jensenshannon, bins and categories."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from mlwarden.plugins.drift.jensen_shannon import JensenShannon
from mlwarden.types import FeatureData


def cats(names, counts) -> FeatureData:
    return FeatureData("c", "categorical", categories=tuple(names), counts=np.asarray(counts))


def test_hand_computed_table():
    # P = (1/2, 1/2, 0), Q = (0, 1/2, 1/2), M = (1/4, 1/2, 1/4)
    # KL(P||M) = 1/2 log2 2 + 1/2 log2 1 = 1/2 = KL(Q||M); JSD = 1/2; distance = sqrt(1/2)
    score = JensenShannon().fit(cats("ab", [5, 5])).score(cats("bc", [5, 5]))
    assert score.statistic == pytest.approx(math.sqrt(0.5), rel=1e-12)
    assert score.details["unseen"] == ["c"]
    assert score.drifted


def test_identical_and_disjoint_distributions_are_zero_and_one():
    js = JensenShannon().fit(cats("ab", [3, 7]))
    assert js.score(cats("ba", [70, 30])).statistic == pytest.approx(0.0, abs=1e-12)
    assert js.score(cats("xy", [1, 1])).statistic == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_scipy_on_categories(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 15))
    ref, cur = rng.integers(0, 500, k), rng.integers(0, 500, k)
    ref[0], cur[-1] = 0, 0  # an empty category on each side
    names = [str(i) for i in range(k)]
    score = JensenShannon().fit(cats(names, ref)).score(cats(names, cur))
    assert score.statistic == pytest.approx(jensenshannon(ref, cur, base=2), rel=1e-10)


def test_numeric_on_merged_quantile_bins_agrees_with_scipy():
    edges = np.arange(1.0, 100.0)  # 99 edges, 100 counts
    ref = np.r_[np.full(50, 10), np.full(50, 30)]
    cur = np.r_[np.full(50, 20), np.full(50, 20)]
    score = (
        JensenShannon(bins=4)
        .fit(FeatureData("x", "numeric", bin_edges=edges, counts=ref))
        .score(FeatureData("x", "numeric", bin_edges=edges, counts=cur))
    )
    # reference mass quarters: bins 0-49 hold 1/4, then 50-66, 67-83, 84-99
    r = np.array([500, 510, 510, 480])
    c = np.array([1000, 340, 340, 320])
    assert score.details["bins"] == 4
    assert score.statistic == pytest.approx(jensenshannon(r, c, base=2), rel=1e-10)


def test_numeric_from_samples():
    rng = np.random.default_rng(0)
    js = JensenShannon().fit(FeatureData("x", "numeric", sample=rng.normal(size=4_000)))
    same = js.score(FeatureData("x", "numeric", sample=rng.normal(size=4_000)))
    moved = js.score(FeatureData("x", "numeric", sample=rng.normal(1.0, 1.0, size=4_000)))
    assert not same.drifted and moved.drifted


@pytest.mark.parametrize("options", [{"threshold": 1.5}, {"bins": 1}, {"threshold": 0.0}])
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'"jensen_shannon": option "{next(iter(options))}"'):
        JensenShannon(**options)
