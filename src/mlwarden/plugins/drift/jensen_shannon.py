"""``jensen_shannon``: the Jensen-Shannon distance of binned numeric or categorical data."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import (
    DriftMethod,
    align_categories,
    bin_counts,
    category_counts,
    check_int,
    check_number,
    merge_bins,
    reference_bins,
    unseen,
)


class JensenShannon(DriftMethod):
    """Jensen-Shannon distance (base 2, between 0 and 1) of two binned distributions.

    ``sqrt((KL(P || M) + KL(Q || M)) / 2)`` with ``M = (P + Q) / 2``, as
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. Numeric features are binned
    on the reference's quantile bins exactly as ``psi`` does (the profile's fine
    histogram merged into ``bins`` runs of equal reference mass, or ``bins`` quantiles
    of the reference sample); categorical features use their category counts, aligned
    on the union of categories. No epsilon is needed: wherever P or Q has mass, M has
    too, and empty bins contribute 0 (``0 log 0 = 0``); so a category or bin that only
    one side has counts, bounded. An effect size: drifted when the distance is at least
    ``threshold``.

    Parameters
    ----------
    threshold
        Distance at or above which the feature has drifted (default 0.1).
    bins
        Number of quantile bins for numeric features (default 10).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> ref = FeatureData("c", "categorical", categories=("a", "b"), counts=np.array([50, 50]))
    >>> cur = FeatureData("c", "categorical", categories=("a", "b"), counts=np.array([90, 10]))
    >>> score = JensenShannon().fit(ref).score(cur)
    >>> round(score.statistic, 4), score.drifted
    (0.3831, True)

    References
    ----------
    - Lin, J. (1991). Divergence measures based on the Shannon entropy. IEEE
      Transactions on Information Theory 37(1), 145-151.
    - Endres, D. M. & Schindelin, J. E. (2003). A new metric for probability
      distributions. IEEE Transactions on Information Theory 49(7), 1858-1860.
    """

    name: ClassVar[str] = "jensen_shannon"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("numeric", "categorical")
    test_params: ClassVar[list[dict[str, Any]]] = [{}, {"threshold": 0.2, "bins": 20}]

    def __init__(self, *, threshold: float = 0.1, bins: int = 10) -> None:
        self.threshold = check_number(
            self.name, "threshold", threshold, minimum=0.0, maximum=1.0, open_minimum=True
        )
        self.bins = check_int(self.name, "bins", bins, minimum=2, maximum=10_000)
        self._edges: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self._categories: dict[str, float] | None = None

    def _fit(self, reference: FeatureData) -> None:
        if reference.kind == "categorical":
            self._categories = category_counts(self.name, reference)
            total = sum(self._categories.values())
        else:
            self._edges, self._counts = reference_bins(self.name, reference, self.bins)
            self._starts = merge_bins(self._counts, self.bins)
            total = self._counts.sum()
        if total <= 0:
            raise ValueError(f'drift method "{self.name}": reference "{reference.name}" is empty')

    def _score(self, current: FeatureData) -> DriftScore:
        details: dict[str, Any] = {}
        if self._categories is not None:
            counts = category_counts(self.name, current)
            _, ref, cur = align_categories(self._categories, counts)
            details["unseen"] = unseen(self._categories, counts)
        else:
            assert self._edges is not None and self._counts is not None and self._starts is not None
            counts_array = bin_counts(self.name, current, self._edges, self._counts.size)
            ref = np.add.reduceat(self._counts, self._starts)
            cur = np.add.reduceat(counts_array, self._starts)
            details["bins"] = int(ref.size)
        if cur.sum() <= 0:
            raise ValueError(f'drift method "{self.name}": feature "{current.name}" has no values')
        value = js_distance(ref / ref.sum(), cur / cur.sum())
        return self._result(value, drifted=value >= self.threshold, **details)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2, of two probability vectors."""
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log2(p / m), 0.0)
        right = np.where(q > 0, q * np.log2(q / m), 0.0)
    divergence = max(float(left.sum() + right.sum()) / 2.0, 0.0)
    return min(float(np.sqrt(divergence)), 1.0)


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [JensenShannon]
