"""The ``blue_green`` strategy: an optional shadow bake, a switch to 100%, a bake, a release."""

from __future__ import annotations

from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import Analysis, RolloutView, Step
from .base import Strategy

__all__ = ["BlueGreenStrategy"]

_SHADOW, _BAKE = 0, 1


class BlueGreenStrategy(Strategy):
    """Switch all traffic to the candidate at once, bake it, and keep the way back open.

    Parameters
    ----------
    shadow_bake_seconds:
        Pre-promotion analysis: mirror the traffic to the candidate for this long and
        compare it with the baseline over the same window before switching (0, the
        default, skips it; the rollout's pre-flight — registry gates and a load check
        of the candidate — still runs).
    interval_seconds:
        The bake period after the switch. The post-promotion analysis compares the
        candidate over the bake with the baseline over the equally long window just
        before the switch. A failure switches straight back (the baseline was never
        released); a pass promotes for good and releases the baseline.

    The switch itself asks the confirm-promotion hook (``Step.confirm``).

    Example
    -------
    >>> from mlwarden.types import RolloutView
    >>> step = BlueGreenStrategy().first(RolloutView("m", "2.0.0", "1.0.0", -1, 0.0, 0.0))
    >>> (step.action, step.weight, step.confirm)
    ('traffic', 1.0, True)
    """

    name = "blue_green"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"shadow_bake_seconds": 60})

    def __init__(self, *, shadow_bake_seconds: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        if (
            isinstance(shadow_bake_seconds, bool)
            or not isinstance(shadow_bake_seconds, int | float)
            or shadow_bake_seconds < 0
        ):
            raise ValueError(
                f"option 'shadow_bake_seconds': expected a number >= 0, got {shadow_bake_seconds!r}"
            )
        self.shadow_bake_seconds = float(shadow_bake_seconds)

    def _extra_options(self) -> str:
        return ", shadow_bake_seconds"

    def options(self) -> dict[str, Any]:
        return {"shadow_bake_seconds": self.shadow_bake_seconds, **super().options()}

    def _switch(self, view: RolloutView) -> Step:
        return Step(
            "traffic",
            weight=1.0,
            index=_BAKE,
            confirm=True,
            memo={"switched_at": view.now},
            reason="blue-green switch: the candidate takes all traffic; baking",
        )

    def first(self, view: RolloutView) -> Step:
        if self.shadow_bake_seconds > 0:
            return Step(
                "traffic",
                weight=0.0,
                index=_SHADOW,
                mirror=True,
                reason="blue-green shadow bake: mirrored traffic before the switch",
            )
        return self._switch(view)

    def due(self, view: RolloutView) -> bool:
        if view.step == _SHADOW:
            return view.elapsed >= self.shadow_bake_seconds
        return view.elapsed >= self.interval_seconds

    def windows(self, view: RolloutView) -> tuple[tuple[float, float], tuple[float, float]]:
        if view.step != _BAKE:
            return super().windows(view)
        switched = float(view.memo.get("switched_at", view.step_started_at))
        length = view.now - switched
        return (switched, view.now), (switched - length, switched)

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        if view.step == _SHADOW:
            return self.judge(view, analysis, self._switch(view))
        step = self.judge(
            view,
            analysis,
            Step(
                "promote", confirm=False, reason="post-promotion analysis passed; baseline released"
            ),
        )
        if step.action == "rollback":
            return Step("rollback", reason=f"switching back: {step.reason}")
        return step


@hookimpl
def mlwarden_deployment_strategies() -> list[type]:
    return [BlueGreenStrategy]
