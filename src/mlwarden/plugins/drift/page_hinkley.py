"""``page_hinkley``: the Page-Hinkley test for a shift of a numeric feature's mean."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import DriftMethod, check_number, numeric_sample

#: Share of the reference cut off at each end before standardising (outlier guard).
_CLIP = 0.005


class PageHinkley(DriftMethod):
    """Page-Hinkley sequential detector of a shift of the mean away from the reference.

    The current window's values are read as a stream, in the order of
    ``FeatureData.sample``, clipped to the reference's 0.5%-99.5% quantile range (so a
    single outlier of a heavy-tailed feature cannot raise an alarm) and standardised
    with the mean and sd of the equally clipped reference:
    ``z_t = (clip(x_t) - mean_ref) / sd_ref``. Two cumulative sums watch for a rise and a
    fall, ``U_t = sum (z_i - delta)`` and ``L_t = sum (-z_i - delta)``; the
    Page-Hinkley statistic is the largest excursion above the running minimum,
    ``max_t max(U_t - min U, L_t - min L)``. It alarms when that exceeds ``threshold``
    (Page's lambda): a shift of ``mu`` sd is found after about
    ``threshold / (mu - delta)`` values, while with no shift an excursion of
    ``threshold`` takes about ``exp(2 delta threshold)`` values to happen by chance.
    The defaults (``delta`` 0.25 sd, ``threshold`` 20) target shifts of half a standard
    deviation with fewer than one false alarm in ~10^5 values per direction.

    Applied to a monitor window, the stream is the profile's sample (a uniform subset
    of the window in arbitrary order), so the test asks whether the window's mean has
    moved; ``Warden.monitor_model_drift`` passes DataFrame rows in their own order, so
    there it also says *when* (``details["alarm_at"]``, the index of the first alarm).

    Parameters
    ----------
    threshold
        Page's lambda, in reference standard deviations (default 20).
    delta
        Magnitude of change tolerated, in reference standard deviations (default 0.25).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> rng = np.random.default_rng(0)
    >>> ph = PageHinkley().fit(FeatureData("x", "numeric", sample=rng.normal(size=5000)))
    >>> ph.score(FeatureData("x", "numeric", sample=rng.normal(size=2000))).drifted
    False
    >>> stream = np.concatenate([rng.normal(size=500), rng.normal(1.0, size=500)])
    >>> score = ph.score(FeatureData("x", "numeric", sample=stream))
    >>> score.drifted, 500 < score.details["alarm_at"] < 560
    (True, True)

    References
    ----------
    - Page, E. S. (1954). Continuous inspection schemes. Biometrika 41(1/2), 100-115.
    - Hinkley, D. V. (1971). Inference about the change-point from cumulative sum
      tests. Biometrika 58(3), 509-523.
    - Gama, J., Sebastião, R. & Rodrigues, P. P. (2013). On evaluating stream learning
      algorithms. Machine Learning 90(3), 317-346.
    """

    name: ClassVar[str] = "page_hinkley"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("numeric",)
    test_params: ClassVar[list[dict[str, Any]]] = [{}, {"threshold": 30.0, "delta": 0.5}]

    def __init__(self, *, threshold: float = 20.0, delta: float = 0.25) -> None:
        self.threshold = check_number(
            self.name, "threshold", threshold, minimum=0.0, open_minimum=True
        )
        self.delta = check_number(self.name, "delta", delta, minimum=0.0)
        self._mean = 0.0
        self._sd = 1.0
        self._range = (-np.inf, np.inf)

    def _fit(self, reference: FeatureData) -> None:
        values = numeric_sample(self.name, reference)
        low, high = np.quantile(values, [_CLIP, 1.0 - _CLIP])
        self._range = (float(low), float(high))
        values = np.clip(values, low, high)
        sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        self._mean = float(values.mean())
        self._sd = sd if sd > 0 else 1.0

    def _score(self, current: FeatureData) -> DriftScore:
        values = np.clip(numeric_sample(self.name, current), *self._range)
        z = (values - self._mean) / self._sd
        rise = _excursions(z - self.delta)
        fall = _excursions(-z - self.delta)
        peak = np.maximum(rise, fall)
        statistic = float(peak.max())
        over = np.flatnonzero(peak > self.threshold)
        direction = None
        if over.size:
            direction = "up" if rise[over[0]] > self.threshold else "down"
        return self._result(
            statistic,
            drifted=over.size > 0,
            alarm_at=int(over[0]) if over.size else None,
            direction=direction,
            mean_shift=float(z.mean()),
        )


def _excursions(steps: np.ndarray) -> np.ndarray:
    """``S_t - min_{s <= t} S_s`` of the cumulative sum (with ``S_0 = 0``)."""
    path = np.cumsum(steps)
    return path - np.minimum(np.minimum.accumulate(path), 0.0)


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [PageHinkley]
