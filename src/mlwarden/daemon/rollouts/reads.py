"""The read side of the rollouts service: rollouts, their analyses, a model's deployment.

Mixed into :class:`~mlwarden.daemon.rollouts.service.RolloutService`, which owns the
state these read.
"""

from __future__ import annotations

from typing import TypedDict

import sqlalchemy as sa

from ...errors import NotFound
from ..core.context import Context
from ..registry.interfaces import VersionLifecycle
from .records import (
    AnalysisRecord,
    Rollout,
    analyses_table,
    analysis_from_row,
    public,
    read_rollout,
    rollout_from_row,
    rollouts_table,
)
from .serving import Serving

__all__ = ["Deployment", "RolloutReads", "RolloutReport"]


class RolloutReport(Rollout):
    """A rollout with every analysis of it (measured values and thresholds)."""

    analyses: list[AnalysisRecord]


class Deployment(TypedDict):
    """A model's deployment (``GET /api/models/{name}/deployment``)."""

    model: str
    traffic: dict[str, float]
    #: The active (or latest) rollout.
    rollout: RolloutReport | None
    #: The version receiving a mirrored copy of the traffic (a shadow candidate).
    mirror: str | None
    gateway: bool


class RolloutReads:
    """Reads of rollouts and deployments (the rollouts service's read side)."""

    context: Context
    registry: VersionLifecycle

    @property
    def serving(self) -> Serving:
        raise NotImplementedError

    @property
    def active(self) -> dict[str, Rollout]:
        raise NotImplementedError

    async def traffic(self, model: str) -> dict[str, float]:
        raise NotImplementedError

    async def get(self, rollout_id: str) -> Rollout:
        return await read_rollout(self.context.store, rollout_id)

    async def history(self, model: str, limit: int = 20) -> list[Rollout]:
        async with self.context.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(rollouts_table)
                    .where(rollouts_table.c.model == model)
                    .order_by(rollouts_table.c.started_at.desc())
                    .limit(limit)
                )
            ).all()
        return [public(rollout_from_row(r)) for r in rows]

    async def analyses(self, rollout_id: str) -> list[AnalysisRecord]:
        async with self.context.store.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(analyses_table)
                    .where(analyses_table.c.rollout_id == rollout_id)
                    .order_by(analyses_table.c.id)
                )
            ).all()
        return [analysis_from_row(r) for r in rows]

    async def deployment(self, model: str) -> Deployment:
        """The active (or latest) rollout with its analyses, and the traffic table.

        Read under the model's serving lock, so that a rollout and its table are seen
        as one serving change left them; NotFound for a model neither configured nor
        registered."""
        if model not in await self.registry.model_names():
            raise NotFound(f"model {model!r} is neither configured nor registered")
        async with self.serving.lock(model):
            try:
                table = await self.traffic(model)
            except NotFound:
                table = {}
            history = await self.history(model, limit=1)
            rollout: RolloutReport | None = None
            if history:
                rollout = {**history[0], "analyses": await self.analyses(history[0]["id"])}
        return {
            "model": model,
            "traffic": table,
            "rollout": rollout,
            "mirror": self.mirror_target(model),
            "gateway": self.context.config.deployment.gateway,
        }

    def mirror_target(self, model: str) -> str | None:
        rollout = self.active.get(model)
        return rollout["candidate"] if rollout and rollout["mirror"] else None
