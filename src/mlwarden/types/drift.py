"""What a drift method sees of a feature and what it answers; the drift report.

A drift method plugin gets a :class:`FeatureData` per feature (or per group of
features, for multivariate methods) and returns a :class:`DriftScore`. The monitor
gathers the scores into a :class:`DriftReport` (one :class:`FeatureDrift` per feature,
and the verdicts on the prediction, the target and the multivariate rows), which ends
in a :data:`Recommendation`, one of :data:`RECOMMENDATIONS` (the drift trigger's
``min_recommendation``). ``DriftReport.to_dict()`` is the report as the API answers
it, the history stores it and events point to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

__all__ = [
    "RECOMMENDATIONS",
    "DriftReport",
    "DriftScore",
    "DriftSource",
    "DriftStatus",
    "DriftWindow",
    "FeatureData",
    "FeatureDrift",
    "FeatureKind",
    "MultivariateDrift",
    "PredictionDrift",
    "Recommendation",
    "RowCounts",
    "TargetDrift",
]

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


#: What a drift report recommends.
Recommendation = Literal["NO_ACTION_NEEDED", "RETRAIN_SOON", "RETRAIN_IMMEDIATELY"]
#: The recommendations from least to most urgent (the rank is the index).
RECOMMENDATIONS: tuple[Recommendation, ...] = get_args(Recommendation)
#: What a drift report checked: the window of ingested predictions, or a DataFrame.
DriftSource = Literal["window", "dataframe"]
#: ``insufficient_data``: too few rows in the window for a verdict.
DriftStatus = Literal["ok", "insufficient_data"]


def _scores(methods: Mapping[str, DriftScore]) -> dict[str, dict[str, Any]]:
    return {name: score.to_dict() for name, score in methods.items()}


def _with_error(out: dict[str, Any], error: str | None) -> dict[str, Any]:
    if error is not None:
        out["error"] = error
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureDrift:
    """The verdict on one feature: its methods' scores and whether they call it drift.

    ``drifted`` is the methods' vote (``monitoring.drift_vote``); ``error`` says why a
    method could not score the feature (it then counts as not drifted).
    """

    kind: FeatureKind
    drifted: bool
    methods: Mapping[str, DriftScore] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, "drifted": self.drifted, "methods": _scores(self.methods)}
        return _with_error(out, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictionDrift(FeatureDrift):
    """The verdict on the model's prediction, profiled like a feature from ``column``."""

    column: str

    def to_dict(self) -> dict[str, Any]:
        # Not super(): without arguments it fails in a slots dataclass on Python 3.11.
        return {"column": self.column, **FeatureDrift.to_dict(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MultivariateDrift:
    """The verdict of the multivariate methods on the sampled rows of ``columns``."""

    columns: tuple[str, ...]
    drifted: bool
    methods: Mapping[str, DriftScore] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "columns": list(self.columns),
            "drifted": self.drifted,
            "methods": _scores(self.methods),
        }
        return _with_error(out, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetDrift:
    """The verdict on the labels of the window (``labels`` of them) against the reference's."""

    column: str
    labels: int
    drifted: bool
    methods: Mapping[str, DriftScore] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "column": self.column,
            "labels": self.labels,
            "drifted": self.drifted,
            "methods": _scores(self.methods),
        }
        return _with_error(out, self.error)


@dataclass(frozen=True, slots=True)
class DriftWindow:
    """The window a report checked: ``[start, end)`` (unix seconds), and its version filter."""

    start: float
    end: float
    hours: float
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "hours": self.hours, "version": self.version}


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Rows of the checked data (``current``) and of the reference."""

    current: int
    reference: int

    def to_dict(self) -> dict[str, int]:
        return {"current": self.current, "reference": self.reference}


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftReport:
    """One drift check of a model: the verdict per feature, the score, the recommendation.

    ``status`` is ``insufficient_data`` (with a ``message``, no verdict and
    ``NO_ACTION_NEEDED``) when the window held too few rows. ``window`` is None for a
    DataFrame's check. ``data_quality`` is the data-quality section, JSON as the API
    gives it (docs/monitoring.md). ``duration_seconds`` and ``id`` are known once the
    report is stored; ``to_dict`` writes them from then on.
    """

    model: str
    checked_at: float
    source: DriftSource
    rows: RowCounts
    threshold: float
    data_quality: Mapping[str, Any] = field(default_factory=dict)
    status: DriftStatus = "ok"
    message: str | None = None
    drift_detected: bool = False
    drift_score: float = 0.0
    recommendation: Recommendation = "NO_ACTION_NEEDED"
    drifted_features: tuple[str, ...] = ()
    feature_drifts: Mapping[str, FeatureDrift] = field(default_factory=dict)
    multivariate_drift: MultivariateDrift | None = None
    prediction_drift: PredictionDrift | None = None
    target_drift: TargetDrift | None = None
    window: DriftWindow | None = None
    duration_seconds: float | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON objects: what the API answers and the history stores."""
        out: dict[str, Any] = {
            "model": self.model,
            "checked_at": self.checked_at,
            "source": self.source,
            "rows": self.rows.to_dict(),
            "data_quality": dict(self.data_quality),
            "status": self.status,
        }
        if self.message is not None:
            out["message"] = self.message
        out.update(
            drift_detected=self.drift_detected,
            drift_score=self.drift_score,
            threshold=self.threshold,
            recommendation=self.recommendation,
            drifted_features=list(self.drifted_features),
            feature_drifts={name: f.to_dict() for name, f in self.feature_drifts.items()},
            multivariate_drift=_dict_or_none(self.multivariate_drift),
            prediction_drift=_dict_or_none(self.prediction_drift),
            target_drift=_dict_or_none(self.target_drift),
            window=_dict_or_none(self.window),
        )
        if self.duration_seconds is not None:
            out["duration_seconds"] = self.duration_seconds
        if self.id is not None:
            out["id"] = self.id
        return out


def _dict_or_none(
    part: MultivariateDrift | PredictionDrift | TargetDrift | DriftWindow | None,
) -> dict[str, Any] | None:
    return None if part is None else part.to_dict()
