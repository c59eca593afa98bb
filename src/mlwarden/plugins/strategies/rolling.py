"""The ``rolling`` strategy: replicas replaced in batches, with a health gate per batch."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import Analysis, RolloutView, Step
from .base import Strategy

__all__ = ["RollingStrategy"]


class RollingStrategy(Strategy):
    """Replace the baseline's replicas with the candidate's, ``batch_size`` at a time.

    Parameters
    ----------
    replicas:
        How many replicas serve the model (default 4). Replica ``i`` of the candidate
        takes ``1 / replicas`` of the traffic, so after ``k`` replaced replicas the
        candidate serves ``k / replicas`` of it.
    batch_size:
        Replicas replaced per batch (default 1).
    check_model_metric:
        Whether the health gate also compares the model metric (default False: a
        health gate holds serving errors and latency only, as a readiness probe does).

    Each batch runs ``interval_seconds``, then its health gate (an analysis against the
    remaining baseline replicas over the same interval) must pass before the next one;
    the last batch is the promotion.

    Example
    -------
    >>> from mlwarden.types import RolloutView
    >>> rolling = RollingStrategy(replicas=4, batch_size=2)
    >>> rolling.first(RolloutView("m", "2.0.0", "1.0.0", -1, 0.0, 0.0)).weight
    0.5
    """

    name = "rolling"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {},
        {"replicas": 3, "batch_size": 1, "check_model_metric": True},
    )

    def __init__(
        self,
        *,
        replicas: int = 4,
        batch_size: int = 1,
        check_model_metric: bool = False,
        **options: Any,
    ) -> None:
        if not check_model_metric:
            options.setdefault("max_metric_increase", None)
        super().__init__(**options)
        for key, value in (("replicas", replicas), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"option {key!r}: expected an integer >= 1, got {value!r}")
        if batch_size > replicas:
            raise ValueError(
                f"option 'batch_size': expected at most replicas ({replicas}), got {batch_size}"
            )
        if not isinstance(check_model_metric, bool):
            raise ValueError(
                f"option 'check_model_metric': expected true or false, got {check_model_metric!r}"
            )
        self.replicas = replicas
        self.batch_size = batch_size
        self.check_model_metric = check_model_metric
        self.batches = math.ceil(replicas / batch_size)

    def _extra_options(self) -> str:
        return ", replicas, batch_size, check_model_metric"

    def options(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "batch_size": self.batch_size,
            "check_model_metric": self.check_model_metric,
            **super().options(),
        }

    def _batch(self, index: int) -> Step:
        replaced = min(self.replicas, (index + 1) * self.batch_size)
        return Step(
            "traffic",
            weight=replaced / self.replicas,
            index=index,
            reason=f"batch {index + 1} of {self.batches}: "
            f"{replaced} of {self.replicas} replicas on the candidate",
        )

    def first(self, view: RolloutView) -> Step:
        if self.batches == 1:
            return Step("promote", reason="a single batch replaces every replica")
        return self._batch(0)

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        nxt = view.step + 1
        if nxt >= self.batches - 1:
            on_pass = Step(
                "promote", reason=f"health gates of {nxt} batches passed; replacing the last batch"
            )
        else:
            on_pass = self._batch(nxt)
        return self.judge(view, analysis, on_pass)


@hookimpl
def mlwarden_deployment_strategies() -> list[type]:
    return [RollingStrategy]
