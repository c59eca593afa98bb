"""What happens and what is decided: events, notifications, trigger decisions.

Every state change of the daemon is an :class:`Event` (the ``mlwarden_event`` hook
receives each one); an alert becomes a :class:`Notification` for a notifier plugin; a
retraining trigger sees a :class:`TriggerContext` and answers with a :class:`Decision`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from .outcomes import OutcomeSource

__all__ = ["Decision", "Event", "Notification", "Severity", "TriggerContext"]


class Severity(StrEnum):
    """How urgent an event, a notification or a trigger's decision is."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


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
class TriggerContext:
    """What a retraining trigger's ``evaluate`` sees.

    ``event`` is the event being dispatched (``None`` on a periodic tick);
    ``last_fired`` is when this trigger last fired for this model (Unix time, persisted
    across restarts; ``None`` if never); ``armed_at`` is when the scheduler first
    watched this (model, trigger) pair (persisted); ``outcomes`` is the model's joined
    outcomes, for triggers that read data: ``await context.outcomes.outcomes(model,
    since=...)`` (``None`` where no outcome source is available).
    """

    model: str
    now: float
    event: Event | None = None
    last_fired: float | None = None
    armed_at: float | None = None
    outcomes: OutcomeSource | None = None
