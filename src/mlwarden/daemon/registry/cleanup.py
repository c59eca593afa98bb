"""Cleanup of old model versions: their artifacts and registry entries.

A version is removed when it has been ``deprecated``, ``archived`` or ``failed`` for
more than ``older_than_days`` (counted from its last status change): its MLflow
artifacts (and logged-model entry), its MLflow model version and its registry entry go;
the removal is kept in the transition history and the audit log. Never removed: a
version in production or staging, the rollback target (the latest former production
version that is still deprecated), a version that holds an alias, and artifacts still
used by another remaining version. ``dry_run`` reports the plan without touching
anything.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import NotRequired, TypedDict

from ...errors import InvalidInput
from ..core.context import Context
from . import mlflow as mlf
from .interfaces import VersionRecords
from .records import VersionRecord
from .status import Status
from .tables import aliases_table, transitions_table, versions_table

__all__ = ["REMOVABLE", "CleanupReport", "Kept", "Removal", "cleanup", "plan_cleanup"]

logger = logging.getLogger(__name__)

REMOVABLE = (Status.DEPRECATED, Status.ARCHIVED, Status.FAILED)


class Removal(TypedDict):
    """A version the cleanup removes (or would remove)."""

    model: str
    version: str
    status: str
    mlflow_version: int
    #: ``removed``, or ``kept (used by another version)``; set once planned for a model.
    artifacts: NotRequired[str]
    artifact_uri: NotRequired[str]


class Kept(TypedDict):
    """A removable version the cleanup keeps, and why."""

    model: str
    version: str
    status: str
    reason: str


class CleanupReport(TypedDict):
    """What a cleanup did: ``removed``, or ``would_remove`` on a dry run."""

    dry_run: bool
    older_than_days: float
    removed: NotRequired[list[Removal]]
    would_remove: NotRequired[list[Removal]]
    kept: list[Kept]


def plan_cleanup(
    records: list[VersionRecord],
    rollback_target: str | None,
    aliased: set[str],
    now: float,
    older_than_days: float,
) -> tuple[list[Removal], list[Kept]]:
    """(removals, kept-with-reason) for one model's version records."""
    cutoff = now - older_than_days * 86400
    remove: list[Removal] = []
    kept: list[Kept] = []
    for record in records:
        status = record["status"]
        version = record["version"]
        if status not in REMOVABLE:
            continue
        reason = None
        if version == rollback_target:
            reason = "rollback target"
        elif version in aliased:
            reason = "has an alias"
        elif record["status_changed_at"] > cutoff:
            reason = f"{status} for less than {older_than_days:g} days"
        model = record["model"]
        if reason:
            kept.append({"model": model, "version": version, "status": status, "reason": reason})
        else:
            remove.append(
                {
                    "model": model,
                    "version": version,
                    "status": status,
                    "mlflow_version": record["mlflow_version"],
                }
            )
    return remove, kept


async def cleanup(
    context: Context,
    registry: VersionRecords,
    *,
    older_than_days: float = 30.0,
    dry_run: bool = False,
    model: str | None = None,
    actor: str = "mlwarden",
) -> CleanupReport:
    """Remove old deprecated/archived/failed versions; returns what was (or would be) done."""
    if (
        isinstance(older_than_days, bool)
        or not isinstance(older_than_days, int | float)
        or not math.isfinite(older_than_days)
        or older_than_days < 0
    ):
        raise InvalidInput(f"older_than_days: expected a number >= 0, got {older_than_days!r}")
    if not isinstance(dry_run, bool):
        raise InvalidInput(f"dry_run: expected true or false, got {dry_run!r}")
    models = [model] if model is not None else await registry.model_names()
    now = context.clock()
    removed: list[Removal] = []
    kept: list[Kept] = []
    for name in models:
        records = await registry.versions(name)
        aliased = {v for r in records for v in ([r["version"]] if r["aliases"] else [])}
        target = await registry.rollback_target(name)
        remove, keep = plan_cleanup(records, target, aliased, now, float(older_than_days))
        kept.extend(keep)
        removing = {r["version"] for r in remove}
        remaining_sources = {r["artifact_uri"] for r in records if r["version"] not in removing}
        by_version = {r["version"]: r for r in records}
        for entry in remove:
            record = by_version[entry["version"]]
            shared = record["artifact_uri"] in remaining_sources
            entry["artifacts"] = "kept (used by another version)" if shared else "removed"
            entry["artifact_uri"] = record["artifact_uri"]
            if not dry_run:
                await _remove(context, record, delete_artifacts=not shared)
            removed.append(entry)
    result: CleanupReport
    if dry_run:
        result = {
            "dry_run": dry_run,
            "older_than_days": older_than_days,
            "would_remove": removed,
            "kept": kept,
        }
    else:
        result = {
            "dry_run": dry_run,
            "older_than_days": older_than_days,
            "removed": removed,
            "kept": kept,
        }
    if not dry_run and removed:
        await context.audit.record(
            actor=actor,
            action="cleanup",
            target=",".join(f"{r['model']}@{r['version']}" for r in removed),
            outcome="ok",
            detail={"older_than_days": older_than_days, "removed": len(removed)},
        )
    return result


async def _remove(context: Context, record: VersionRecord, *, delete_artifacts: bool) -> None:
    client = context.tracking.client
    model, version = record["model"], record["version"]
    if delete_artifacts:
        await asyncio.to_thread(
            mlf.delete_artifacts, client, record["artifact_uri"], record.get("model_id")
        )
    await asyncio.to_thread(mlf.delete_version, client, model, record["mlflow_version"])
    async with context.store.begin() as conn:
        where = (versions_table.c.model == model, versions_table.c.version == version)
        await conn.execute(versions_table.delete().where(*where))
        await conn.execute(
            aliases_table.delete().where(
                aliases_table.c.model == model, aliases_table.c.version == version
            )
        )
        await conn.execute(
            transitions_table.insert(),
            {
                "model": model,
                "version": version,
                "from_status": record["status"],
                "to_status": "removed",
                "actor": "cleanup",
                "reason": "cleanup",
                "ts": context.clock(),
            },
        )
    context.metrics.model_info.remove(model, version, record["status"])
    logger.info(
        "cleanup removed %s %s (MLflow version %s)", model, version, record["mlflow_version"]
    )
