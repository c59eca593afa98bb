"""``psi``: the population stability index over the reference's quantile bins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import (
    BatchScorer,
    DriftMethod,
    bin_counts,
    check_int,
    check_number,
    merge_bins,
    reference_bins,
)


class PopulationStabilityIndex(DriftMethod):
    """Population stability index: ``sum (c_i - r_i) ln(c_i / r_i)`` over quantile bins.

    ``r_i`` and ``c_i`` are the reference's and the current window's shares of bin
    ``i``. The bins are the reference's quantile bins: the profile's fine histogram
    (``bin_edges`` + ``counts``, with open outer bins) merged into ``bins`` runs of about
    equal reference mass, or ``bins`` quantile bins of the reference sample when the
    reference has no histogram. Shares below ``epsilon`` (an empty bin) are raised to
    ``epsilon`` before the logarithm, so one empty bin adds a bounded amount instead of
    infinity. PSI is an effect size, not a test: it does not grow with the sample size,
    which is why the monitor relies on it for large windows. Drifted when
    ``psi >= threshold``; the customary reading is < 0.1 stable, 0.1-0.25 moderate
    shift, > 0.25 major shift, and the default flags from "moderate" on (on 10 bins, a
    mean shift of about 0.3 sd).

    Parameters
    ----------
    threshold
        PSI at or above which the feature has drifted (default 0.1).
    bins
        Number of quantile bins (default 10).
    epsilon
        Floor of a bin's share (default 1e-4).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> ref = FeatureData("x", "numeric", bin_edges=np.array([0.0, 1.0]),
    ...                   counts=np.array([25, 50, 25]))
    >>> cur = FeatureData("x", "numeric", bin_edges=np.array([0.0, 1.0]),
    ...                   counts=np.array([10, 50, 40]))
    >>> score = PopulationStabilityIndex().fit(ref).score(cur)
    >>> round(score.statistic, 4), score.drifted
    (0.2079, True)

    References
    ----------
    - Siddiqi, N. (2006). Credit Risk Scorecards. Wiley, pp. 136-137.
    - Yurdakul, B. (2018). Statistical properties of population stability index.
      Western Michigan University dissertation.
    """

    name: ClassVar[str] = "psi"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("numeric",)
    test_params: ClassVar[list[dict[str, Any]]] = [{}, {"threshold": 0.25, "bins": 20}]

    def __init__(self, *, threshold: float = 0.1, bins: int = 10, epsilon: float = 1e-4) -> None:
        self.threshold = check_number(
            self.name, "threshold", threshold, minimum=0.0, open_minimum=True
        )
        self.bins = check_int(self.name, "bins", bins, minimum=2, maximum=10_000)
        self.epsilon = check_number(
            self.name, "epsilon", epsilon, minimum=0.0, maximum=0.1, open_minimum=True
        )
        self._edges: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self._starts: np.ndarray | None = None
        self._shares: np.ndarray | None = None  # the reference's, per merged bin

    @classmethod
    def batch(cls, fitted: Sequence[Self]) -> BatchScorer | None:
        """Every feature whose window was binned on the reference's edges, at once."""
        return _Batch(fitted) if fitted else None

    def _fit(self, reference: FeatureData) -> None:
        edges, counts = reference_bins(self.name, reference, self.bins)
        if counts.sum() <= 0:
            raise ValueError(
                f'drift method "psi": reference of feature "{reference.name}" is empty'
            )
        self._edges, self._counts = edges, counts
        self._starts = merge_bins(counts, self.bins)
        self._shares = np.add.reduceat(counts, self._starts) / counts.sum()

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._edges is not None and self._counts is not None and self._starts is not None
        assert self._shares is not None
        counts = bin_counts(self.name, current, self._edges, self._counts.size)
        total = counts.sum()
        if total <= 0:
            raise ValueError(f'drift method "psi": feature "{current.name}" has no values')
        cur = np.add.reduceat(counts, self._starts) / total
        return self._scored(psi(self._shares, cur, self.epsilon))

    def _scored(self, value: float) -> DriftScore:
        assert self._shares is not None
        return self._result(value, drifted=value >= self.threshold, bins=int(self._shares.size))


class _Batch:
    """PSI of many features in one pass, grouped by their number of merged bins.

    A feature is scored here when its window histogram is on the reference's own edges
    (a window profile's always is) and has values; each group's shares and sums are
    rows of one matrix, summed row by row as ``psi`` sums one vector.
    """

    def __init__(self, fitted: Sequence[PopulationStabilityIndex]) -> None:
        self.methods = list(fitted)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, m in enumerate(fitted):
            if m._counts is not None and m._starts is not None:
                groups.setdefault((m._counts.size, m._starts.size), []).append(i)
        #: per group: its members, their fine bins, the starts of their merged bins
        #: (flat, as in one row-major matrix), the floored shares and the epsilons of
        #: the reference (a row each)
        self.groups = []
        for (size, _), members in groups.items():
            starts = [fitted[i]._starts for i in members]
            flat = np.concatenate([s + n * size for n, s in enumerate(starts)])  # type: ignore[operator]
            shares = np.stack([fitted[i]._shares for i in members])  # type: ignore[misc]
            epsilon = np.array([[fitted[i].epsilon] for i in members])
            self.groups.append((members, size, flat, np.maximum(shares, epsilon), epsilon))

    def score(self, data: Sequence[FeatureData]) -> list[DriftScore | None]:
        out: list[DriftScore | None] = [None] * len(self.methods)
        for members, size, flat, reference, epsilon in self.groups:
            if not all(self._binned(i, data[i], size) for i in members):
                continue  # rare (a histogram on other edges): one by one
            counts = np.stack([np.asarray(data[i].counts, dtype=np.float64) for i in members])
            totals = counts.sum(axis=1, keepdims=True)
            if not (totals > 0).all():
                continue  # a feature with no values: its method says so one by one
            shares = np.add.reduceat(counts.reshape(-1), flat).reshape(len(members), -1) / totals
            current = np.maximum(shares, epsilon)
            values = np.sum((current - reference) * np.log(current / reference), axis=1)
            for i, value in zip(members, values.tolist(), strict=True):
                out[i] = self.methods[i]._scored(value)
        return out

    def _binned(self, i: int, data: FeatureData, size: int) -> bool:
        method = self.methods[i]
        edges, counts = data.bin_edges, data.counts
        assert method._edges is not None
        return (
            data.kind == "numeric"
            and method._reference_kind == "numeric"
            and edges is not None
            and counts is not None
            and np.ndim(counts) == 1
            and np.size(counts) == size
            and (edges is method._edges or np.array_equal(edges, method._edges))
        )


def psi(reference: np.ndarray, current: np.ndarray, epsilon: float) -> float:
    """PSI of two share vectors, shares floored at ``epsilon``."""
    r = np.maximum(reference, epsilon)
    c = np.maximum(current, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [PopulationStabilityIndex]
