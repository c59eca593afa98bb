"""The ``performance`` trigger: fire on ``performance_degraded``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import Decision, Severity, TriggerContext

__all__ = ["PerformanceTrigger"]


class PerformanceTrigger:
    """Fire on ``performance_degraded`` for the listed metrics, past a relative change.

    Parameters
    ----------
    metrics:
        Only these metrics fire (empty: any metric the performance service reports).
    min_degradation:
        Relative change ``|value - baseline| / |baseline|`` needed to fire (0 fires on
        every degradation event; the performance service already applied
        ``monitoring.performance_threshold``).
    cooldown_seconds:
        After firing, further degradation events of the model are ignored this long.
    use_estimates:
        Also fire on ``performance_estimate_degraded``: the performance estimator's
        estimate (docs/estimation.md) judged worse than the reference while the labels
        lag (default false: only realized metrics fire).

    Example
    -------
    >>> from mlwarden.types import Event
    >>> t = PerformanceTrigger(min_degradation=0.5)
    >>> e = Event(kind="performance_degraded", model="m",
    ...           data={"metric": "mse", "value": 1.2, "baseline": 1.0})
    >>> t.evaluate(TriggerContext(model="m", now=0.0, event=e)).fire
    False
    """

    name = "performance"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"metrics": ["mse"], "min_degradation": 0.2, "cooldown_seconds": 0},
        {"use_estimates": True},
    )

    def __init__(
        self,
        *,
        metrics: Sequence[str] = (),
        min_degradation: float = 0.0,
        cooldown_seconds: float = 3600.0,
        use_estimates: bool = False,
    ) -> None:
        if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
            raise ValueError("option 'metrics' must be an array of metric names")
        if min_degradation < 0:
            raise ValueError("option 'min_degradation' must be >= 0")
        if cooldown_seconds < 0:
            raise ValueError("option 'cooldown_seconds' must be >= 0")
        self.metrics = tuple(metrics)
        self.min_degradation = float(min_degradation)
        if not isinstance(use_estimates, bool):
            raise ValueError("option 'use_estimates' must be true or false")
        self.cooldown_seconds = float(cooldown_seconds)
        self.use_estimates = use_estimates

    def evaluate(self, context: TriggerContext) -> Decision:
        """Fire when a degradation event names a watched metric and clears the threshold."""
        event = context.event
        kinds = ("performance_degraded", "performance_estimate_degraded")
        if event is None or event.kind not in kinds[: 2 if self.use_estimates else 1]:
            return Decision(False)
        estimated = event.kind == "performance_estimate_degraded"
        metric = str(event.data.get("metric", ""))
        if self.metrics and metric not in self.metrics:
            return Decision(False, f"metric {metric!r} not watched")
        value, baseline = event.data.get("value"), event.data.get("baseline")
        change = None
        if isinstance(value, int | float) and isinstance(baseline, int | float) and baseline:
            change = abs(value - baseline) / abs(baseline)
            if math.isfinite(change) and change < self.min_degradation:
                return Decision(False, f"{metric} changed {change:.3g} < {self.min_degradation}")
        what = "estimated performance (labels pending)" if estimated else "performance"
        return Decision(
            True,
            f"{what} degraded: {metric} {value} (baseline {baseline})",
            severity=Severity.WARNING,
            data={
                "metric": metric,
                "value": value,
                "baseline": baseline,
                "change": change,
                "estimated": estimated,
            },
        )


@hookimpl
def mlwarden_triggers() -> list[type]:
    return [PerformanceTrigger]
