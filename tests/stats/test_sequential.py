"""The sequential mode by simulation: looks after every 100 samples up to 10,000.

Replicates are vectorised: each arm's raw draws are reduced to block sums and sums of
squares, cumulated across looks, and every look of every replicate is tested at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.stats import (
    SequentialState,
    mixture_summary,
    sequential_compare,
    welch_summary,
    z_test_summary,
)

ALPHA = 0.05
LOOKS = 100  # one look per 100 samples (50 per arm), up to 10,000
PER_LOOK = 50
REPLICATES = 2000


def cumulative_looks(rng, mean_b, reps, binary=False):
    """n, mean and variance per arm at each look: arrays of shape (reps, LOOKS)."""
    out = []
    for mean in (0.3 if binary else 0.0, mean_b):
        if binary:
            x = (rng.random((reps, LOOKS, PER_LOOK)) < mean).astype(float)
        else:
            x = rng.normal(mean, 1.0, (reps, LOOKS, PER_LOOK))
        s1 = np.cumsum(x.sum(2), axis=1)
        s2 = np.cumsum((x * x).sum(2), axis=1)
        n = PER_LOOK * np.arange(1, LOOKS + 1)
        m = s1 / n
        var = (s2 - n * m * m) / (n - 1)
        out.append((n, m, var, s1))
    return out


def reject_rates(rng, mean_b, binary=False, tuning=10_000):
    naive = sequential = at_end_fixed = 0
    for _ in range(REPLICATES // 500):
        (n, ma, va, sa), (_, mb, vb, sb) = cumulative_looks(rng, mean_b, 500, binary)
        if binary:
            _, p_naive, _, _ = z_test_summary(sa, n, sb, n)
            var_est = ma * (1 - ma) / n + mb * (1 - mb) / n
        else:
            _, _, p_naive, _, _ = welch_summary(n, ma, va, n, mb, vb)
            var_est = va / n + vb / n
        p_seq, lo, hi = mixture_summary(
            mb - ma, var_est, 2 * n, alpha=ALPHA, tuning_samples=tuning, confidence=1 - ALPHA
        )
        running = np.minimum.accumulate(p_seq, axis=1)
        # The always-valid p-value and the confidence sequence are dual.
        assert np.array_equal(p_seq <= ALPHA, (lo > 0) | (hi < 0))
        naive += int(np.sum((p_naive <= ALPHA).any(axis=1)))
        sequential += int(np.sum(running[:, -1] <= ALPHA))
        at_end_fixed += int(np.sum(p_naive[:, -1] <= ALPHA))
    return naive / REPLICATES, sequential / REPLICATES, at_end_fixed / REPLICATES


# Binomial standard error of a rate near alpha over REPLICATES, times 2.5.
TOLERANCE = 2.5 * np.sqrt(ALPHA * (1 - ALPHA) / REPLICATES)


@pytest.mark.parametrize("binary", [False, True], ids=["continuous", "proportion"])
def test_no_true_difference_sequential_holds_alpha_naive_does_not(binary):
    rng = np.random.default_rng(7 + binary)
    naive, sequential, single_look = reject_rates(rng, 0.3 if binary else 0.0, binary)
    assert sequential <= ALPHA + TOLERANCE, sequential
    assert naive > 2 * ALPHA, naive  # 100 peeks at a fixed-horizon test: ~25-30%
    assert single_look <= ALPHA + TOLERANCE  # one look at the end is fine


def test_true_effect_is_found():
    rng = np.random.default_rng(11)
    _, sequential, _ = reject_rates(rng, 0.1)  # 0.1 sd with 5,000 per arm
    assert sequential >= 0.9


def test_sequential_compare_carries_state_and_matches_the_vectorised_form():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 400), rng.normal(0.05, 1, 400)
    state = SequentialState()
    p_values, widths = [], []
    for k in range(1, 5):
        comparison, state = sequential_compare(
            "welch",
            a[: 100 * k],
            b[: 100 * k],
            alpha=0.05,
            confidence=0.95,
            tuning_samples=1000,
            state=state,
        )
        p_values.append(comparison.p_value)
        widths.append(comparison.interval[1] - comparison.interval[0])
        ma, mb = a[: 100 * k].mean(), b[: 100 * k].mean()
        v = a[: 100 * k].var(ddof=1) / (100 * k) + b[: 100 * k].var(ddof=1) / (100 * k)
        p_now, lo, hi = mixture_summary(
            mb - ma, v, 200 * k, alpha=0.05, tuning_samples=1000, confidence=0.95
        )
        assert comparison.p_value <= p_now + 1e-15
        assert comparison.interval[0] >= lo - 1e-15 and comparison.interval[1] <= hi + 1e-15
    assert state.looks == 4
    assert p_values == sorted(p_values, reverse=True)  # running minimum
    assert widths == sorted(widths, reverse=True)  # running intersection
    assert comparison.method == "welch+msprt"
    restored = SequentialState.from_dict(state.to_dict())
    assert restored == state
    with pytest.raises(ValueError, match="no sequential mode"):
        sequential_compare("mann_whitney", a, b, alpha=0.05, confidence=0.95, tuning_samples=10)


def test_confidence_sequence_is_wider_than_the_fixed_interval():
    p, lo, hi = mixture_summary(0.0, 0.01, 1000, alpha=0.05, tuning_samples=1000, confidence=0.95)
    assert p == 1.0
    assert hi - lo > 2 * 1.96 * 0.1
    p0, lo0, hi0 = mixture_summary(0.0, 0.0, 1000, alpha=0.05, tuning_samples=1000, confidence=0.95)
    assert p0 == 1.0 and np.isinf(lo0) and np.isinf(hi0)
