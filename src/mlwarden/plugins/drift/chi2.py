"""``chi2``: Pearson's chi-square test of homogeneity on a categorical feature's counts."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy import special

from ...hookspecs import hookimpl
from ...types import DriftScore, FeatureData, FeatureKind
from .base import (
    DriftMethod,
    align_categories,
    category_counts,
    check_bool,
    check_number,
    check_probability,
    unseen,
)


class ChiSquare(DriftMethod):
    """Chi-square test that the reference and the current window share one distribution.

    A two-sample test (a 2 x k contingency table of reference and current counts per
    category, as ``scipy.stats.chi2_contingency``), not a goodness-of-fit test against
    the reference's proportions: the reference is a sample too. Categories only one
    side has seen are columns like any other, so a new category counts as drift; the
    unseen ones are listed in ``details["unseen"]``. Counts come from the profile
    (``categories`` + ``counts``, top-K plus ``__other__``) or from the sample.

    Drifted when ``p_value < threshold`` *and* Cramér's V is at least ``min_effect``:
    on windows of millions of rows every difference is significant, and the effect
    size keeps only those that matter. V is taken of the table with both rows scaled
    to the same total (``scipy.stats.contingency.association`` of it;
    ``sqrt(0.5 * sum((p - q)**2 / (p + q)))`` over the two sides' shares ``p`` and
    ``q``), so it measures how far apart the two distributions are, not how unequal the
    two sample sizes are; for equal sizes it is the textbook V of the table. 0.1 is
    Cohen's "small" effect; the default floor 0.05 is, for two categories, a share
    moving by about 5 points around 50 %.

    Parameters
    ----------
    threshold
        Significance level (default 0.05).
    correction
        Yates' continuity correction when there are only two categories, as scipy's
        default (default true).
    min_effect
        Smallest Cramér's V that counts as drift (default 0.05; 0: the test alone
        decides).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> ref = FeatureData("c", "categorical", categories=("a", "b", "c"),
    ...                   counts=np.array([500, 300, 200]))
    >>> cur = FeatureData("c", "categorical", categories=("a", "b", "d"),
    ...                   counts=np.array([400, 300, 50]))
    >>> score = ChiSquare().fit(ref).score(cur)
    >>> score.drifted, score.details["unseen"]
    (True, ['d'])

    References
    ----------
    - Pearson, K. (1900). On the criterion that a given system of deviations from the
      probable ... Philosophical Magazine 50(302), 157-175.
    - Cramér, H. (1946). Mathematical Methods of Statistics. Princeton, p. 282.
    - ``scipy.stats.chi2_contingency``.
    """

    name: ClassVar[str] = "chi2"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("categorical",)
    test_params: ClassVar[list[dict[str, Any]]] = [
        {},
        {"threshold": 0.01, "correction": False, "min_effect": 0.0},
    ]

    def __init__(
        self, *, threshold: float = 0.05, correction: bool = True, min_effect: float = 0.05
    ) -> None:
        self.threshold = check_probability(self.name, "threshold", threshold)
        self.correction = check_bool(self.name, "correction", correction)
        self.min_effect = check_number(
            self.name, "min_effect", min_effect, minimum=0.0, maximum=1.0
        )
        self._counts: dict[str, float] | None = None

    def _fit(self, reference: FeatureData) -> None:
        counts = category_counts(self.name, reference)
        if sum(counts.values()) <= 0:
            raise ValueError(
                f'drift method "chi2": reference of feature "{reference.name}" is empty'
            )
        self._counts = counts

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._counts is not None
        counts = category_counts(self.name, current)
        total = sum(counts.values())
        if total <= 0:
            raise ValueError(f'drift method "chi2": feature "{current.name}" has no values')
        names, ref, cur = align_categories(self._counts, counts)
        new = unseen(self._counts, counts)
        if len(names) < 2:  # one category on both sides: nothing can differ
            return self._result(0.0, p_value=1.0, drifted=False, cramers_v=0.0, unseen=new)
        table = np.vstack([ref, cur])
        statistic, p_value, dof = chi2_homogeneity(table, correction=self.correction)
        effect = cramers_v_balanced(ref, cur)
        return self._result(
            statistic,
            p_value=p_value,
            drifted=bool(p_value < self.threshold and effect >= self.min_effect),
            cramers_v=effect,
            dof=int(dof),
            unseen=new,
        )


def cramers_v_balanced(reference: np.ndarray, current: np.ndarray) -> float:
    """Cramér's V of the 2 x k table of two count vectors scaled to equal totals.

    With shares ``p`` and ``q`` the table's Pearson statistic over its total is
    ``0.5 * sum((p - q)**2 / (p + q))`` (no continuity correction, as
    ``scipy.stats.contingency.association``), and ``min(2, k) - 1 == 1``.
    """
    p = reference / reference.sum()
    q = current / current.sum()
    both = p + q
    keep = both > 0
    return math.sqrt(0.5 * float(np.sum((p[keep] - q[keep]) ** 2 / both[keep])))


def chi2_homogeneity(table: np.ndarray, *, correction: bool = True) -> tuple[float, float, int]:
    """``(statistic, p_value, dof)`` of ``scipy.stats.chi2_contingency`` on a 2 x k table.

    The same arithmetic in the same order (expected counts from the margins, Yates'
    correction when ``dof == 1``, Pearson's sum, ``chdtrc`` for the tail), without
    scipy's generic n-dimensional checks, which cost more than the test on a handful of
    categories. Every column must have a positive total.
    """
    total = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / total
    dof = table.shape[1] - 1
    if dof == 0:
        return 0.0, 1.0, 0
    observed = table
    if dof == 1 and correction:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(special.chdtrc(dof, statistic)), dof


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [ChiSquare]
