"""The ``drift`` trigger: fire on a ``drift_detected`` event whose recommendation asks for it."""

from __future__ import annotations

from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import RECOMMENDATIONS, Decision, Severity, TriggerContext

__all__ = ["RECOMMENDATIONS", "DriftTrigger"]


class DriftTrigger:
    """Fire on ``drift_detected`` when the recommendation and the score clear thresholds.

    Parameters
    ----------
    min_recommendation:
        ``RETRAIN_SOON`` (default) or ``RETRAIN_IMMEDIATELY``: the mildest
        recommendation that fires.
    min_drift_score:
        The event's ``drift_score`` (share of drifted features) must be at least this.
    cooldown_seconds:
        After firing, further drift events of the model are ignored for this long.

    Example
    -------
    >>> from mlwarden.types import Event
    >>> t = DriftTrigger(min_recommendation="RETRAIN_IMMEDIATELY")
    >>> e = Event(kind="drift_detected", model="m", data={"recommendation": "RETRAIN_SOON"})
    >>> t.evaluate(TriggerContext(model="m", now=0.0, event=e)).fire
    False
    """

    name = "drift"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"min_recommendation": "RETRAIN_IMMEDIATELY", "min_drift_score": 0.5},
    )

    def __init__(
        self,
        *,
        min_recommendation: str = "RETRAIN_SOON",
        min_drift_score: float = 0.0,
        cooldown_seconds: float = 3600.0,
    ) -> None:
        if min_recommendation not in RECOMMENDATIONS[1:]:
            raise ValueError(
                "option 'min_recommendation' must be RETRAIN_SOON or RETRAIN_IMMEDIATELY, "
                f"got {min_recommendation!r}"
            )
        if not 0 <= min_drift_score <= 1:
            raise ValueError("option 'min_drift_score' must be in [0, 1]")
        if cooldown_seconds < 0:
            raise ValueError("option 'cooldown_seconds' must be >= 0")
        self.min_recommendation = min_recommendation
        self.min_drift_score = float(min_drift_score)
        self.cooldown_seconds = float(cooldown_seconds)

    def evaluate(self, context: TriggerContext) -> Decision:
        """Fire when a drift event's recommendation and score clear the thresholds."""
        event = context.event
        if event is None or event.kind != "drift_detected":
            return Decision(False)
        recommendation = str(event.data.get("recommendation", "NO_ACTION_NEEDED"))
        rank = RECOMMENDATIONS.index(recommendation) if recommendation in RECOMMENDATIONS else 0
        if rank < RECOMMENDATIONS.index(self.min_recommendation):
            return Decision(False, f"recommendation {recommendation} below threshold")
        score = event.data.get("drift_score")
        if isinstance(score, int | float) and score < self.min_drift_score:
            return Decision(False, f"drift score {score} < {self.min_drift_score}")
        severity = Severity.CRITICAL if rank == 2 else Severity.WARNING
        return Decision(
            True,
            f"drift detected ({recommendation}, drift score {score})",
            severity=severity,
            data={"recommendation": recommendation, "drift_score": score},
        )


@hookimpl
def mlwarden_triggers() -> list[type]:
    return [DriftTrigger]
