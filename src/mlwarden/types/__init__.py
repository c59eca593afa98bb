"""The frozen data classes that cross the plugin boundary: the plugin contract's data.

Everything a plugin exchanges with mlwarden is importable from here, as a third party
would import it; the modules split it along the data:

- ``events``: :class:`Severity`, :class:`Event`, :class:`Notification`,
  :class:`Decision`, :class:`TriggerContext` (what triggers see);
- ``drift``: :class:`FeatureData`, :class:`DriftScore`, ``FeatureKind`` (what drift
  methods see and answer), :class:`DriftReport` with :class:`FeatureDrift`,
  :class:`PredictionDrift`, :class:`TargetDrift`, :class:`MultivariateDrift`,
  :class:`DriftWindow`, :class:`RowCounts`, ``DriftSource``, ``DriftStatus``, and
  ``Recommendation`` / ``RECOMMENDATIONS`` (what a drift check reports);
- ``rollouts``: :class:`RolloutView`, :class:`Analysis`, :class:`Check`,
  :class:`Step`, :class:`Thresholds`, ``Verdict``, ``Action`` (the deployment-strategy
  contract) and :class:`AliasRegistry` (what a traffic backend is given);
- ``training``: :class:`TrainingJob`, :class:`TrainingResult` (the trainer contract);
- ``estimation``: :class:`EstimationData`, :class:`MetricEstimate`,
  :class:`PerformanceEstimate`, ``EstimationTask`` (the performance-estimator contract);
- ``outcomes``: :class:`Outcomes` (a model's joined prediction/label pairs) and
  :class:`OutcomeSource`, the protocol of what serves them (``TriggerContext.outcomes``).

This package imports nothing of ``mlwarden.plugins`` or ``mlwarden.daemon``.
"""

from __future__ import annotations

from .drift import (
    RECOMMENDATIONS,
    DriftReport,
    DriftScore,
    DriftSource,
    DriftStatus,
    DriftWindow,
    FeatureData,
    FeatureDrift,
    FeatureKind,
    MultivariateDrift,
    PredictionDrift,
    Recommendation,
    RowCounts,
    TargetDrift,
)
from .estimation import EstimationData, EstimationTask, MetricEstimate, PerformanceEstimate
from .events import Decision, Event, Notification, Severity, TriggerContext
from .outcomes import Outcomes, OutcomeSource
from .rollouts import Action, AliasRegistry, Analysis, Check, RolloutView, Step, Thresholds, Verdict
from .training import TrainingJob, TrainingResult

__all__ = [
    "RECOMMENDATIONS",
    "Action",
    "AliasRegistry",
    "Analysis",
    "Check",
    "Decision",
    "DriftReport",
    "DriftScore",
    "DriftSource",
    "DriftStatus",
    "DriftWindow",
    "EstimationData",
    "EstimationTask",
    "Event",
    "FeatureData",
    "FeatureDrift",
    "FeatureKind",
    "MetricEstimate",
    "MultivariateDrift",
    "Notification",
    "OutcomeSource",
    "Outcomes",
    "PerformanceEstimate",
    "PredictionDrift",
    "Recommendation",
    "RolloutView",
    "RowCounts",
    "Severity",
    "Step",
    "TargetDrift",
    "Thresholds",
    "TrainingJob",
    "TrainingResult",
    "TriggerContext",
    "Verdict",
]
