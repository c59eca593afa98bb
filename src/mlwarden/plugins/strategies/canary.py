"""The ``canary`` strategy: step weights with an analysis against the stable version at each."""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import Analysis, RolloutView, Step
from .base import Strategy

__all__ = ["CanaryStrategy"]


class CanaryStrategy(Strategy):
    """Shift traffic to the candidate in steps, analysing each step before the next.

    Parameters
    ----------
    steps:
        The candidate's traffic share at each step, in percent, increasing (default
        5, 25, 50, 100). A step of 100 is the promotion itself: after the last step
        below 100 passes its analysis, the candidate is promoted.
    interval_seconds, failure_budget, min_samples, max_error_rate, ...:
        See :class:`~mlwarden.plugins.strategies.base.Strategy` and ``Thresholds``.

    Each step runs for ``interval_seconds``; then canary and stable are compared over
    that same interval. Too few samples means wait (the window grows); a failed
    analysis retries the step while the failure budget lasts, then rolls back.

    Example
    -------
    >>> from mlwarden.types import RolloutView
    >>> canary = CanaryStrategy(steps=[10, 50, 100], interval_seconds=60)
    >>> canary.first(RolloutView("m", "2.0.0", "1.0.0", -1, 0.0, 0.0)).weight
    0.1
    """

    name = "canary"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"steps": [10, 100], "interval_seconds": 1, "failure_budget": 2},
    )

    def __init__(
        self, *, steps: list[float] | tuple[float, ...] = (5, 25, 50, 100), **options: Any
    ) -> None:
        super().__init__(**options)
        if not isinstance(steps, list | tuple) or not steps:
            raise ValueError(
                f"option 'steps': expected a non-empty array of percents, got {steps!r}"
            )
        values = []
        for value in steps:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 < value <= 100)
            ):
                raise ValueError(f"option 'steps': expected percents in (0, 100], got {value!r}")
            values.append(float(value))
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError(
                f"option 'steps': expected strictly increasing percents, got {list(steps)!r}"
            )
        # The 100% step is the promotion; the analysed steps are the ones below it.
        self.steps = tuple(v for v in values if v < 100)

    def _extra_options(self) -> str:
        return ", steps"

    def options(self) -> dict[str, Any]:
        return {"steps": [*self.steps, 100.0], **super().options()}

    def first(self, view: RolloutView) -> Step:
        if not self.steps:
            return Step("promote", reason="no steps below 100%: promote directly")
        return Step(
            "traffic",
            weight=self.steps[0] / 100,
            index=0,
            reason=f"canary step 1 of {len(self.steps)}: {self.steps[0]:g}%",
        )

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        nxt = view.step + 1
        if nxt >= len(self.steps):
            on_pass = Step("promote", reason=f"all {len(self.steps)} canary steps passed")
        else:
            on_pass = Step(
                "traffic",
                weight=self.steps[nxt] / 100,
                index=nxt,
                reason=f"canary step {nxt + 1} of {len(self.steps)}: {self.steps[nxt]:g}%",
            )
        return self.judge(view, analysis, on_pass)


@hookimpl
def mlwarden_deployment_strategies() -> list[type]:
    return [CanaryStrategy]
