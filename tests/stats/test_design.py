"""SRM, Holm, power and sample size, CUPED: against definitions and simulations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from mlwarden.stats import cuped_adjust, holm, power_report, srm_check, welch_summary


def test_srm_flags_a_45_55_split_under_50_50():
    check = srm_check(4500, 5500, 0.5)
    assert check.mismatch
    ref = stats.chisquare([4500, 5500], [5000, 5000])
    assert check.chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert check.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_srm_accepts_a_fair_split_and_an_uneven_configured_one():
    assert not srm_check(5030, 4970, 0.5).mismatch
    assert not srm_check(9010, 990, 0.1).mismatch
    assert srm_check(9010, 990, 0.5).mismatch
    assert not srm_check(0, 0, 0.5).mismatch
    with pytest.raises(ValueError, match="weight of arm B"):
        srm_check(1, 1, 1.0)


def holm_by_definition(p):
    """Adjusted p_i = max over the ordered prefix of min(1, (m - j) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_its_definition():
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 7):
        p = rng.random(m) ** 3
        assert holm(p).tolist() == pytest.approx(holm_by_definition(p.tolist()), rel=1e-12)
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]).size == 0


def test_holm_controls_family_wise_error_under_the_global_null():
    rng = np.random.default_rng(1)
    p = rng.random((20_000, 3))
    adjusted = np.apply_along_axis(holm, 1, p)
    fwer = np.mean((adjusted <= 0.05).any(axis=1))
    assert fwer <= 0.05 + 0.005
    assert np.mean((p <= 0.05).any(axis=1)) > 0.13  # uncorrected: ~1 - 0.95^3


def test_fixed_power_and_sample_size_match_simulation():
    alpha, effect, n_per_arm = 0.05, 0.06, 2500
    report = power_report(
        n=2 * n_per_arm,
        var_a=1.0,
        var_b=1.0,
        weight_b=0.5,
        effect=effect,
        relative_mde=0.06,
        alpha=alpha,
    )
    rng = np.random.default_rng(2)
    reps = 4000
    ma = rng.normal(0.0, 1.0, (reps, n_per_arm)).mean(1)
    mb = rng.normal(effect, 1.0, (reps, n_per_arm)).mean(1)
    _, _, p, _, _ = welch_summary(n_per_arm, ma, 1.0, n_per_arm, mb, 1.0)
    empirical = np.mean(p <= alpha)
    assert report.power == pytest.approx(empirical, abs=0.03)
    # N = (z_{.975} + z_{.8})^2 * (1/.5 + 1/.5) / 0.06^2
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 * 4 / effect**2
    assert report.required_samples == int(np.ceil(expected))
    assert report.required_samples_per_arm == (int(np.ceil(expected / 2)),) * 2
    at_required = power_report(
        n=report.required_samples,
        var_a=1,
        var_b=1,
        weight_b=0.5,
        effect=effect,
        relative_mde=0.06,
        alpha=alpha,
    )
    assert at_required.power == pytest.approx(0.8, abs=0.002)


def test_sequential_sample_size_is_larger_and_consistent():
    kw = dict(var_a=1.0, var_b=1.0, weight_b=0.5, effect=0.06, relative_mde=0.06, alpha=0.05)
    fixed = power_report(n=5000, **kw)
    seq = power_report(n=5000, sequential=True, tuning_samples=10_000, **kw)
    assert seq.required_samples > fixed.required_samples
    assert seq.power < fixed.power
    at = power_report(n=seq.required_samples, sequential=True, tuning_samples=10_000, **kw)
    below = power_report(n=seq.required_samples - 1, sequential=True, tuning_samples=10_000, **kw)
    assert below.power < 0.8 <= at.power
    assert power_report(n=10, effect=0.0, **{k: v for k, v in kw.items() if k != "effect"}) is None


def test_cuped_keeps_the_effect_and_cuts_the_variance():
    rng = np.random.default_rng(4)
    estimates, adjusted_estimates = [], []
    for _ in range(200):
        xa, xb = rng.normal(0, 1, 500), rng.normal(0, 1, 500)
        ya = 2 * xa + rng.normal(0, 1, 500)
        yb = 2 * xb + 0.1 + rng.normal(0, 1, 500)
        adj_a, adj_b, theta = cuped_adjust(ya, xa, yb, xb)
        assert theta == pytest.approx(2.0, abs=0.2)
        estimates.append(yb.mean() - ya.mean())
        adjusted_estimates.append(adj_b.mean() - adj_a.mean())
    assert np.mean(adjusted_estimates) == pytest.approx(0.1, abs=0.01)
    # Var(y) = 5, Var(y | x) = 1: CUPED should remove ~80% of the variance.
    assert np.var(adjusted_estimates) < 0.3 * np.var(estimates)
    with pytest.raises(ValueError, match="one covariate value per metric value"):
        cuped_adjust([1.0, 2.0], [1.0], [1.0], [1.0])


def test_holm_is_order_invariant():
    p = [0.2, 0.01, 0.03]
    for perm in itertools.permutations(range(3)):
        permuted = [p[i] for i in perm]
        assert holm(permuted).tolist() == [holm(p).tolist()[i] for i in perm]
