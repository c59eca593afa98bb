"""The ``shadow`` strategy: the candidate sees mirrored traffic; its answers are discarded."""

from __future__ import annotations

from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import Analysis, RolloutView, Step
from .base import Strategy

__all__ = ["ShadowStrategy"]


class ShadowStrategy(Strategy):
    """Mirror the baseline's traffic to the candidate, then compare them offline.

    Users keep getting the baseline's answers (weight 0 for the candidate): the gateway
    sends each request to both, records both predictions on the ingest path, and
    discards the candidate's. After ``interval_seconds`` the two are compared over the
    same requests' window; a pass promotes the candidate (``promote = true``, the
    default, after the confirm-promotion hook) or ends the rollout as ``completed``
    with the comparison stored (``promote = false``); a failure retries within the
    failure budget, then ends the mirror (rolled back; users never saw the candidate).

    Example
    -------
    >>> from mlwarden.types import RolloutView
    >>> step = ShadowStrategy().first(RolloutView("m", "2.0.0", "1.0.0", -1, 0.0, 0.0))
    >>> (step.weight, step.mirror)
    (0.0, True)
    """

    name = "shadow"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"promote": False})

    def __init__(self, *, promote: bool = True, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(promote, bool):
            raise ValueError(f"option 'promote': expected true or false, got {promote!r}")
        self.promote = promote

    def _extra_options(self) -> str:
        return ", promote"

    def options(self) -> dict[str, Any]:
        return {"promote": self.promote, **super().options()}

    def first(self, view: RolloutView) -> Step:
        return Step(
            "traffic",
            weight=0.0,
            index=0,
            mirror=True,
            reason="shadow: the candidate receives mirrored traffic",
        )

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        if self.promote:
            on_pass = Step("promote", reason="shadow comparison passed")
        else:
            on_pass = Step(
                "complete", reason="shadow comparison passed; promotion is off (promote = false)"
            )
        return self.judge(view, analysis, on_pass)


@hookimpl
def mlwarden_deployment_strategies() -> list[type]:
    return [ShadowStrategy]
