"""What a trainer plugin is asked to do and what it returns.

The job queue hands a trainer's ``train`` a :class:`TrainingJob`; the trainer answers
with a :class:`TrainingResult` or raises ``mlwarden.errors.TrainingFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainingJob", "TrainingResult"]


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
