"""The ``mean_shift`` drift method: a two-sample z-test on the difference of means."""

from __future__ import annotations

import math
from typing import Self

from mlwarden.types import DriftScore, FeatureData


def _moments(data: FeatureData) -> tuple[int, float, float]:
    """(n, mean, variance with ddof=1) from exact moments, or from the sample."""
    if data.count and data.mean is not None and data.m2 is not None:
        n = int(data.count)
        return n, float(data.mean), (float(data.m2) / (n - 1)) if n > 1 else 0.0
    if data.sample is not None:
        values = [float(v) for v in data.sample if math.isfinite(float(v))]
        n = len(values)
        if n:
            mean = math.fsum(values) / n
            var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
            return n, mean, var
    return 0, math.nan, math.nan


class MeanShift:
    """Two-sample z-test: has the mean of a numeric feature moved?

    The statistic is ``z = (mean_cur - mean_ref) / sqrt(var_ref/n_ref + var_cur/n_cur)``
    and the p-value is two-sided under the normal approximation, which holds for the
    window sizes mlwarden works with (tens of rows and more).

    Parameters
    ----------
    threshold:
        Significance level: the feature has drifted when the p-value is below it.
    min_samples:
        Fewer finite values than this in either window raises ValueError.

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> ref = FeatureData("x", "numeric", sample=np.random.default_rng(0).normal(0, 1, 500))
    >>> cur = FeatureData("x", "numeric", sample=np.random.default_rng(1).normal(1, 1, 500))
    >>> MeanShift(threshold=0.01).fit(ref).score(cur).drifted
    True

    References
    ----------
    Welch, B. L. (1947). The generalization of Student's problem when several different
    population variances are involved. Biometrika 34 (1-2), 28-35.
    """

    name = "mean_shift"
    kinds = ("numeric",)
    #: Option sets the drift-method conformance suite instantiates this class with.
    test_params = ({}, {"threshold": 0.01}, {"threshold": 0.1, "min_samples": 5})

    def __init__(self, *, threshold: float = 0.05, min_samples: int = 2) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ValueError(f"option 'threshold' must be a number, got {threshold!r}")
        if not 0 < threshold < 1:
            raise ValueError(f"option 'threshold' must be in (0, 1), got {threshold!r}")
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 2:
            raise ValueError(f"option 'min_samples' must be an integer >= 2, got {min_samples!r}")
        self.threshold = float(threshold)
        self.min_samples = min_samples
        self._reference: tuple[int, float, float] | None = None

    def fit(self, reference: FeatureData) -> Self:
        n, mean, var = _moments(reference)
        if n < self.min_samples:
            raise ValueError(
                f"mean_shift: reference of {reference.name!r} has {n} finite values, "
                f"needs at least {self.min_samples}"
            )
        self._reference = (n, mean, var)
        return self

    def score(self, current: FeatureData) -> DriftScore:
        if self._reference is None:
            raise RuntimeError("mean_shift: call fit(reference) before score(current)")
        n_ref, mean_ref, var_ref = self._reference
        n_cur, mean_cur, var_cur = _moments(current)
        if n_cur < self.min_samples:
            raise ValueError(
                f"mean_shift: window of {current.name!r} has {n_cur} finite values, "
                f"needs at least {self.min_samples}"
            )
        se = math.sqrt(var_ref / n_ref + var_cur / n_cur)
        diff = mean_cur - mean_ref
        # Two constant windows have no spread: floor it at a relative epsilon, so equal
        # constants give z = 0 and different ones a huge but finite z (p-value 0).
        se = max(se, 1e-12 * max(1.0, abs(mean_ref), abs(mean_cur)))
        z = diff / se
        p_value = math.erfc(abs(z) / math.sqrt(2.0))
        return DriftScore(
            method=self.name,
            statistic=z,
            p_value=p_value,
            threshold=self.threshold,
            drifted=p_value < self.threshold,
            details={"mean_reference": mean_ref, "mean_current": mean_cur},
        )
