"""What the rollout controller needs of a deployment strategy plugin.

A strategy class comes from the ``mlwarden_deployment_strategies`` hook; the built-ins
share ``mlwarden.plugins.strategies.Strategy``, a third-party one needs no base class
(docs/plugin_hooks.md). :class:`DeploymentStrategy` is exactly what the controller and
the evidence call on an instance, so either is typed by it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ...types import Analysis, RolloutView, Step, Thresholds

if TYPE_CHECKING:
    from ...plugins.strategies import Strategy

__all__ = ["DeploymentStrategy"]


class DeploymentStrategy(Protocol):
    """A strategy instance, built with a rollout's options (see ``mlwarden.types.rollouts``)."""

    @property
    def thresholds(self) -> Thresholds:
        """What each analysis holds the candidate to."""
        ...

    def options(self) -> dict[str, Any]:
        """The options in force, stored with the rollout (JSON)."""
        ...

    def first(self, view: RolloutView) -> Step:
        """The first step of a rollout that has just started."""
        ...

    def due(self, view: RolloutView) -> bool:
        """Whether the step in force has run long enough to be analysed."""
        ...

    def windows(self, view: RolloutView) -> tuple[tuple[float, float], tuple[float, float]]:
        """The (since, until) windows of the candidate and of the baseline to compare."""
        ...

    def decide(self, view: RolloutView, analysis: Analysis) -> Step:
        """The next step given the analysis of the interval that just elapsed."""
        ...


if TYPE_CHECKING:
    # The built-ins' base class is a DeploymentStrategy (mypy checks this assignment).
    _BUILT_IN: type[DeploymentStrategy] = Strategy
