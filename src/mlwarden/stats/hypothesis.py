"""Fixed-horizon two-sample tests: Welch's t, the two-proportion z-test, Mann-Whitney U.

Every test compares arm B with arm A: the estimate is ``B - A`` (difference of means,
of proportions, or the Hodges-Lehmann shift), with a two-sided p-value, the confidence
interval of the difference and the relative lift ``(B - A) / |A|`` with its
delta-method interval. The ``*_summary`` functions take sufficient statistics and
broadcast over numpy arrays, so simulations evaluate thousands of replicates at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special

__all__ = [
    "Comparison",
    "compare",
    "mann_whitney",
    "relative_lift",
    "welch",
    "welch_summary",
    "z_test",
    "z_test_summary",
]


@dataclass(frozen=True)
class Comparison:
    """The result of comparing arm B with arm A on one metric."""

    method: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    estimate: float  # B - A
    statistic: float
    p_value: float
    interval: tuple[float, float]
    confidence_level: float
    lift: float | None  # (B - A) / |A|
    lift_interval: tuple[float, float] | None
    var_a: float = math.nan
    var_b: float = math.nan
    df: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        out["lift_interval"] = list(self.lift_interval) if self.lift_interval else None
        return {k: _finite_or_none(v) for k, v in out.items()}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {confidence}")


def _as_sample(values: Any, arm: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(f"arm {arm}: values must be finite (NaN or infinity found)")
    return x


def welch_summary(
    n_a: Any, mean_a: Any, var_a: Any, n_b: Any, mean_b: Any, var_b: Any, confidence: float = 0.95
) -> tuple[Any, Any, Any, Any, Any]:
    """Welch's t-test from summary statistics: ``(t, df, p_value, low, high)`` of B - A.

    ``var_*`` are unbiased sample variances (ddof=1). Broadcasts over arrays. When both
    variances are zero the test is degenerate: p is 1 for equal means and 0 otherwise.
    """
    _check_confidence(confidence)
    n_a, n_b = np.asarray(n_a, float), np.asarray(n_b, float)
    va, vb = np.asarray(var_a, float) / n_a, np.asarray(var_b, float) / n_b
    se2 = va + vb
    diff = np.asarray(mean_b, float) - np.asarray(mean_a, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(se2)
        df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
        t = diff / se
        p = 2.0 * special.stdtr(df, -np.abs(t))
        q = special.stdtrit(df, 0.5 + confidence / 2.0)
    degenerate = se2 == 0
    p = np.where(degenerate, np.where(diff == 0, 1.0, 0.0), p)
    t = np.where(degenerate, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)), t)
    half = np.where(degenerate, 0.0, q * se)
    return t, df, p, diff - half, diff + half


def z_test_summary(
    successes_a: Any, n_a: Any, successes_b: Any, n_b: Any, confidence: float = 0.95
) -> tuple[Any, Any, Any, Any]:
    """Two-proportion z-test: ``(z, p_value, low, high)`` of p_B - p_A.

    The statistic uses the pooled proportion (the null hypothesis says the rates are
    equal); the interval uses the unpooled standard error (Wald), as usual.
    """
    _check_confidence(confidence)
    n_a, n_b = np.asarray(n_a, float), np.asarray(n_b, float)
    pa, pb = np.asarray(successes_a, float) / n_a, np.asarray(successes_b, float) / n_b
    pooled = (pa * n_a + pb * n_b) / (n_a + n_b)
    diff = pb - pa
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se1 = np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / se0
    z = np.where(se0 == 0, 0.0, z)
    p = 2.0 * special.ndtr(-np.abs(z))
    half = special.ndtri(0.5 + confidence / 2.0) * se1
    return z, p, diff - half, diff + half


def relative_lift(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, confidence: float
) -> tuple[float | None, tuple[float, float] | None]:
    """``(B - A) / |A|`` and its delta-method interval; ``(None, None)`` when A is 0.

    ``var_mean_*`` are the variances of the arm means (s^2 / n).
    """
    if mean_a == 0 or not math.isfinite(mean_a):
        return None, None
    lift = (mean_b - mean_a) / abs(mean_a)
    # ratio r = B / A: Var(r) ~ Var(B)/A^2 + B^2 Var(A)/A^4 (independent arms).
    var_ratio = var_mean_b / mean_a**2 + mean_b**2 * var_mean_a / mean_a**4
    half = float(special.ndtri(0.5 + confidence / 2.0)) * math.sqrt(max(var_ratio, 0.0))
    return lift, (lift - half, lift + half)


def welch(a: Any, b: Any, confidence: float = 0.95) -> Comparison:
    """Welch's unequal-variance t-test of mean(B) - mean(A) on raw per-request values.

    Agrees with ``scipy.stats.ttest_ind(b, a, equal_var=False)``.

    Example:
        >>> r = welch([1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0])
        >>> round(r.estimate, 6), round(r.p_value, 4)
        (1.0, 0.3153)
    """
    xa, xb = _as_sample(a, "A"), _as_sample(b, "B")
    if xa.size < 2 or xb.size < 2:
        raise ValueError(f"Welch's t-test needs >= 2 values per arm, got {xa.size} and {xb.size}")
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    t, df, p, lo, hi = welch_summary(xa.size, ma, va, xb.size, mb, vb, confidence)
    lift, lift_iv = relative_lift(ma, va / xa.size, mb, vb / xb.size, confidence)
    return Comparison(
        method="welch",
        n_a=int(xa.size),
        n_b=int(xb.size),
        mean_a=ma,
        mean_b=mb,
        estimate=mb - ma,
        statistic=float(t),
        p_value=float(p),
        interval=(float(lo), float(hi)),
        confidence_level=confidence,
        lift=lift,
        lift_interval=lift_iv,
        var_a=va,
        var_b=vb,
        df=float(df),
    )


def z_test(a: Any, b: Any, confidence: float = 0.95) -> Comparison:
    """Two-proportion z-test on 0/1 (or boolean) per-request outcomes, B - A."""
    xa, xb = _as_sample(a, "A"), _as_sample(b, "B")
    if xa.size < 1 or xb.size < 1:
        raise ValueError(f"the z-test needs >= 1 value per arm, got {xa.size} and {xb.size}")
    for arm, x in (("A", xa), ("B", xb)):
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"arm {arm}: the z-test needs 0/1 outcomes")
    sa, sb = float(xa.sum()), float(xb.sum())
    z, p, lo, hi = z_test_summary(sa, xa.size, sb, xb.size, confidence)
    pa, pb = sa / xa.size, sb / xb.size
    lift, lift_iv = relative_lift(
        pa, pa * (1 - pa) / xa.size, pb, pb * (1 - pb) / xb.size, confidence
    )
    return Comparison(
        method="ztest",
        n_a=int(xa.size),
        n_b=int(xb.size),
        mean_a=pa,
        mean_b=pb,
        estimate=pb - pa,
        statistic=float(z),
        p_value=float(p),
        interval=(float(lo), float(hi)),
        confidence_level=confidence,
        lift=lift,
        lift_interval=lift_iv,
        var_a=pa * (1 - pa),
        var_b=pb * (1 - pb),
    )


#: Pairwise differences for the Hodges-Lehmann interval are taken on at most this many
#: values per arm (a seeded subsample), which bounds memory at ~8 MB.
HODGES_LEHMANN_MAX_PER_ARM = 1000


def mann_whitney(a: Any, b: Any, confidence: float = 0.95) -> Comparison:
    """Mann-Whitney U test (two-sided), with the Hodges-Lehmann shift B - A and its interval.

    The p-value is scipy's ``mannwhitneyu(b, a)`` (tie-corrected); the estimate is the
    median of pairwise differences ``b_j - a_i`` and the interval is the distribution-free
    one from the order statistics of those differences (normal approximation of U),
    computed on a seeded subsample of at most ``HODGES_LEHMANN_MAX_PER_ARM`` per arm.
    """
    _check_confidence(confidence)
    xa, xb = _as_sample(a, "A"), _as_sample(b, "B")
    if xa.size < 2 or xb.size < 2:
        raise ValueError(f"Mann-Whitney needs >= 2 values per arm, got {xa.size} and {xb.size}")
    from scipy import stats  # ~35 MB: imported by the first test that needs it

    res = stats.mannwhitneyu(xb, xa, alternative="two-sided")
    rng = np.random.default_rng(0)
    sa = (
        xa
        if xa.size <= HODGES_LEHMANN_MAX_PER_ARM
        else rng.choice(xa, HODGES_LEHMANN_MAX_PER_ARM, replace=False)
    )
    sb = (
        xb
        if xb.size <= HODGES_LEHMANN_MAX_PER_ARM
        else rng.choice(xb, HODGES_LEHMANN_MAX_PER_ARM, replace=False)
    )
    diffs = np.sort((sb[None, :] - sa[:, None]).ravel())
    m, n = sa.size, sb.size
    z = special.ndtri(0.5 + confidence / 2.0)
    k = math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12.0))
    k = min(max(k, 0), diffs.size - 1)
    ma, mb = float(xa.mean()), float(xb.mean())
    va, vb = float(xa.var(ddof=1)), float(xb.var(ddof=1))
    lift, lift_iv = relative_lift(ma, va / xa.size, mb, vb / xb.size, confidence)
    return Comparison(
        method="mann_whitney",
        n_a=int(xa.size),
        n_b=int(xb.size),
        mean_a=ma,
        mean_b=mb,
        estimate=float(np.median(diffs)),
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        interval=(float(diffs[k]), float(diffs[diffs.size - 1 - k])),
        confidence_level=confidence,
        lift=lift,
        lift_interval=lift_iv,
        var_a=va,
        var_b=vb,
    )


def compare(method: str, a: Any, b: Any, confidence: float = 0.95) -> Comparison:
    """Run the test named ``method`` (``welch``, ``ztest`` or ``mann_whitney``)."""
    tests = {"welch": welch, "ztest": z_test, "mann_whitney": mann_whitney}
    if method not in tests:
        raise ValueError(f"unknown test {method!r}; expected one of {', '.join(tests)}")
    return tests[method](a, b, confidence)
