"""Market-regime change detection: a two-sided Gaussian CUSUM on the variance of returns.

A regime change in a market shows first as a change in volatility. Returns are taken
as zero-mean-ish Gaussian with variance ``s0`` estimated on a warm-up window. For a
change to variance ``c * s0`` the log-likelihood ratio of one observation ``x`` is::

    llr(c) = -log(c)/2 + (1 - 1/c) * z / 2,   z = (x - mu)^2 / s0

Page's CUSUM accumulates ``S = max(0, S + llr)`` for ``c = ratio`` (volatility up) and
``c = 1/ratio`` (volatility down) and alarms when either exceeds ``threshold``; it is
the optimal detector for a known jump size (Lorden 1971, Moustakides 1986). After an
alarm the detector re-estimates the baseline on a fresh warm-up window after the
alarm, so one change gives one alarm. ``z`` is clipped at ``clip`` so a single
fat-tailed outlier cannot raise an alarm alone.

Measured delays and false-alarm rates are in docs/training.md (``benchmarks/regime_cusum.py``
reproduces them).

References
----------
E. S. Page, "Continuous inspection schemes", Biometrika 41 (1954).
G. Lorden, "Procedures for reacting to a change in distribution", Ann. Math. Stat. 42 (1971).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ChangePoint", "VolatilityCusum", "returns_from"]


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """One alarm: where it was raised and where the change most likely began."""

    index: int
    start_index: int
    direction: Literal["up", "down"]
    statistic: float
    baseline_variance: float
    variance_ratio: float


class VolatilityCusum:
    """Two-sided CUSUM for a change in the variance of a series of returns.

    Parameters
    ----------
    ratio:
        The variance ratio to detect (> 1); ``2`` means "volatility up by sqrt(2) or
        down by the same factor".
    threshold:
        Alarm level ``h`` of the CUSUM statistic (higher: fewer false alarms, later).
    warmup:
        Observations used to estimate the baseline variance (at start, after an alarm).
    clip:
        Cap on the standardised squared return ``z`` fed to the CUSUM.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, 1000), rng.normal(0, 2, 1000)])
    >>> [(cp.direction, cp.index >= 1000) for cp in VolatilityCusum().detect(x)]
    [('up', True)]
    """

    def __init__(
        self,
        *,
        ratio: float = 2.0,
        threshold: float = 12.0,
        warmup: int = 500,
        clip: float = 25.0,
    ) -> None:
        if not ratio > 1:
            raise ValueError("option 'ratio' must be > 1")
        if not threshold > 0:
            raise ValueError("option 'threshold' must be > 0")
        if warmup < 10:
            raise ValueError("option 'warmup' must be >= 10")
        if not clip > 0:
            raise ValueError("option 'clip' must be > 0")
        self.ratio = float(ratio)
        self.threshold = float(threshold)
        self.warmup = int(warmup)
        self.clip = float(clip)

    def detect(self, series: np.ndarray) -> list[ChangePoint]:
        """Every alarm over ``series`` (NaN and inf values are skipped)."""
        x = np.asarray(series, dtype=float)
        index = np.flatnonzero(np.isfinite(x))
        x = x[index]
        k = self.ratio
        up_slope, up_drift = 0.5 * (1 - 1 / k), -0.5 * math.log(k)
        down_slope, down_drift = 0.5 * (1 - k), 0.5 * math.log(k)
        alarms: list[ChangePoint] = []
        start = 0
        n = len(x)
        while start + self.warmup < n:
            base = x[start : start + self.warmup]
            mu = float(base.mean())
            s0 = float(base.var())
            if s0 <= 0:
                start += self.warmup
                continue
            z = np.minimum((x[start + self.warmup :] - mu) ** 2 / s0, self.clip)
            up = down = 0.0
            up_from = down_from = 0
            found = None
            for j, zj in enumerate(z.tolist()):
                up = up + up_drift + up_slope * zj
                if up <= 0:
                    up, up_from = 0.0, j + 1
                down = down + down_drift + down_slope * zj
                if down <= 0:
                    down, down_from = 0.0, j + 1
                if up > self.threshold or down > self.threshold:
                    found = j
                    break
            if found is None:
                break
            offset = start + self.warmup
            is_up = up > self.threshold
            began = offset + (up_from if is_up else down_from)
            post = x[began : offset + found + 1]
            ratio = float(np.mean((post - mu) ** 2) / s0) if len(post) else float("nan")
            alarms.append(
                ChangePoint(
                    index=int(index[offset + found]),
                    start_index=int(index[min(began, n - 1)]),
                    direction="up" if is_up else "down",
                    statistic=up if is_up else down,
                    baseline_variance=s0,
                    variance_ratio=ratio,
                )
            )
            start = offset + found + 1
        return alarms


def returns_from(values: np.ndarray, transform: str) -> np.ndarray:
    """The series the detector watches: ``none`` (already returns), ``log_return``, ``diff``."""
    v = np.asarray(values, dtype=float)
    if transform == "none":
        return v
    if transform == "diff":
        return np.diff(v)
    if transform == "log_return":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.diff(np.log(v))
    raise ValueError(f"unknown transform {transform!r} (expected none, log_return or diff)")
