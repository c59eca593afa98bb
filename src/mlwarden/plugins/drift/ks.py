"""``ks``: the two-sample Kolmogorov-Smirnov test on a numeric feature's sample."""

from __future__ import annotations

from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...stats.kolmogorov import SortedReference, ks_2samp_sorted
from ...types import DriftScore, FeatureData, FeatureKind
from .base import DriftMethod, check_choice, check_number, check_probability, numeric_sample


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

    def _fit(self, reference: FeatureData) -> None:
        self._reference = SortedReference(numeric_sample(self.name, reference))

    def _score(self, current: FeatureData) -> DriftScore:
        assert self._reference is not None
        values = numeric_sample(self.name, current)
        statistic, p_value, used = ks_2samp_sorted(self._reference, values, self.method)
        return self._result(
            statistic,
            p_value=p_value,
            drifted=p_value < self.threshold and statistic >= self.min_effect,
            p_value_method=used,
            reference_size=int(self._reference.size),
            current_size=int(values.size),
        )


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [KolmogorovSmirnov]
