"""What a rollback of production may restore, checked (:func:`rollback_plan`).

Promotions and rollbacks themselves are the rollouts service's (daemon/rollouts/): a
direct switch and a deployment strategy alike make one serving change (registry,
aliases and traffic table together). Before a rollback's change it asks the registry,
through ``VersionLifecycle.rollback_plan``, which version comes back and which goes.
"""

from __future__ import annotations

from ...errors import Conflict
from .interfaces import VersionRecords
from .records import RollbackPlan
from .status import Status

__all__ = ["rollback_plan"]


async def rollback_plan(
    registry: VersionRecords, model: str, version: str | None, *, seen: str | None
) -> RollbackPlan:
    """The version a rollback restores (``version``, else the previous production one)
    and the one it replaces; Conflict when it may not (``VersionLifecycle.rollback_plan``).

    ``seen``: the production version the caller saw when it asked; when production
    moved since (another daemon rolled back first), Conflict, not a second rollback.
    """
    current = await registry.production(model)
    now = current["version"] if current else None
    if version is None and now != seen:
        raise Conflict(
            f"model {model!r}: production moved from {seen} to {now} while this rollback "
            "waited (another rollback or promotion); nothing was rolled back"
        )
    target = version if version is not None else await registry.rollback_target(model)
    if target is None:
        raise Conflict(f"model {model!r} has no previous production version to roll back to")
    record = await registry.get(model, target)
    if current is not None and current["version"] == target:
        raise Conflict(f"model {model!r} version {target} is already in production")
    if record["status"] != Status.DEPRECATED:
        raise Conflict(
            f"model {model!r} version {target} is {record['status']}: only a deprecated former "
            "production version can be rolled back to"
        )
    return {"version": target, "previous_version": now}
