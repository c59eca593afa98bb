"""What a drift method sees of a feature and what it answers, and the recommendations.

A drift method plugin gets a :class:`FeatureData` per feature (or per group of
features, for multivariate methods) and returns a :class:`DriftScore`. A drift report
ends in one of :data:`RECOMMENDATIONS`, the drift trigger's ``min_recommendation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["RECOMMENDATIONS", "DriftScore", "FeatureData", "FeatureKind"]

FeatureKind = Literal["numeric", "categorical", "multivariate"]


@dataclass(frozen=True, slots=True)
class FeatureData:
    """What a drift method sees of one feature (or of several, for multivariate methods).

    A method may use any of the fields that are set; the core fills what it has:

    - ``sample``: a bounded sample of raw values (1-D for numeric/categorical features,
      2-D ``rows x features`` for multivariate methods);
    - ``bin_edges`` and ``counts``: a histogram of the full window over the reference's
      quantile edges (numeric), or ``categories`` and ``counts`` (categorical);
    - ``count``, ``mean``, ``m2``, ``minimum``, ``maximum``: exact moments of the window.
    """

    name: str
    kind: FeatureKind
    sample: np.ndarray | None = None
    bin_edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    categories: tuple[str, ...] | None = None
    count: int = 0
    mean: float | None = None
    m2: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DriftScore:
    """One drift method's verdict on one feature."""

    method: str
    statistic: float
    threshold: float
    drifted: bool
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }
        if self.details:
            out["details"] = self.details
        return out


#: A drift report's recommendation, from least to most urgent.
RECOMMENDATIONS = ("NO_ACTION_NEEDED", "RETRAIN_SOON", "RETRAIN_IMMEDIATELY")
