"""The frozen data classes that cross the plugin boundary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
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
]


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

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


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened: every state change of the daemon is one.

    ``kind`` is a short snake_case name (``drift_detected``, ``performance_degraded``,
    ``training_failed``, ``rollout_rolled_back``, ...). ``data`` holds the measured values
    and thresholds that explain it.
    """

    kind: str
    model: str | None = None
    version: str | None = None
    severity: Severity = Severity.INFO
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model": self.model,
            "version": self.version,
            "severity": str(self.severity),
            "message": self.message,
            "data": self.data,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """A message for people, as a notifier plugin receives it."""

    title: str
    body: str
    severity: Severity = Severity.INFO
    status: Literal["firing", "resolved"] = "firing"
    fingerprint: str = ""
    model: str | None = None
    version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A trigger's answer: fire or not, and why."""

    fire: bool
    reason: str = ""
    severity: Severity = Severity.INFO
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """What a trainer plugin is asked to do."""

    id: str
    model: str
    reason: str
    tracking_uri: str
    output_path: str
    log_path: str
    timeout_seconds: float
    options: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class TrainingResult:
    """What a trainer returns: the model it logged to MLflow and its metrics."""

    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """What a retraining trigger's ``evaluate`` sees.

    ``event`` is the event being dispatched (``None`` on a periodic tick);
    ``last_fired`` is when this trigger last fired for this model (Unix time, persisted
    across restarts; ``None`` if never); ``armed_at`` is when the scheduler first
    watched this (model, trigger) pair (persisted); ``outcomes`` reads the model's joined
    (prediction, label) outcomes, for triggers that read data.
    """

    model: str
    now: float
    event: Event | None = None
    last_fired: float | None = None
    armed_at: float | None = None
    outcomes: OutcomeSource | None = None


@dataclass(frozen=True)
class Outcomes:
    """Joined (prediction, label) pairs of a model, oldest first, as numpy arrays.

    ``version`` (str), ``ts`` (prediction time, unix seconds), ``prediction`` and
    ``label`` (float64 for regression, str objects for classification), ``latency``
    (seconds, NaN when not reported), ``error`` (bool: the serving call failed), ``id``.
    """

    id: np.ndarray
    version: np.ndarray
    ts: np.ndarray
    prediction: np.ndarray
    label: np.ndarray
    latency: np.ndarray
    error: np.ndarray

    def __len__(self) -> int:
        return len(self.id)


class OutcomeSource(Protocol):
    """Where a model's joined (prediction, label) outcomes are read (the ingest service)."""

    async def outcomes(
        self,
        model: str,
        *,
        version: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Outcomes:
        """Joined pairs of ``model`` (one version; prediction time in [since, until))."""
        ...


class AliasRegistry(Protocol):
    """The model registry as a traffic backend sees it (``registry=`` at instantiation).

    Versions are the semantic version strings; a record is the dict of
    ``GET /api/models/{name}/versions/{version}`` (``mlflow_version`` among its keys).
    """

    async def production(self, model: str) -> dict[str, Any] | None:
        """The record of the version in production, or None."""
        ...

    async def set_alias(self, model: str, alias: str, version: str | None) -> None:
        """Point ``alias`` at ``version`` (None removes it), in mlwarden and in MLflow."""
        ...

    async def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        """Set a tag on the version's MLflow model version."""
        ...


# The deployment-strategy contract, defined next to the strategies' base class and
# re-exported here so that a third-party strategy needs only ``mlwarden.types``.
from .plugins.strategies import Analysis, Check, RolloutView, Step, Thresholds  # noqa: E402
