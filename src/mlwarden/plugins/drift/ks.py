"""``ks``: the two-sample Kolmogorov-Smirnov test on a numeric feature's sample."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np

from ...hookspecs import hookimpl
from ...stats.kolmogorov import MAX_EXACT_SIZE, SortedReference, kolmogorov_sf, ks_2samp_sorted
from ...stats.ks_batch import StackedReferences, ks_statistics
from ...types import DriftScore, FeatureData, FeatureKind
from .base import (
    BatchScorer,
    DriftMethod,
    check_choice,
    check_number,
    check_probability,
    numeric_sample,
)


class KolmogorovSmirnov(DriftMethod):
    """Two-sample Kolmogorov-Smirnov test: the largest gap between two empirical CDFs.

    The reference sample is sorted and indexed once at ``fit``; each ``score`` sorts the
    current sample and looks up in the reference only the values that can hold the
    largest CDF gap (``kolmogorov.SortedReference``), which gives exactly
    ``scipy.stats.ks_2samp``'s statistic. The two-sided p-value is
    ks_2samp's too: with ``method="auto"``, exact when both samples have at most 500
    values (scipy computes it), asymptotic (``kstwo.sf`` at the effective size
    ``n m / (n + m)``) otherwise, evaluated vectorised (``kolmogorov.py``) to within
    1e-9 relative of scipy's ``method="asymp"``. scipy's own ``auto`` stays exact up to
    10,000 values, where the exact computation costs 40-100 ms per feature; pass
    ``method="exact"`` for that.
    The feature has drifted when ``p_value < threshold`` *and* the statistic D, the
    effect size itself (a share of the distribution between 0 and 1), is at least
    ``min_effect``. NaN and infinities are left out (data quality counts them).

    With large samples the test finds differences too small to matter: the monitor
    runs it on the profile's bounded sample, pairs it with an effect-size method
    (``psi``, ``wasserstein``), and the floor keeps a bigger sample from turning a
    negligible gap into drift (D = 0.03 is a mean shift of about 0.075 sd of a normal
    feature, just above what the monitor's default samples resolve); see
    docs/drift_methods.md.

    Parameters
    ----------
    threshold
        Significance level: drifted when the p-value is below it (default 0.05).
    method
        ``"auto"`` (default: exact up to 500 values per side), ``"exact"`` or
        ``"asymp"``, as in ``ks_2samp``.
    min_effect
        Smallest D that counts as drift (default 0.03; 0: the test alone decides).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import FeatureData
    >>> rng = np.random.default_rng(0)
    >>> ref = FeatureData("x", "numeric", sample=rng.normal(size=2000))
    >>> ks = KolmogorovSmirnov(threshold=0.01).fit(ref)
    >>> ks.score(FeatureData("x", "numeric", sample=rng.normal(size=500))).drifted
    False
    >>> shifted = ks.score(FeatureData("x", "numeric", sample=rng.normal(0.5, size=500)))
    >>> shifted.drifted, shifted.p_value < 1e-9
    (True, True)

    References
    ----------
    - Smirnov, N. V. (1948). Table for estimating the goodness of fit of empirical
      distributions. Annals of Mathematical Statistics 19(2), 279-281.
    - Hodges, J. L. (1958). The significance probability of the Smirnov two-sample
      test. Arkiv för Matematik 3, 469-486.
    - ``scipy.stats.ks_2samp``.
    """

    name: ClassVar[str] = "ks"
    kinds: ClassVar[tuple[FeatureKind, ...]] = ("numeric",)
    test_params: ClassVar[list[dict[str, Any]]] = [
        {},
        {"threshold": 0.01, "method": "asymp", "min_effect": 0.0},
    ]

    def __init__(
        self, *, threshold: float = 0.05, method: str = "auto", min_effect: float = 0.03
    ) -> None:
        self.threshold = check_probability(self.name, "threshold", threshold)
        self.method = check_choice(self.name, "method", method, ("auto", "exact", "asymp"))
        self.min_effect = check_number(
            self.name, "min_effect", min_effect, minimum=0.0, maximum=1.0
        )
        self._reference: SortedReference | None = None

    @classmethod
    def batch(cls, fitted: Sequence[Self]) -> BatchScorer | None:
        """The asymptotic tests of every fitted feature at once (``ks_batch``)."""
        return _Batch(fitted) if fitted else None

    def _fit(self, reference: FeatureData) -> None:
        self._reference = SortedReference(numeric_sample(self.name, reference))

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._reference is not None
        values = numeric_sample(self.name, current)
        statistic, p_value, used = ks_2samp_sorted(self._reference, values, self.method)
        return self._scored(statistic, p_value, used, values.size)

    def _scored(self, statistic: float, p_value: float, used: str, size: int) -> DriftScore:
        assert self._reference is not None
        return self._result(
            statistic,
            p_value=p_value,
            drifted=p_value < self.threshold and statistic >= self.min_effect,
            p_value_method=used,
            reference_size=int(self._reference.size),
            current_size=int(size),
        )


class _Batch:
    """KS of many features in one pass: the references of the commonest size, stacked.

    A feature is scored here when its sample is 1-D, finite and as long as the others
    scored (every feature of a window's sample, unless some have NaN or infinities),
    and its p-value is asymptotic; the others are left to ``score``.
    """

    def __init__(self, fitted: Sequence[KolmogorovSmirnov]) -> None:
        self.methods = list(fitted)
        shapes = Counter(
            (m._reference.size, m._reference.stride)
            for m in fitted
            if m._reference is not None and m._reference.size
        )
        self.members: list[int] = []
        self.stacked: StackedReferences | None = None
        if shapes:
            shape = shapes.most_common(1)[0][0]
            self.members = [
                i
                for i, m in enumerate(fitted)
                if m._reference is not None and (m._reference.size, m._reference.stride) == shape
            ]
            self.stacked = StackedReferences(
                [m._reference for m in (fitted[i] for i in self.members)]  # type: ignore[misc]
            )

    def score(self, data: Sequence[FeatureData]) -> list[DriftScore | None]:
        out: list[DriftScore | None] = [None] * len(self.methods)
        if self.stacked is None:
            return out
        n1 = self.stacked.size
        chosen: list[int] = []  # rows of the stack
        samples: list[np.ndarray] = []
        for row, i in enumerate(self.members):
            sample = data[i].sample
            method = self.methods[i]
            if (
                data[i].kind != "numeric"
                or method._reference_kind != "numeric"
                or not isinstance(sample, np.ndarray)
                or sample.ndim != 1
                or sample.dtype != np.float64
                or (samples and sample.size != samples[0].size)
                or not _asymptotic(method.method, n1, sample.size)
            ):
                continue
            chosen.append(row)
            samples.append(sample)
        if not samples or not samples[0].size:
            return out
        current = np.stack(samples)
        finite = np.isfinite(current).all(axis=1)
        if not finite.all():  # those rows go one by one (their sizes differ)
            current = current[finite]
            chosen = [row for row, ok in zip(chosen, finite.tolist(), strict=True) if ok]
        if not chosen:
            return out
        statistics = ks_statistics(self.stacked, current, chosen).tolist()
        n2 = current.shape[1]
        big, small = max(n1, n2), min(n1, n2)
        en = int(np.round(float(big) * float(small) / float(big + small)))
        for row, statistic in zip(chosen, statistics, strict=True):
            i = self.members[row]
            p_value = kolmogorov_sf(statistic, en)
            out[i] = self.methods[i]._scored(statistic, p_value, "asymp", n2)
        return out


def _asymptotic(method: str, n1: int, n2: int) -> bool:
    """Whether ``ks_2samp_sorted`` takes the asymptotic path for these sizes."""
    return method == "asymp" or (method == "auto" and max(n1, n2) > MAX_EXACT_SIZE)


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [KolmogorovSmirnov]
