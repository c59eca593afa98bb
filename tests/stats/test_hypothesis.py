"""Fixed-horizon tests agree with scipy (and with the z-test computed by hand) to 1e-9."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mlwarden.stats import compare, mann_whitney, welch, welch_summary, z_test

TOL = 1e-9


@pytest.mark.parametrize(
    ("n_a", "n_b", "shift", "scale_b", "confidence"),
    [(50, 80, 0.3, 2.0, 0.95), (1000, 700, 0.0, 1.0, 0.9), (7, 5, -1.5, 0.3, 0.99)],
)
def test_welch_agrees_with_scipy(n_a, n_b, shift, scale_b, confidence):
    rng = np.random.default_rng(n_a + n_b)
    a = rng.normal(10.0, 1.0, n_a)
    b = rng.normal(10.0 + shift, scale_b, n_b)
    ours = welch(a, b, confidence)
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(confidence)
    assert ours.statistic == pytest.approx(ref.statistic, rel=TOL, abs=TOL)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=TOL, abs=TOL)
    assert ours.df == pytest.approx(ref.df, rel=TOL)
    assert ours.interval[0] == pytest.approx(ci.low, rel=TOL, abs=TOL)
    assert ours.interval[1] == pytest.approx(ci.high, rel=TOL, abs=TOL)
    assert ours.estimate == pytest.approx(b.mean() - a.mean(), rel=TOL)
    assert ours.lift == pytest.approx((b.mean() - a.mean()) / abs(a.mean()), rel=TOL)
    assert ours.lift_interval[0] < ours.lift < ours.lift_interval[1]


def test_welch_summary_broadcasts_like_the_scalar_call():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (20, 30)), rng.normal(0.2, 2, (20, 40))
    t, df, p, lo, hi = welch_summary(
        30, a.mean(1), a.var(1, ddof=1), 40, b.mean(1), b.var(1, ddof=1)
    )
    for i in range(20):
        ref = stats.ttest_ind(b[i], a[i], equal_var=False)
        assert p[i] == pytest.approx(ref.pvalue, rel=TOL, abs=TOL)
        assert t[i] == pytest.approx(ref.statistic, rel=TOL)
        assert df[i] == pytest.approx(ref.df, rel=TOL)
        ci = ref.confidence_interval(0.95)
        assert (lo[i], hi[i]) == pytest.approx((ci.low, ci.high), rel=TOL, abs=TOL)


def test_welch_degenerate_zero_variance():
    same = welch([1.0, 1.0, 1.0], [1.0, 1.0])
    assert same.p_value == 1.0 and same.interval == (0.0, 0.0)
    differ = welch([1.0, 1.0, 1.0], [2.0, 2.0])
    assert differ.p_value == 0.0 and differ.estimate == 1.0


def z_by_hand(a, b, confidence):
    xa, xb, na, nb = sum(a), sum(b), len(a), len(b)
    pa, pb = xa / na, xb / nb
    pooled = (xa + xb) / (na + nb)
    z = (pb - pa) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p = math.erfc(abs(z) / math.sqrt(2))
    q = stats.norm.ppf(1 - (1 - confidence) / 2)
    half = q * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    return z, p, (pb - pa - half, pb - pa + half)


@pytest.mark.parametrize(("n_a", "n_b", "p_a", "p_b"), [(500, 600, 0.3, 0.35), (80, 90, 0.9, 0.8)])
def test_z_test_agrees_with_the_formula_and_chi_square(n_a, n_b, p_a, p_b):
    rng = np.random.default_rng(n_a)
    a = (rng.random(n_a) < p_a).astype(int)
    b = (rng.random(n_b) < p_b).astype(int)
    ours = z_test(a, b, 0.95)
    z, p, (lo, hi) = z_by_hand(a.tolist(), b.tolist(), 0.95)
    assert ours.statistic == pytest.approx(z, rel=TOL)
    assert ours.p_value == pytest.approx(p, rel=TOL, abs=TOL)
    assert ours.interval == pytest.approx((lo, hi), rel=TOL)
    # The pooled z-test is the 2x2 chi-square test without continuity correction.
    table = [[a.sum(), n_a - a.sum()], [b.sum(), n_b - b.sum()]]
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    assert ours.statistic**2 == pytest.approx(chi2, rel=TOL)
    assert ours.p_value == pytest.approx(p_chi2, rel=TOL, abs=TOL)


def test_mann_whitney_agrees_with_scipy_and_hodges_lehmann():
    rng = np.random.default_rng(3)
    a, b = rng.exponential(1.0, 60), rng.exponential(1.0, 70) + 0.5
    ours = mann_whitney(a, b)
    ref = stats.mannwhitneyu(b, a, alternative="two-sided")
    assert ours.p_value == pytest.approx(ref.pvalue, rel=TOL, abs=TOL)
    assert ours.statistic == ref.statistic
    assert ours.estimate == pytest.approx(np.median(b[None, :] - a[:, None]), rel=TOL)
    assert ours.interval[0] < 0.5 < ours.interval[1]


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="arm B: values must be finite"):
        welch([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(ValueError, match=">= 2 values per arm"):
        welch([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="arm A: the z-test needs 0/1"):
        z_test([0, 2], [0, 1])
    with pytest.raises(ValueError, match="unknown test 'bogus'"):
        compare("bogus", [1, 2], [1, 2])
    with pytest.raises(ValueError, match="confidence level"):
        welch([1.0, 2.0], [1.0, 3.0], confidence=1.5)
