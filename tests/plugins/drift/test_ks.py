"""ks: statistic identical to scipy's ks_2samp, p-values within 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from mlwarden.plugins.drift.ks import KolmogorovSmirnov
from mlwarden.stats import kolmogorov
from mlwarden.stats.kolmogorov import (
    SortedReference,
    durbin_cdf,
    kolmogorov_sf,
    ks_statistic,
    pelz_good_cdf,
    smirnov_sf,
)
from mlwarden.types import FeatureData

RTOL = 1e-9


def numeric(values, name="x") -> FeatureData:
    return FeatureData(name, "numeric", sample=np.asarray(values))


def close(ours: float, theirs: float) -> bool:
    if theirs < 1e-300:  # subnormal: scipy itself has only a few bits left
        return abs(ours - theirs) <= 1e-305
    return abs(ours - theirs) <= RTOL * theirs


@pytest.mark.parametrize("seed", range(6))
def test_asymptotic_path_matches_scipy_statistic_exactly_and_p_value_to_1e9(seed):
    rng = np.random.default_rng(seed)
    n1, n2 = int(rng.integers(10_001, 40_000)), int(rng.integers(2_000, 20_000))
    shift = [0.0, 0.01, 0.03, 0.05, 0.08, 0.2][seed]
    ref, cur = rng.normal(size=n1), rng.normal(shift, 1.0, size=n2)
    if seed % 2:  # ties inside and across the samples
        ref, cur = np.round(ref, 2), np.round(cur, 2)
    ks = KolmogorovSmirnov().fit(numeric(ref))
    ours = ks.score(numeric(cur))
    theirs = stats.ks_2samp(ref, cur)
    assert ours.statistic == theirs.statistic
    assert close(ours.p_value, theirs.pvalue), (ours.p_value, theirs.pvalue)
    assert ours.details["p_value_method"] == "asymp"
    assert type(ours.p_value) is float


@pytest.mark.parametrize("sizes", [(50, 50), (200, 137), (500, 499)])
def test_auto_is_exact_up_to_500_values_per_side(sizes):
    rng = np.random.default_rng(sum(sizes))
    ref, cur = rng.normal(size=sizes[0]), rng.normal(0.1, 1.0, size=sizes[1])
    score = KolmogorovSmirnov().fit(numeric(ref)).score(numeric(cur))
    theirs = stats.ks_2samp(ref, cur)  # scipy's auto is exact here too
    assert score.statistic == theirs.statistic
    assert close(score.p_value, theirs.pvalue)
    assert score.details["p_value_method"] == "exact"


@pytest.mark.parametrize("sizes", [(501, 400), (3000, 800), (10_000, 9_999)])
def test_auto_is_asymptotic_above_500_and_exact_on_request(sizes):
    rng = np.random.default_rng(sum(sizes))
    ref, cur = rng.normal(size=sizes[0]), rng.normal(0.05, 1.0, size=sizes[1])
    auto = KolmogorovSmirnov().fit(numeric(ref)).score(numeric(cur))
    asymp = stats.ks_2samp(ref, cur, method="asymp")
    assert auto.details["p_value_method"] == "asymp"
    assert auto.statistic == asymp.statistic and close(auto.p_value, asymp.pvalue)
    exact = KolmogorovSmirnov(method="exact").fit(numeric(ref)).score(numeric(cur))
    assert exact.details["p_value_method"] == "exact"
    assert close(exact.p_value, stats.ks_2samp(ref, cur, method="exact").pvalue)


def test_asymp_option_forces_the_asymptotic_p_value_on_small_samples():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=400), rng.normal(0.2, 1.0, size=300)
    score = KolmogorovSmirnov(method="asymp").fit(numeric(ref)).score(numeric(cur))
    theirs = stats.ks_2samp(ref, cur, method="asymp")
    assert score.statistic == theirs.statistic
    assert close(score.p_value, theirs.pvalue)


def test_statistic_is_bit_identical_on_heavy_ties_and_disjoint_samples():
    rng = np.random.default_rng(11)
    for ref, cur in [
        (rng.integers(0, 5, 20_000).astype(float), rng.integers(0, 6, 15_000).astype(float)),
        (rng.normal(size=12_000), rng.normal(size=11_000) + 100.0),
        (rng.normal(size=12_000), rng.normal(size=11_000) - 100.0),
        (np.ones(10), np.ones(7)),
    ]:
        assert ks_statistic(np.sort(ref), cur) == stats.ks_2samp(ref, cur).statistic


@pytest.mark.parametrize("direct_size", [0, 1_000_000])
@pytest.mark.parametrize("stride", [1, 2, 7, 64, None])
def test_indexed_statistic_is_scipys_for_every_index_stride(stride, direct_size, monkeypatch):
    # The per-bin bounds may only skip bins that cannot hold the supremum: on ties,
    # rounded values, disjoint and shifted samples of every size the statistic must be
    # bit-identical to scipy's, whatever the spacing of the index edges, with the
    # bounds (direct_size 0) and with every value looked up.
    monkeypatch.setattr(kolmogorov, "DIRECT_SIZE", direct_size)
    rng = np.random.default_rng(2026)
    for trial in range(150):
        n1, n2 = int(rng.integers(1, 2500)), int(rng.integers(1, 2500))
        ref, cur = [
            (rng.normal(size=n1), rng.normal(rng.uniform(-0.3, 0.3), size=n2)),
            (rng.integers(0, 20, n1).astype(float), rng.integers(0, 22, n2).astype(float)),
            (rng.normal(size=n1).round(1), rng.normal(0.1, size=n2).round(2)),
            (rng.exponential(size=n1), rng.exponential(1.2, size=n2)),
            (rng.normal(size=n1), rng.normal(size=n2) + rng.choice([-100.0, 100.0])),
        ][trial % 5]
        expected = stats.ks_2samp(ref, cur, method="asymp").statistic
        assert ks_statistic(SortedReference(ref, stride=stride), cur) == expected, trial


def test_indexed_statistic_on_large_samples_with_a_small_shift():
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=200_000), rng.normal(0.01, size=50_000)
    index = SortedReference(ref)
    assert index.edges.size < ref.size // 50  # a coarse index, not a copy
    assert ks_statistic(index, cur) == stats.ks_2samp(ref, cur).statistic


@pytest.mark.parametrize(
    ("n", "z"),
    [(141, 1.5), (900, 2.0), (4_000, 3.0), (20_000, 5.5), (40_000, 1.49), (40_000, 8.0),
     (120_000, 12.0), (166_667, 2.5), (166_667, 19.0), (3_000, 27.0)],
)  # fmt: skip
def test_smirnov_sum_matches_scipy_special(n, z):
    x = z / np.sqrt(n)
    assert close(smirnov_sf(n, x), float(special.smirnov(n, x)))
    assert close(kolmogorov_sf(x, n), float(stats.kstwo.sf(x, n)))


def test_kolmogorov_sf_on_random_sizes_and_statistics():
    rng = np.random.default_rng(2026)
    for _ in range(25):
        n = int(np.exp(rng.uniform(np.log(150), np.log(60_000))))
        d = float(rng.uniform(0.5, 16.0) / np.sqrt(n))
        assert close(kolmogorov_sf(d, n), float(stats.kstwo.sf(d, n))), (n, d)


def test_nan_and_inf_are_left_out_of_the_test():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=300), rng.normal(size=200)
    dirty = np.concatenate([cur, [np.nan, np.inf, -np.inf]])
    ks = KolmogorovSmirnov().fit(numeric(np.append(ref, np.nan)))
    assert ks.score(numeric(dirty)).to_dict() == ks.score(numeric(cur)).to_dict()


def test_needs_a_sample():
    ks = KolmogorovSmirnov()
    with pytest.raises(ValueError, match=r'"ks" needs a sample of feature "x"'):
        ks.fit(FeatureData("x", "numeric", bin_edges=np.array([0.0]), counts=np.array([1, 2])))
    with pytest.raises(ValueError, match="at least 1 finite"):
        ks.fit(numeric([np.nan]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold": 0}, 'option "threshold" must be a number in \\(0, 1\\)'),
        ({"threshold": 1.5}, 'option "threshold"'),
        ({"threshold": "0.05"}, 'option "threshold"'),
        ({"method": "fast"}, "option \"method\" must be one of 'auto', 'exact', 'asymp'"),
    ],
)
def test_bad_options_name_the_method_and_option(options, message):
    with pytest.raises(ValueError, match=f'drift method "ks": {message}'):
        KolmogorovSmirnov(**options)


def test_pelz_good_branch_matches_scipy():
    # kstwo.sf of an insignificant statistic (n > 140, n d^2 < 2.2): 1 - Pelz-Good's CDF.
    rng = np.random.default_rng(41)
    for _ in range(300):
        n = int(rng.integers(141, 1_000_000))
        d = float(rng.uniform(0.3, 1.48) / np.sqrt(n))
        if n <= 100_000 and n * d**1.5 <= 1.4:
            continue  # scipy's Durbin-matrix branch: test_durbin_branch_matches_scipy
        assert close(kolmogorov_sf(d, n), float(stats.kstwo.sf(d, n))), (n, d)
        assert pelz_good_cdf(n, d) == pytest.approx(1.0 - float(stats.kstwo.sf(d, n)), rel=1e-12)


def test_durbin_branch_matches_scipy():
    # The smallest statistics (n <= 100,000 and n d^1.5 <= 1.4): the exact CDF by
    # Durbin's matrix, down to CDFs of 1e-200 and below, and the p-value 1 - CDF.
    rng = np.random.default_rng(43)
    checked = 0
    for _ in range(100):
        n = int(np.exp(rng.uniform(np.log(141), np.log(100_000))))
        d = float(rng.uniform(1.0 / n, (1.4 / n) ** (2 / 3)))
        if n * d <= 1.0:
            continue  # Ruben-Gambino: test_every_branch_above_140_matches_scipy
        assert close(durbin_cdf(n, d), float(stats.kstwo.cdf(d, n))), (n, d)
        assert close(kolmogorov_sf(d, n), float(stats.kstwo.sf(d, n))), (n, d)
        checked += 1
    assert checked > 60


@pytest.mark.parametrize(
    ("n", "d"),
    [
        (141, 0.0), (5_000, -0.1), (5_000, 1.0), (5_000, 1.5),  # outside (0, 1)
        (5_000, 0.4 / 5_000), (5_000, 0.5 / 5_000),  # n d <= 1/2: P = 1
        (5_000, 0.75 / 5_000), (150, 0.999 / 150), (99_999, 1.0 / 99_999),  # n d <= 1
        (200, 199.2 / 200), (3_000, 2_999.5 / 3_000),  # n d >= n - 1
        (2_000, 0.45), (2_000, 0.6), (400, 0.5),  # d >= 0.5: Smirnov
        (4_000, np.sqrt(370.0 / 4_000)), (4_000, np.sqrt(400.0 / 4_000)),  # p = 0
        (4_000, np.sqrt(2.2 / 4_000)), (4_000, np.sqrt(2.19 / 4_000)),  # either side of 2.2
        (100_000, (1.4 / 100_000) ** (2 / 3)), (100_001, (1.4 / 100_001) ** (2 / 3)),
        (2_000_000, 0.0005), (2_000_000, 0.003),  # beyond Smirnov's exact sum
    ],
)  # fmt: skip
def test_every_branch_above_140_matches_scipy(n, d):
    assert close(kolmogorov_sf(d, n), float(stats.kstwo.sf(d, n)))


def test_min_effect_needs_a_gap_that_matters_on_large_samples():
    rng = np.random.default_rng(11)
    ref = FeatureData("x", "numeric", sample=rng.normal(size=200_000))
    cur = FeatureData("x", "numeric", sample=rng.normal(0.03, size=200_000))
    theirs = stats.ks_2samp(ref.sample, cur.sample)
    assert theirs.pvalue < 1e-6 and theirs.statistic < 0.03  # significant, negligible
    score = KolmogorovSmirnov().fit(ref).score(cur)
    assert score.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert not score.drifted
    assert KolmogorovSmirnov(min_effect=0).fit(ref).score(cur).drifted
    shifted = FeatureData("x", "numeric", sample=rng.normal(0.2, size=200_000))
    assert KolmogorovSmirnov().fit(ref).score(shifted).drifted


@pytest.mark.parametrize("value", [-0.1, 1.5, None, True])
def test_bad_min_effect(value):
    with pytest.raises(ValueError, match='drift method "ks": option "min_effect"'):
        KolmogorovSmirnov(min_effect=value)
