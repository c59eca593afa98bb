"""The frozen data classes that cross the plugin boundary: the plugin contract's data.

Everything a plugin exchanges with mlwarden is importable from here, as a third party
would import it; the modules split it along the data:

- ``events``: :class:`Severity`, :class:`Event`, :class:`Notification`,
  :class:`Decision`, :class:`TriggerContext` (what triggers see);
- ``drift``: :class:`FeatureData`, :class:`DriftScore`, ``FeatureKind`` and
  ``RECOMMENDATIONS`` (what drift methods see and answer);
- ``rollouts``: :class:`RolloutView`, :class:`Analysis`, :class:`Check`,
  :class:`Step`, :class:`Thresholds`, ``Verdict``, ``Action`` (the deployment-strategy
  contract) and :class:`AliasRegistry` (what a traffic backend is given);
- ``training``: :class:`TrainingJob`, :class:`TrainingResult` (the trainer contract);
- ``outcomes``: :class:`Outcomes` (a model's joined prediction/label pairs) and
  :class:`OutcomeSource`, the protocol of what serves them (``TriggerContext.outcomes``).

This package imports nothing of ``mlwarden.plugins`` or ``mlwarden.daemon``.
"""

from __future__ import annotations

from .drift import RECOMMENDATIONS, DriftScore, FeatureData, FeatureKind
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
    "DriftScore",
    "Event",
    "FeatureData",
    "FeatureKind",
    "Notification",
    "OutcomeSource",
    "Outcomes",
    "RolloutView",
    "Severity",
    "Step",
    "Thresholds",
    "TrainingJob",
    "TrainingResult",
    "TriggerContext",
    "Verdict",
]
