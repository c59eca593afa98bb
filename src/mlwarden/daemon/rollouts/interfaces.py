"""What the rollouts service offers other services, as Protocols (wired in daemon/warden.py).

Another service never imports the rollouts service's modules: it is handed the service
as one of these, and may import only this module from ``rollouts/``. A rollout is a
:class:`Rollout`, the dict ``GET /api/rollouts/{id}`` answers.
"""

from __future__ import annotations

from typing import Protocol

from .records import Rollout, RolloutState

__all__ = ["Rollout", "RolloutState", "TrafficControl"]


class TrafficControl(Protocol):
    """A model's traffic table and its rollouts (what an A/B test needs)."""

    def active_rollout(self, model: str) -> Rollout | None:
        """The model's active rollout, or None."""
        ...

    async def traffic(self, model: str) -> dict[str, float]:
        """The table in force; NotFound (404) when none was set and nothing is in production."""
        ...

    async def set_traffic(
        self, model: str, weights: dict[str, float], *, reason: str, actor: str = "mlwarden"
    ) -> dict[str, float]:
        """Persist ``weights``, apply them through the traffic backends."""
        ...

    async def start_rollout(
        self, model: str, version: str, *, strategy: str | None = None, actor: str = "mlwarden"
    ) -> Rollout:
        """Start rolling ``version`` out; Conflict (409) when one is active."""
        ...
