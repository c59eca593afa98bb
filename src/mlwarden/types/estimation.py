"""What a performance estimator sees of a window and what it answers.

A performance estimator plugin (``mlwarden_performance_estimators``) is fitted on the
reference (:class:`EstimationData` with labels) and estimates the model's metrics on a
window whose labels have not arrived yet (the same data without labels). Each estimate
is a :class:`MetricEstimate`: the value, its confidence band (the sampling error of the
realized metric around it) and, once the labels are in, the realized value, so the
estimator's own error is measured. :class:`PerformanceEstimate` gathers one window's
estimates; ``to_dict()`` is what the API answers and the history stores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["EstimationData", "EstimationTask", "MetricEstimate", "PerformanceEstimate"]

#: The task a performance estimator takes (a model's ``task``).
EstimationTask = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True)
class EstimationData:
    """Rows of a model's inputs and outputs, as a performance estimator sees them.

    - ``features``: ``rows x len(feature_names)`` float64 (NaN where missing);
    - ``prediction``: the model's output per row (float64 for regression; class names
      as str objects for classification, or None: then the class of highest
      probability, or ``probability >= 0.5`` for a binary model);
    - ``probabilities``: classification only, ``rows x len(classes)``, each row summing
      to 1 (a binary model's P(positive) is the last column: ``classes[1]`` is the
      positive class);
    - ``labels``: the ground truth (the reference has it; a window may not yet).
    """

    task: EstimationTask
    features: np.ndarray
    feature_names: tuple[str, ...] = ()
    prediction: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    labels: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True, slots=True)
class MetricEstimate:
    """One metric estimated on one window, with its band and (later) the realized value.

    ``lower``/``upper`` bound where the realized metric is expected to fall at the
    estimator's confidence level; ``sampling_error`` is its standard deviation.
    """

    metric: str
    value: float
    lower: float
    upper: float
    sampling_error: float
    realized: float | None = None

    @property
    def error(self) -> float | None:
        """Estimate minus realized value (None until the labels are in)."""
        if self.realized is None or not math.isfinite(self.realized):
            return None
        return self.value - self.realized

    @property
    def within_band(self) -> bool | None:
        """Whether the realized value fell within the band (None until it is known)."""
        if self.error is None:
            return None
        assert self.realized is not None
        return self.lower <= self.realized <= self.upper

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "sampling_error": self.sampling_error,
            "realized": self.realized,
            "error": self.error,
            "within_band": self.within_band,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceEstimate:
    """One estimator's estimates on one window (``metrics`` keyed by metric name)."""

    model: str
    estimator: str
    checked_at: float
    rows: int
    labelled_rows: int = 0
    metrics: Mapping[str, MetricEstimate] = field(default_factory=dict)
    version: str | None = None
    window_start: float | None = None
    window_end: float | None = None
    error: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "estimator": self.estimator,
            "checked_at": self.checked_at,
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "version": self.version,
            "window": {"start": self.window_start, "end": self.window_end},
            "metrics": {name: m.to_dict() for name, m in self.metrics.items()},
        }
        if self.error is not None:
            out["error"] = self.error
        if self.id is not None:
            out["id"] = self.id
        return out
