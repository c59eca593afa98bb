"""chi2: a two-sample contingency test that agrees with scipy.stats.chi2_contingency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.stats.contingency import association

from mlwarden.plugins.drift.chi2 import ChiSquare
from mlwarden.types import FeatureData


def cats(names, counts) -> FeatureData:
    return FeatureData("c", "categorical", categories=tuple(names), counts=np.asarray(counts))


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_chi2_contingency(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 12))
    ref = rng.integers(1, 5_000, k)
    cur = rng.integers(1, 2_000, k)
    names = [f"k{i}" for i in range(k)]
    score = ChiSquare().fit(cats(names, ref)).score(cats(names, cur))
    theirs = stats.chi2_contingency(np.vstack([ref, cur]))
    assert score.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert score.p_value == pytest.approx(theirs.pvalue, rel=1e-12, abs=1e-300)
    assert score.details["dof"] == k - 1
    # Cramér's V of the table with both rows brought to one total (cross-multiplied,
    # so it stays an integer table as scipy's association wants).
    balanced = np.vstack([ref * cur.sum(), cur * ref.sum()])
    v = association(balanced, method="cramer")
    assert score.details["cramers_v"] == pytest.approx(v, rel=1e-9)
    assert score.drifted == (theirs.pvalue < 0.05 and v >= 0.05)


@pytest.mark.parametrize("seed", range(3))
def test_cramers_v_is_scipy_s_association_on_equal_sized_tables(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 8))
    ref = rng.multinomial(20_000, rng.dirichlet(np.ones(k)))
    cur = rng.multinomial(20_000, rng.dirichlet(np.ones(k)))
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    names = [f"k{i}" for i in range(ref.size)]
    score = ChiSquare().fit(cats(names, ref)).score(cats(names, cur))
    table = np.vstack([ref, cur])
    assert score.details["cramers_v"] == pytest.approx(association(table), rel=1e-9)


def test_unseen_and_missing_categories_are_columns_of_the_table():
    ref = cats(["a", "b", "c"], [500, 300, 200])
    cur = cats(["b", "a", "new", "c"], [300, 480, 30, 0])
    score = ChiSquare().fit(ref).score(cur)
    table = np.array([[500, 300, 200, 0], [480, 300, 0, 30]])
    theirs = stats.chi2_contingency(table)
    assert score.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert score.p_value == pytest.approx(theirs.pvalue, rel=1e-12)
    assert score.details["unseen"] == ["new"]
    assert score.drifted


def test_two_categories_use_yates_like_scipy_unless_disabled():
    ref, cur = cats("ab", [120, 80]), cats("ab", [95, 105])
    corrected = ChiSquare().fit(ref).score(cur)
    plain = ChiSquare(correction=False).fit(ref).score(cur)
    table = np.array([[120, 80], [95, 105]])
    assert corrected.p_value == pytest.approx(stats.chi2_contingency(table).pvalue, rel=1e-12)
    assert plain.p_value == pytest.approx(
        stats.chi2_contingency(table, correction=False).pvalue, rel=1e-12
    )
    assert plain.p_value < corrected.p_value


def test_counts_from_a_sample_when_the_profile_has_none():
    ref = FeatureData("c", "categorical", sample=np.array(["a"] * 60 + ["b"] * 40 + [None]))
    cur = FeatureData("c", "categorical", sample=np.array(["a"] * 30 + ["b"] * 70, dtype=object))
    score = ChiSquare().fit(ref).score(cur)
    assert score.p_value == pytest.approx(
        stats.chi2_contingency(np.array([[60, 40], [30, 70]])).pvalue, rel=1e-12
    )


def test_min_effect_keeps_significant_but_tiny_differences_quiet():
    # 10M rows: a 0.2-point share change is hugely "significant", Cramér's V ~ 0.002
    ref = cats("ab", [5_000_000, 5_000_000])
    cur = cats("ab", [5_020_000, 4_980_000])
    assert ChiSquare(min_effect=0).fit(ref).score(cur).drifted
    quiet = ChiSquare(min_effect=0.05).fit(ref).score(cur)
    assert quiet.p_value < 1e-9 and not quiet.drifted
    table = np.array([[5_000_000, 5_000_000], [5_020_000, 4_980_000]])
    assert quiet.details["cramers_v"] == pytest.approx(association(table), rel=1e-9)


def test_a_million_row_window_drifts_only_when_the_shift_is_big_enough():
    """The issue's acceptance test: 1M rows, negligible vs real shift, default options."""
    rng = np.random.default_rng(2026)
    shares = np.array([0.40, 0.25, 0.20, 0.10, 0.05])
    names = [f"k{i}" for i in range(shares.size)]
    ref = rng.multinomial(1_000_000, shares)
    chi2 = ChiSquare().fit(cats(names, ref))
    # Negligible: 0.7 points move from the first category to the second.
    tiny = rng.multinomial(1_000_000, shares + np.array([-0.007, 0.007, 0, 0, 0]))
    table = np.vstack([ref, tiny])
    assert association(table) < 0.01
    score = chi2.score(cats(names, tiny))
    assert score.p_value < 1e-3  # significant ...
    assert not score.drifted  # ... and too small to matter
    assert score.details["cramers_v"] == pytest.approx(association(table), rel=1e-9)
    # Real: ten points move.
    real = rng.multinomial(1_000_000, shares + np.array([-0.10, 0, 0, 0, 0.10]))
    score = chi2.score(cats(names, real))
    assert association(np.vstack([ref, real])) > 0.1
    assert score.drifted


def test_single_shared_category_cannot_drift():
    score = ChiSquare().fit(cats("a", [10])).score(cats("a", [99]))
    assert (score.statistic, score.p_value, score.drifted) == (0.0, 1.0, False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cats("ab", [1]), "2 categories and 1 counts"),
        (cats("ab", [1, -1]), "finite and non-negative"),
        (cats("ab", [0, 0]), "is empty"),
        (FeatureData("c", "categorical"), "needs category counts or a sample"),
    ],
)
def test_bad_reference_counts(data, message):
    with pytest.raises(ValueError, match=message):
        ChiSquare().fit(data)


@pytest.mark.parametrize(
    "options", [{"threshold": 1}, {"correction": 1}, {"min_effect": 2.0}, {"min_effect": None}]
)
def test_bad_options(options):
    with pytest.raises(ValueError, match=f'drift method "chi2": option "{next(iter(options))}"'):
        ChiSquare(**options)


def test_the_direct_computation_is_chi2_contingency_bit_for_bit():
    from mlwarden.plugins.drift.chi2 import chi2_homogeneity

    rng = np.random.default_rng(17)
    for _ in range(300):
        k = int(rng.integers(2, 12))
        table = rng.integers(1, int(rng.choice([10, 1000, 10**7])), size=(2, k)).astype(float)
        for correction in (True, False):
            theirs = stats.chi2_contingency(table, correction=correction)
            assert chi2_homogeneity(table, correction=correction) == (
                theirs.statistic,
                theirs.pvalue,
                theirs.dof,
            )
