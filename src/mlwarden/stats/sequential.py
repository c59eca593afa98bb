"""Always-valid inference: the normal-mixture confidence sequence and its mSPRT p-value.

An experiment that is evaluated again and again (every few minutes by the daemon, or
whenever someone looks at the dashboard) cannot use a fixed-horizon test: checking a
t-test after every 100 samples up to 10,000 rejects a true null far more often than
alpha. The sequential mode instead uses a boundary that holds uniformly over time, so
the experiment may be stopped the first time it crosses, at any evaluation.

The statistic is the mixture sequential probability ratio test (mSPRT) with a normal
mixing distribution on the difference ``theta = mean_B - mean_A`` (Johari, Koomen,
Pekelis & Walsh, "Always valid inference: continuous monitoring of A/B tests",
Operations Research 70(3), 2022; first circulated 2017)::

    Lambda_n = sqrt(V / (V + tau2)) * exp(tau2 * d^2 / (2 V (V + tau2)))

where ``d`` is the observed difference and ``V`` the variance of ``d`` (``s_A^2/n_A +
s_B^2/n_B``). The always-valid p-value is ``p_n = min(p_{n-1}, 1 / Lambda_n)``, and the
dual confidence sequence ``{theta : Lambda_n(theta) < 1/alpha}`` is::

    d +- sqrt(V (V + tau2) / tau2 * (2 log(1/alpha) + log((V + tau2) / V)))

the normal-mixture boundary of Robbins (1970) in the form of Howard, Ramdas, McAuliffe
& Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of
Statistics 49(2), 2021, eq. (14). With the variance estimated from the data (plug-in),
the guarantee is the asymptotic one of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences" (2021/2024),
which is also what commercial experimentation platforms ship.

The mixing variance is ``tau2 = sigma2 * rho2`` with ``sigma2 = n * V`` (the per-sample
variance of the difference, ``n = n_A + n_B``) and ``rho2`` chosen so that the boundary
is tightest at ``tuning_samples`` total samples (Waudby-Smith et al., section 3.5)::

    rho2 = (2 log(1/alpha) + log(1 + 2 log(1/alpha))) / tuning_samples
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import special

from .hypothesis import Comparison, compare

__all__ = [
    "SequentialState",
    "mixture_half_width",
    "mixture_rho2",
    "mixture_summary",
    "sequential_compare",
]


def mixture_rho2(alpha: float, tuning_samples: float) -> float:
    """The mixing scale ``rho^2`` that makes the boundary tightest at ``tuning_samples``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if tuning_samples <= 0:
        raise ValueError(f"tuning_samples must be positive, got {tuning_samples}")
    log_term = 2.0 * math.log(1.0 / alpha)
    return (log_term + math.log1p(log_term)) / tuning_samples


def mixture_half_width(var_estimate: Any, tau2: Any, alpha: float) -> Any:
    """Half-width of the normal-mixture confidence sequence at level ``1 - alpha``."""
    v = np.asarray(var_estimate, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(v * (v + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + np.log1p(tau2 / v)))


def mixture_summary(
    estimate: Any,
    var_estimate: Any,
    n: Any,
    *,
    alpha: float,
    tuning_samples: float,
    confidence: float,
) -> tuple[Any, Any, Any]:
    """``(p_value, low, high)`` at one look: the mSPRT p-value ``min(1, 1/Lambda)`` and the
    confidence sequence at ``confidence``; broadcasts over arrays.

    ``alpha`` tunes the mixture (use the significance threshold); ``n`` is the total
    number of samples in both arms. A zero variance carries no information: p = 1 and
    the interval is unbounded. Take the running minimum of the p-values and the running
    intersection of the intervals across looks (see ``SequentialState``).
    """
    d = np.asarray(estimate, float)
    v = np.asarray(var_estimate, float)
    tau2 = np.asarray(n, float) * v * mixture_rho2(alpha, tuning_samples)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lambda = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2.0 * v * (v + tau2))
        p = np.exp(-np.maximum(log_lambda, 0.0))
        half = mixture_half_width(v, tau2, 1.0 - confidence)
    informative = (v > 0) & np.isfinite(v)
    p = np.where(informative, p, 1.0)
    half = np.where(informative, half, np.inf)
    return p, d - half, d + half


@dataclass(frozen=True)
class SequentialState:
    """What carries over between looks: the running minimum p and interval intersection."""

    looks: int = 0
    p_value: float = 1.0
    low: float = -math.inf
    high: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "looks": self.looks,
            "p_value": self.p_value,
            "low": self.low if math.isfinite(self.low) else None,
            "high": self.high if math.isfinite(self.high) else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SequentialState:
        if not data:
            return cls()
        low, high = data.get("low"), data.get("high")
        return cls(
            looks=int(data.get("looks", 0)),
            p_value=float(data.get("p_value", 1.0)),
            low=-math.inf if low is None else float(low),
            high=math.inf if high is None else float(high),
        )

    def update(self, p_value: float, low: float, high: float) -> SequentialState:
        """The state after one more look."""
        new_low, new_high = max(self.low, low), min(self.high, high)
        if new_low > new_high:
            # An empty intersection means the plug-in variance moved (early, noisy looks);
            # keep the current interval rather than report an empty set.
            new_low, new_high = low, high
        return SequentialState(self.looks + 1, min(self.p_value, p_value), new_low, new_high)


def sequential_compare(
    method: str,
    a: Any,
    b: Any,
    *,
    alpha: float,
    confidence: float,
    tuning_samples: float,
    state: SequentialState | None = None,
) -> tuple[Comparison, SequentialState]:
    """One look of the sequential test of B - A on raw values; returns the comparison
    (always-valid p-value, confidence-sequence interval) and the state for the next look.

    ``method`` is ``welch`` (continuous metrics) or ``ztest`` (0/1 outcomes); the rank
    test has no sequential form here.
    """
    if method not in ("welch", "ztest"):
        raise ValueError(f"test {method!r} has no sequential mode; use welch or ztest")
    state = state or SequentialState()
    fixed = compare(method, a, b, confidence)
    var_estimate = fixed.var_a / fixed.n_a + fixed.var_b / fixed.n_b
    p, lo, hi = mixture_summary(
        fixed.estimate,
        var_estimate,
        fixed.n_a + fixed.n_b,
        alpha=alpha,
        tuning_samples=tuning_samples,
        confidence=confidence,
    )
    new_state = state.update(float(p), float(lo), float(hi))
    lift_interval = fixed.lift_interval
    if lift_interval is not None and fixed.lift is not None:
        # Widen the delta-method lift interval by the ratio of the sequence's half-width
        # to the fixed-horizon z half-width (an approximation, documented as such).
        z_half = float(special.ndtri(0.5 + confidence / 2.0)) * math.sqrt(var_estimate)
        cs_half = (float(hi) - float(lo)) / 2.0
        scale = cs_half / z_half if z_half > 0 and math.isfinite(cs_half) else math.inf
        lift_half = (lift_interval[1] - lift_interval[0]) / 2.0 * scale
        lift_interval = (fixed.lift - lift_half, fixed.lift + lift_half)
    comparison = replace(
        fixed,
        method=f"{method}+msprt",
        p_value=new_state.p_value,
        interval=(new_state.low, new_state.high),
        lift_interval=lift_interval,
        df=None,
    )
    return comparison, new_state
