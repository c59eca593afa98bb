"""Experiment design and hygiene: sample-ratio mismatch, Holm, power, sample size, CUPED."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from .sequential import mixture_half_width, mixture_rho2

__all__ = [
    "PowerReport",
    "SrmCheck",
    "cuped_adjust",
    "holm",
    "power_report",
    "srm_check",
]


@dataclass(frozen=True)
class SrmCheck:
    """Sample-ratio-mismatch check: do the arms' counts fit the configured split?"""

    observed: tuple[int, int]
    expected: tuple[float, float]
    chi2: float
    p_value: float
    threshold: float
    mismatch: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": list(self.observed),
            "expected": list(self.expected),
            "chi2": self.chi2,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "mismatch": self.mismatch,
        }


def srm_check(n_a: int, n_b: int, weight_b: float, threshold: float = 0.001) -> SrmCheck:
    """Pearson chi-square (1 df) of the counts ``(n_a, n_b)`` against the split.

    ``weight_b`` is the configured share of B. A p-value under ``threshold`` (0.001 by
    default, the usual choice: the check runs at every evaluation, so it must be strict)
    flags a mismatch, which invalidates the experiment's comparison.
    """
    if not 0 < weight_b < 1:
        raise ValueError(f"weight of arm B must be in (0, 1), got {weight_b}")
    total = n_a + n_b
    expected = (total * (1 - weight_b), total * weight_b)
    if total == 0:
        return SrmCheck((n_a, n_b), expected, 0.0, 1.0, threshold, False)
    chi2 = (n_a - expected[0]) ** 2 / expected[0] + (n_b - expected[1]) ** 2 / expected[1]
    p = float(special.chdtrc(1, chi2))
    return SrmCheck((int(n_a), int(n_b)), expected, float(chi2), p, threshold, p < threshold)


def holm(p_values: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in input order.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(4).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty(m)
    out[order] = adjusted_sorted
    return out


@dataclass(frozen=True)
class PowerReport:
    """Power against the minimum detectable effect now, and the samples it needs."""

    minimum_detectable_effect: float  # absolute, in the metric's unit
    relative_mde: float
    target_power: float
    power: float
    required_samples: int  # total over both arms
    required_samples_per_arm: tuple[int, int]
    sequential: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "minimum_detectable_effect": self.minimum_detectable_effect,
            "relative_mde": self.relative_mde,
            "target_power": self.target_power,
            "power": self.power,
            "required_samples": self.required_samples,
            "required_samples_per_arm": list(self.required_samples_per_arm),
            "sequential": self.sequential,
        }


def power_report(
    *,
    n: int,
    var_a: float,
    var_b: float,
    weight_b: float,
    effect: float,
    relative_mde: float,
    alpha: float,
    target_power: float = 0.8,
    sequential: bool = False,
    tuning_samples: float = 10_000,
) -> PowerReport | None:
    """Power to detect ``effect`` (absolute) with ``n`` total samples, and the ``n`` needed.

    Normal approximation with the per-sample variances ``var_a``, ``var_b`` and the split
    ``weight_b``. Fixed horizon: ``power = Phi(delta/se - z) + Phi(-delta/se - z)`` and
    ``N = (z_{1-alpha/2} + z_{power})^2 * (s_A^2/w_A + s_B^2/w_B) / delta^2``. Sequential:
    the probability that the final look's estimate lies beyond the confidence sequence's
    half-width ``h_N`` (``Phi((delta - h_N)/se)``, a lower bound since earlier looks may
    cross too), and the least N where that reaches the target power. None when the
    effect or the variance is zero.
    """
    if effect == 0 or not math.isfinite(effect):
        return None
    sigma2 = var_a / (1 - weight_b) + var_b / weight_b  # n * Var(difference)
    if not sigma2 > 0 or not math.isfinite(sigma2):
        return None
    delta = abs(effect)
    z_alpha = float(special.ndtri(1 - alpha / 2))
    z_power = float(special.ndtri(target_power))

    def se(total: float) -> float:
        return math.sqrt(sigma2 / total)

    if sequential:
        rho2 = mixture_rho2(alpha, tuning_samples)

        def power_at(total: float) -> float:
            half = float(mixture_half_width(sigma2 / total, sigma2 * rho2, alpha))
            return float(special.ndtr((delta - half) / se(total)))

        lo, hi = 2.0, 2.0
        while power_at(hi) < target_power and hi < 1e15:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = math.floor((lo + hi) / 2)
            lo, hi = (mid, hi) if power_at(mid) < target_power else (lo, mid)
        required = math.ceil(hi)
        power = power_at(n) if n > 0 else 0.0
    else:
        required = math.ceil((z_alpha + z_power) ** 2 * sigma2 / delta**2)
        if n > 0:
            shift = delta / se(n)
            power = float(special.ndtr(shift - z_alpha) + special.ndtr(-shift - z_alpha))
        else:
            power = 0.0
    per_arm = (math.ceil(required * (1 - weight_b)), math.ceil(required * weight_b))
    return PowerReport(delta, relative_mde, target_power, power, required, per_arm, sequential)


def cuped_adjust(y_a: Any, x_a: Any, y_b: Any, x_b: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """CUPED: ``y - theta (x - mean(x))`` per arm with a pooled ``theta = cov(y, x)/var(x)``.

    ``x`` is a covariate measured before the experiment (so the arms cannot change it);
    the adjusted means keep their expectation and lose the share of variance that ``x``
    explains. Deng, Xu, Kohavi & Walker, "Improving the sensitivity of online controlled
    experiments by utilizing pre-experiment data", WSDM 2013.
    """
    ya, xa = np.asarray(y_a, float), np.asarray(x_a, float)
    yb, xb = np.asarray(y_b, float), np.asarray(x_b, float)
    if ya.shape != xa.shape or yb.shape != xb.shape:
        raise ValueError("each arm needs one covariate value per metric value")
    y, x = np.concatenate([ya, yb]), np.concatenate([xa, xb])
    var_x = float(x.var(ddof=1))
    theta = 0.0 if var_x == 0 else float(np.cov(y, x, ddof=1)[0, 1] / var_x)
    mean_x = float(x.mean())
    return ya - theta * (xa - mean_x), yb - theta * (xb - mean_x), theta
