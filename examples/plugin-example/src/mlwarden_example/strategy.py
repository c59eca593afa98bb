"""The ``halfway`` deployment strategy: one analysed step at a share, then promotion."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mlwarden.types import Analysis, RolloutView, Step, Thresholds


class HalfwayStrategy:
    """Give the candidate ``percent`` of the traffic, analyse it once, then promote.

    A strategy needs no base class: the rollout controller calls ``first(view)``,
    ``due(view)``, ``windows(view)`` and ``decide(view, analysis)``, reads
    ``thresholds``, and stores ``options()`` with the rollout so that a restarted
    daemon rebuilds the strategy exactly. Too few samples waits; a failed analysis
    rolls back at once (no failure budget).

    Parameters
    ----------
    percent:
        The candidate's share during the analysed step, in (0, 100) (default 50).
    interval_seconds:
        How long the step runs before its analysis (default 600).
    """

    name = "halfway"

    def __init__(
        self, *, percent: float = 50.0, interval_seconds: float = 600.0, **thresholds: Any
    ) -> None:
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not (0 < percent < 100)
        ):
            raise ValueError(f"option 'percent': expected a number in (0, 100), got {percent!r}")
        if (
            isinstance(interval_seconds, bool)
            or not isinstance(interval_seconds, int | float)
            or interval_seconds <= 0
        ):
            raise ValueError(
                f"option 'interval_seconds': expected a positive number, got {interval_seconds!r}"
            )
        self.percent = float(percent)
        self.interval_seconds = float(interval_seconds)
        self.failure_budget = 0
        self.thresholds = Thresholds(**thresholds)

    def options(self) -> dict[str, Any]:
        return {
            "percent": self.percent,
            "interval_seconds": self.interval_seconds,
            **asdict(self.thresholds),
        }

    def first(self, view: RolloutView) -> Step:
        return Step(
            "traffic",
            weight=self.percent / 100,
            index=0,
            reason=f"halfway: {self.percent:g}% to the candidate",
        )

    def due(self, view: RolloutView) -> bool:
        return view.elapsed >= self.interval_seconds

    def windows(self, view: RolloutView) -> tuple[tuple[float, float], tuple[float, float]]:
        return (view.step_started_at, view.now), (view.step_started_at, view.now)

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        if analysis.verdict == "inconclusive":
            return Step("wait", reason=analysis.reason)
        if analysis.verdict == "fail":
            return Step("rollback", reason=f"halfway analysis failed: {analysis.reason}")
        return Step("promote", reason="halfway analysis passed")
