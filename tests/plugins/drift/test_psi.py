"""psi: hand-computed tables, bin merging, the epsilon floor, sample fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlwarden.plugins.drift.psi import PopulationStabilityIndex
from mlwarden.types import FeatureData


def hist(edges, counts) -> FeatureData:
    return FeatureData(
        "x", "numeric", bin_edges=np.asarray(edges, float), counts=np.asarray(counts)
    )


def by_hand(ref, cur, eps=1e-4) -> float:
    r = [max(c / sum(ref), eps) for c in ref]
    q = [max(c / sum(cur), eps) for c in cur]
    return sum((b - a) * math.log(b / a) for a, b in zip(r, q, strict=True))


def test_hand_computed_table():
    # shares 0.1/0.2/0.3/0.4 -> 0.2/0.2/0.2/0.4:
    # (0.2-0.1) ln 2 + 0 + (0.2-0.3) ln(2/3) + 0 = 0.0693147 + 0.0405465 = 0.1098612
    ref, cur = hist([0, 1, 2], [10, 20, 30, 40]), hist([0, 1, 2], [50, 50, 50, 100])
    result = PopulationStabilityIndex().fit(ref).score(cur)
    assert result.statistic == pytest.approx(0.1 * math.log(2) + 0.1 * math.log(1.5), rel=1e-12)
    assert result.statistic == pytest.approx(0.1098612289, rel=1e-9)
    assert result.drifted and result.threshold == 0.1 and result.p_value is None
    assert not PopulationStabilityIndex(threshold=0.11).fit(ref).score(cur).drifted


def test_empty_bin_is_floored_at_epsilon():
    # current bin 0 empty: share 0 -> 1e-4
    ref, cur = [25, 25, 25, 25], [0, 30, 30, 40]
    result = PopulationStabilityIndex().fit(hist([0, 1, 2], ref)).score(hist([0, 1, 2], cur))
    expected = (1e-4 - 0.25) * math.log(1e-4 / 0.25) + 2 * 0.05 * math.log(0.3 / 0.25)
    expected += 0.15 * math.log(0.4 / 0.25)
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.statistic == pytest.approx(by_hand(ref, cur), rel=1e-12)
    assert result.drifted
    other = PopulationStabilityIndex(epsilon=1e-3).fit(hist([0, 1, 2], ref))
    assert other.score(hist([0, 1, 2], cur)).statistic == pytest.approx(by_hand(ref, cur, 1e-3))


def test_fine_profile_bins_are_merged_into_equal_reference_mass():
    # 100 fine bins of 10 rows each (+ empty under/overflow) -> 10 groups of 10 bins
    edges = np.arange(101, dtype=float)
    ref = np.r_[0, np.full(100, 10), 0]
    cur = np.r_[0, np.full(50, 4), np.full(50, 16), 0]  # lower half 0.2, upper half 0.8
    result = PopulationStabilityIndex(bins=10).fit(hist(edges, ref)).score(hist(edges, cur))
    expected = by_hand([100] * 10, [40] * 5 + [160] * 5)
    assert result.details["bins"] == 10
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_sample_only_reference_uses_its_quantile_bins():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5_000)
    cur = rng.normal(1.0, 1.0, size=5_000)
    psi = PopulationStabilityIndex(bins=10).fit(FeatureData("x", "numeric", sample=ref))
    result = psi.score(FeatureData("x", "numeric", sample=cur))
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10)
    assert result.statistic == pytest.approx(by_hand(list(r), list(c)), rel=1e-12)
    assert result.drifted  # a 1 sd shift is a major PSI (~1)


def test_current_on_other_edges_is_rebinned_from_its_sample():
    psi = PopulationStabilityIndex().fit(hist([0.0, 1.0], [1, 2, 1]))
    cur = FeatureData(
        "x", "numeric", sample=np.array([-1.0, 0.5, 0.5, 2.0]),
        bin_edges=np.array([5.0, 6.0]), counts=np.array([4, 0, 0]),
    )  # fmt: skip
    assert psi.score(cur).statistic == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="other edges than the reference and has no sample"):
        psi.score(hist([5.0, 6.0], [4, 0, 0]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (hist([0.0, 1.0], [1, 2]), "has 2 counts for 2 edges"),
        (hist([1.0, 0.0], [1, 2, 1]), "strictly increasing"),
        (hist([0.0, 1.0], [0, 0, 0]), "is empty"),
    ],
)
def test_bad_reference_histograms_are_refused(data, message):
    with pytest.raises(ValueError, match=message):
        PopulationStabilityIndex().fit(data)


@pytest.mark.parametrize(
    "options", [{"threshold": 0}, {"threshold": -1}, {"bins": 1}, {"bins": 2.5}, {"epsilon": 0}]
)
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'drift method "psi": option "{next(iter(options))}"'):
        PopulationStabilityIndex(**options)
