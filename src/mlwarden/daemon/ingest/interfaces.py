"""What the ingest service offers other services, as Protocols (wired in daemon/warden.py).

Another service never imports the ingest service's modules: it is handed the ingest
service as one of these, and may import only this module from ``ingest/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ...types import OutcomeSource
from ..core.config import ModelConfig
from ..profiles.profile import Profile
from ..profiles.reference import Reference

__all__ = [
    "PredictionCounter",
    "PredictionSink",
    "ScoredPredictions",
    "WatchedModel",
    "WindowSource",
]


@dataclass(frozen=True)
class ScoredPredictions:
    """A window's stored predictions with the classifier's scores (what CBPE reads).

    ``prediction`` (str objects or float64) per prediction of the window; ``scores``
    rows x classes float64 for the predictions that carried scores, None if none did
    (``classes`` is ``()`` for a binary model's ``probability``: one column, P(+));
    ``unscored`` counts the window's predictions without scores.
    """

    prediction: np.ndarray
    scores: np.ndarray | None
    classes: tuple[str, ...]
    unscored: int = 0


@dataclass(frozen=True)
class WatchedModel:
    """A watched model once its reference is loaded: its configuration and reference.

    ``reference`` is None when the model has none (``reference_status`` says why:
    ``none``, or ``error: ...`` when it could not be loaded).
    """

    config: ModelConfig
    reference: Reference | None
    reference_status: str
    #: The reference in force was uploaded over the API (not ``models.reference``).
    uploaded: bool = False


class WindowSource(OutcomeSource, Protocol):
    """Window profiles and outcomes of the watched models (what drift checks read)."""

    def watched(self) -> list[str]:
        """The models whose reference profile is loaded (the ones a loop checks)."""
        ...

    async def watched_model(self, model: str) -> WatchedModel:
        """``model`` once ready; NotFound (404) names the watched models."""
        ...

    async def window(
        self, model: str, since: float, until: float, version: str | None = None
    ) -> Profile:
        """The merged profile of ``model``'s buckets starting in [since, until)."""
        ...

    def rejections(self, model: str) -> Mapping[str, int]:
        """Batches of ``model`` refused since start, by reason (schema violations)."""
        ...

    async def scored_predictions(
        self, model: str, since: float, until: float, version: str | None = None
    ) -> ScoredPredictions:
        """The stored predictions of ``model`` in [since, until) with their scores."""
        ...


class PredictionCounter(Protocol):
    """How many predictions a model has (the training-data check)."""

    async def count_predictions(self, model: str, *, since: float | None = None) -> int:
        """Predictions accepted for ``model`` (with ``ts >= since``, when given)."""
        ...


class PredictionSink(OutcomeSource, Protocol):
    """Where served predictions are recorded (the gateway) and outcomes read (analysis)."""

    async def record_predictions(self, model: str, payload: object) -> dict[str, Any]:
        """Validate and store one batch, as ``POST /api/models/{name}/predictions``."""
        ...

    async def stored_ids(self, model: str, ids: list[str]) -> list[str]:
        """``ids`` of ``model`` as the store keys them (keyed digests with encryption on)."""
        ...
