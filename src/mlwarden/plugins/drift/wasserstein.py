"""``wasserstein``: the earth mover's distance of a numeric feature, in reference sd units."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import DriftMethod, check_choice, check_number, numeric_sample


class Wasserstein(DriftMethod):
    """Wasserstein-1 distance between the samples, divided by the reference's spread.

    ``W1 = integral |F_ref(x) - F_cur(x)| dx`` between the two empirical CDFs, exactly
    ``scipy.stats.wasserstein_distance`` of the samples (the reference is sorted once at
    ``fit``). Divided by the reference sample's standard deviation (``scale="std"``,
    ddof=1) or interquartile range (``scale="iqr"``), it reads in the feature's own
    units: a mean shift of 0.3 sd gives 0.3, whatever the feature's scale. A constant
    reference (zero spread) is not divided (``details["scale"] == 1``). An effect size
    without a p-value: drifted when the normalised distance is at least ``threshold``.

    Parameters
    ----------
    threshold
        Normalised distance at or above which the feature has drifted (default 0.1).
    scale
        ``"std"`` (default) or ``"iqr"``: the reference spread the distance is divided by.

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> rng = np.random.default_rng(0)
    >>> ref = FeatureData("x", "numeric", sample=rng.normal(10.0, 5.0, size=5000))
    >>> w = Wasserstein().fit(ref)
    >>> score = w.score(FeatureData("x", "numeric", sample=rng.normal(12.5, 5.0, size=5000)))
    >>> round(score.statistic, 1), score.drifted
    (0.5, True)

    References
    ----------
    - Vaserstein, L. N. (1969). Markov processes over denumerable products of spaces.
      Problems of Information Transmission 5(3), 47-52.
    - Ramdas, A., Garcia, N. & Cuturi, M. (2017). On Wasserstein two-sample testing and
      related families of nonparametric tests. Entropy 19(2), 47.
    - ``scipy.stats.wasserstein_distance``.
    """

    name: ClassVar[str] = "wasserstein"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("numeric",)
    test_params: ClassVar[list[dict[str, Any]]] = [{}, {"threshold": 0.2, "scale": "iqr"}]

    def __init__(self, *, threshold: float = 0.1, scale: str = "std") -> None:
        self.threshold = check_number(
            self.name, "threshold", threshold, minimum=0.0, open_minimum=True
        )
        self.scale = check_choice(self.name, "scale", scale, ("std", "iqr"))
        self._reference: np.ndarray | None = None
        self._spread = 1.0

    def _fit(self, reference: FeatureData) -> None:
        values = np.sort(numeric_sample(self.name, reference))
        if self.scale == "std":
            spread = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        else:
            q1, q3 = np.quantile(values, [0.25, 0.75])
            spread = float(q3 - q1)
        self._reference = values
        self._spread = spread if spread > 0 else 1.0

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._reference is not None
        distance = wasserstein_sorted(self._reference, numeric_sample(self.name, current))
        value = distance / self._spread
        return self._result(value, drifted=value >= self.threshold, distance=distance,
                            scale=self._spread)  # fmt: skip


def wasserstein_sorted(reference_sorted: np.ndarray, current: np.ndarray) -> float:
    """W1 between a sorted reference and a sample: the area between the two CDFs."""
    cur = np.sort(current)
    grid = np.concatenate([reference_sorted, cur])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    ref_cdf = np.searchsorted(reference_sorted, grid[:-1], side="right") / reference_sorted.size
    cur_cdf = np.searchsorted(cur, grid[:-1], side="right") / cur.size
    return float(np.sum(np.abs(ref_cdf - cur_cdf) * widths))


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [Wasserstein]
