"""``mmd``: maximum mean discrepancy of several numeric features, with a permutation test."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.spatial import distance

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import DriftMethod, check_int, check_probability, multivariate_sample


class MaximumMeanDiscrepancy(DriftMethod):
    """Kernel two-sample test on rows of several features: MMD with an RBF kernel.

    Catches changes that no single feature shows (a correlation that flips, a new
    cluster). Both samples are cut to at most ``max_rows`` rows each (a seeded random
    subset), standardised with the reference's per-feature mean and sd, and compared
    with the RBF kernel ``k(x, y) = exp(-|x - y|^2 / (2 s^2))`` whose width ``s`` is the
    median distance between pooled rows (the median heuristic). The statistic is the
    unbiased estimate of MMD^2; the p-value comes from ``permutations`` random
    relabellings of the pooled rows, ``(1 + #{MMD^2_perm >= MMD^2}) / (1 + permutations)``,
    all evaluated with one kernel-matrix product. Seeded: the same data give the same
    p-value. Drifted when ``p_value < threshold``.

    Parameters
    ----------
    threshold
        Significance level (default 0.05).
    permutations
        Number of random relabellings (default 100; the smallest p-value is
        ``1 / (permutations + 1)``).
    max_rows
        Rows kept from each side (default 500): the cost grows with its square.
    seed
        Seed of the subsampling and the permutations (default 0).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> rng = np.random.default_rng(0)
    >>> same = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=(2, 300))
    >>> flipped = rng.multivariate_normal([0, 0], [[1, -0.8], [-0.8, 1]], size=300)
    >>> mmd = MaximumMeanDiscrepancy().fit(FeatureData("xy", "multivariate", sample=same[0]))
    >>> mmd.score(FeatureData("xy", "multivariate", sample=same[1])).drifted
    False
    >>> mmd.score(FeatureData("xy", "multivariate", sample=flipped)).drifted
    True

    References
    ----------
    - Gretton, A., Borgwardt, K. M., Rasch, M. J., Schölkopf, B. & Smola, A. (2012).
      A kernel two-sample test. Journal of Machine Learning Research 13, 723-773.
    - Rabanser, S., Günnemann, S. & Lipton, Z. (2019). Failing loudly: an empirical
      study of methods for detecting dataset shift. NeurIPS.
    """

    name: ClassVar[str] = "mmd"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("multivariate",)
    test_params: ClassVar[list[dict[str, Any]]] = [
        {},
        {"threshold": 0.01, "permutations": 200, "max_rows": 200, "seed": 7},
    ]

    def __init__(
        self,
        *,
        threshold: float = 0.05,
        permutations: int = 100,
        max_rows: int = 500,
        seed: int = 0,
    ) -> None:
        self.threshold = check_probability(self.name, "threshold", threshold)
        self.permutations = check_int(
            self.name, "permutations", permutations, minimum=10, maximum=100_000
        )
        self.max_rows = check_int(self.name, "max_rows", max_rows, minimum=5, maximum=20_000)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self._reference: np.ndarray | None = None
        self._centre: np.ndarray | None = None
        self._spread: np.ndarray | None = None

    def _fit(self, reference: FeatureData) -> None:
        rows = multivariate_sample(self.name, reference)
        self._centre = rows.mean(axis=0)
        spread = rows.std(axis=0)
        self._spread = np.where(spread > 0, spread, 1.0)
        rng = np.random.default_rng([self.seed, 1])
        self._reference = self._standardise(self._cut(rows, rng))

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._reference is not None
        rows = multivariate_sample(self.name, current)
        if rows.shape[1] != self._reference.shape[1]:
            raise ValueError(
                f'drift method "mmd": "{current.name}" has {rows.shape[1]} columns, '
                f"the reference {self._reference.shape[1]}"
            )
        rng = np.random.default_rng([self.seed, 2])
        cur = self._standardise(self._cut(rows, rng))
        pooled = np.vstack([self._reference, cur])
        squared = distance.pdist(pooled, "sqeuclidean")  # each pair once
        width2 = float(np.median(squared))  # median heuristic, on squared distances
        if width2 <= 0:
            width2 = float(squared[squared > 0].mean()) if np.any(squared > 0) else 1.0
        kernel = distance.squareform(np.exp(-squared / (2.0 * width2)))  # zero diagonal
        n, m = self._reference.shape[0], cur.shape[0]
        labels = np.zeros((n + m, self.permutations + 1))
        labels[:n, 0] = 1.0
        base = labels[:, 0].copy()
        for j in range(1, self.permutations + 1):
            labels[:, j] = rng.permutation(base)
        stats_ = _mmd2_unbiased(kernel, labels, n, m)
        observed = float(stats_[0])
        p_value = (1.0 + float(np.sum(stats_[1:] >= observed))) / (1.0 + self.permutations)
        return self._result(
            observed,
            p_value=p_value,
            drifted=p_value < self.threshold,
            kernel_width=float(np.sqrt(width2)),
            rows=[int(n), int(m)],
        )

    def _cut(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rows.shape[0] <= self.max_rows:
            return rows
        return rows[np.sort(rng.choice(rows.shape[0], self.max_rows, replace=False))]

    def _standardise(self, rows: np.ndarray) -> np.ndarray:
        assert self._centre is not None and self._spread is not None
        return (rows - self._centre) / self._spread


def _mmd2_unbiased(kernel: np.ndarray, labels: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 for each column of 0/1 ``labels`` (1 = first sample), diag-free K."""
    within_first = np.einsum("ij,ij->j", labels, kernel @ labels)
    row_sums = kernel.sum(axis=1)
    cross = row_sums @ labels - within_first
    total = row_sums.sum()
    within_second = total - 2.0 * cross - within_first
    return within_first / (n * (n - 1)) + within_second / (m * (m - 1)) - 2.0 * cross / (n * m)


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [MaximumMeanDiscrepancy]
