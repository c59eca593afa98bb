"""A model's joined outcomes, and the protocol of what serves them.

An outcome is one prediction joined with the label that later arrived for it (by the
prediction's id). The daemon's ingest service keeps them for the label TTL and is an
:class:`OutcomeSource`; a retraining trigger that reads data gets one as
``TriggerContext.outcomes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["OutcomeSource", "Outcomes"]


@dataclass(frozen=True)
class Outcomes:
    """Joined (prediction, label) pairs of a model, oldest first, as numpy arrays.

    ``version`` (str), ``ts`` (prediction time, unix seconds), ``prediction`` and
    ``label`` (float64 for regression, str objects for classification), ``latency``
    (seconds, NaN when not reported), ``error`` (bool: the serving call failed), ``id``,
    and a classifier's ``scores`` as its prediction carried them: an object array whose
    items are None (no scores), a float (a binary model's P(positive class)) or a dict
    class -> probability (a multiclass model); None when the source keeps no scores.
    """

    id: np.ndarray
    version: np.ndarray
    ts: np.ndarray
    prediction: np.ndarray
    label: np.ndarray
    latency: np.ndarray
    error: np.ndarray
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.id)


class OutcomeSource(Protocol):
    """Where a model's joined outcomes are read from (the daemon's ingest service)."""

    async def outcomes(
        self,
        model: str,
        *,
        version: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Outcomes:
        """Joined pairs of ``model`` (optionally one version, prediction time in [since, until))."""
        ...
