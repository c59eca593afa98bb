"""Direct switches of production: promote a version, roll back to the previous one.

The version enters ``production`` (the ``champion`` alias follows) and the version
that held production is deprecated. A promotion through a deployment strategy, and
the rollback of an active rollout, are the rollouts service's (daemon/rollouts/).
What a rollback of production may restore (:func:`rollback_plan`) is checked here
for both: the rollouts service asks for it through ``VersionLifecycle.rollback_plan``
before its one serving change (registry, aliases and traffic table together).
"""

from __future__ import annotations

from ...errors import Conflict
from .interfaces import VersionLifecycle, VersionRecords
from .records import DirectPromotion, DirectRollback, RollbackPlan
from .status import Status

__all__ = ["promote", "rollback", "rollback_plan"]


async def promote(
    registry: VersionLifecycle, model: str, version: str, *, actor: str, strategy: str | None
) -> DirectPromotion:
    """Put ``version`` in production (from validation through passing gates, or staging).

    ``strategy`` is what the caller asked for (``direct`` or none), reported back.
    """
    record = await registry.get(model, version)
    previous = await registry.production(model)
    if record["status"] == Status.PRODUCTION:
        raise Conflict(f"model {model!r} version {version} is already in production")
    reason = f"promoted by {actor}" + (f" (strategy {strategy})" if strategy else "")
    if record["status"] == Status.VALIDATION:
        await registry.transition(model, version, Status.STAGING, actor=actor, reason=reason)
    record = await registry.transition(
        model, version, Status.PRODUCTION, actor=actor, reason=reason
    )
    return {
        "model": model,
        "version": version,
        "strategy": "direct",
        "requested_strategy": strategy,
        "previous_version": previous["version"] if previous else None,
        "record": record,
    }


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


async def rollback(
    registry: VersionLifecycle, model: str, version: str | None, *, actor: str, seen: str | None
) -> DirectRollback:
    """Restore the previous production version (or ``version``); the current one is
    deprecated. ``seen`` as for :func:`rollback_plan`."""
    plan = await rollback_plan(registry, model, version, seen=seen)
    target, previous = plan["version"], plan["previous_version"]
    reason = f"rolled back by {actor}" + (f" from {previous}" if previous else "")
    record = await registry.transition(model, target, Status.PRODUCTION, actor=actor, reason=reason)
    return {"model": model, "version": target, "previous_version": previous, "record": record}
