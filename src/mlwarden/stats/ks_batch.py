"""Kolmogorov-Smirnov statistics of many features at once, exactly as one at a time.

A drift check runs KS on every numeric feature: 50 features of 5,000 sampled values
against 10,000 reference values each. One feature at a time (``ks_statistic``) that is
some thirty small numpy calls per feature, and their fixed cost is most of the check.
Here the same algorithm runs on all features together: the references are stacked into
one ``(features, n1)`` matrix once (:class:`StackedReferences`, the fitted references
become views of its rows, so nothing is held twice), the current samples are sorted in
one call, the per-bin bounds of ``kolmogorov._candidates`` are computed on
``(features, bins)`` matrices, and only the reference searches of the candidate values
stay per feature (a few hundred values each). The statistics are bit-identical to
``ks_statistic``'s (the same integer ranks divided and subtracted the same way).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .kolmogorov import SortedReference

__all__ = ["StackedReferences", "ks_statistics"]


class StackedReferences:
    """Sorted references of one size and stride, stacked into one matrix.

    Built once from the fitted ``SortedReference`` objects (all of ``size`` n1 and the
    same edge stride); each of them is rebound to a view of its row, so the stack costs
    no memory beyond the ``(features, edges)`` rank tables.
    """

    __slots__ = ("below_low", "edges", "high", "size", "stride", "upto_low", "values")

    def __init__(self, references: Sequence[SortedReference]) -> None:
        first = references[0]
        self.size = n1 = int(first.size)
        self.stride = stride = first.stride
        self.values = np.stack([r.values for r in references])
        self.edges = self.values[:, ::stride]
        zero = np.zeros((len(references), 1), dtype=np.int64)
        left = np.stack([r.left for r in references]).astype(np.int64)
        right = np.stack([r.right for r in references]).astype(np.int64)
        # Per bin k (values with edges[k-1] <= v < edges[k]): #reference <= v is at
        # least upto_low[k], #reference < v at least below_low[k], and both at most
        # high[k] * n1 (as in kolmogorov._candidates).
        self.upto_low = np.concatenate((zero, right), axis=1)
        self.below_low = np.concatenate((zero, left), axis=1)
        self.high = np.concatenate((left, np.full_like(zero, n1)), axis=1) / n1
        for i, reference in enumerate(references):  # share the rows: held once
            reference.values = self.values[i]
            reference.edges = self.edges[i]


def ks_statistics(
    stacked: StackedReferences, current: np.ndarray, rows: Sequence[int] | None = None
) -> np.ndarray:
    """``ks_statistic(reference_rows[i], current[i])`` for every row ``i``, at once.

    ``current`` is ``(len(rows), n2)``, finite values (it is sorted in place); ``rows``
    are the stack's rows it is compared with (default: all, in order). The
    statistic of row ``i`` is the largest gap between the empirical CDFs of the
    reference row ``i`` and ``current[i]``; see ``kolmogorov.ks_statistic`` for why
    evaluating only the candidate bins gives it exactly.
    """
    current.sort(axis=1)
    features, n2 = current.shape
    n1 = stacked.size
    if n2 == 0:
        raise ValueError("ks_statistics needs non-empty samples")
    index = np.arange(features) if rows is None else np.asarray(rows, dtype=np.intp)
    high, upto_low = stacked.high[index], stacked.upto_low[index]
    below_low = stacked.below_low[index]
    bins = high.shape[1]
    # bounds[:, k] .. bounds[:, k + 1]: the positions in each sorted row of bin k's values.
    bounds = np.empty((features, bins + 1), dtype=np.int64)
    bounds[:, 0], bounds[:, -1] = 0, n2
    for i in range(features):
        bounds[i, 1:-1] = np.searchsorted(current[i], stacked.edges[index[i]], side="left")
    first, stop = bounds[:, :-1], bounds[:, 1:]
    filled = stop > first
    first_n2, stop_n2 = first / n2, stop / n2
    ahead_high = high - first_n2
    behind_high = stop_n2 - upto_low / n1
    lowest = np.where(filled, below_low / n1 - first_n2, -np.inf).max(axis=1)
    lowest = np.maximum(lowest, np.where(filled, stop_n2 - high, -np.inf).max(axis=1))
    floor = np.maximum(lowest, 0.0)[:, None]
    features_of, bins_of = np.nonzero(filled & ((ahead_high >= floor) | (behind_high >= floor)))
    starts = first[features_of, bins_of]
    sizes = stop[features_of, bins_of] - starts
    # The candidate positions, feature by feature: each bin's run of positions.
    offsets = np.cumsum(sizes) - sizes
    positions = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(starts - offsets, sizes)
    owner = np.repeat(features_of, sizes)
    values = current[owner, positions]
    # The reference ranks of the candidates, per feature (each row is its own search);
    # #reference <= v is #reference < v unless v is in the reference (rare for floats).
    cuts = np.searchsorted(owner, np.arange(features + 1), side="left")
    below = np.empty(values.size, dtype=np.int64)
    for i in range(features):
        a, b = cuts[i], cuts[i + 1]
        if a < b:
            below[a:b] = np.searchsorted(stacked.values[index[i]], values[a:b], side="left")
    flat = stacked.values.reshape(-1)
    at = index[owner] * n1 + np.minimum(below, n1 - 1)
    tied = np.flatnonzero((below < n1) & (flat[at] == values))
    upto = below.copy()
    for i in np.unique(owner[tied]).tolist():  # features with tied values: search again
        a, b = cuts[i], cuts[i + 1]
        upto[a:b] = np.searchsorted(stacked.values[index[i]], values[a:b], side="right")
    ahead = below / n1 - positions / n2
    behind = (positions + 1) / n2 - upto / n1
    gap = np.maximum(ahead, behind)
    out = np.zeros(features)
    present = cuts[:-1] < cuts[1:]
    if present.any():
        out[present] = np.maximum.reduceat(gap, cuts[:-1][present])
    return np.minimum(np.maximum(out, 0.0), 1.0)
