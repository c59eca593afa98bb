"""Reading the registry's tables: versions, their aliases, transitions, a model's summary.

Plain functions over the store, so that the service's lifecycle code (service.py) and
its readers share one way of turning rows into records.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import NotFound
from ..core.config import ModelConfig
from ..core.store import Store
from .records import TransitionRecord, VersionRecord
from .semver import parse_semver
from .status import Status
from .tables import (
    aliases_table,
    record_from_row,
    transition_from_row,
    transitions_table,
    versions_table,
)

__all__ = [
    "ModelSummary",
    "fetch_aliases",
    "fetch_history",
    "fetch_version",
    "fetch_versions",
    "registered_models",
    "summarize",
]


class ModelSummary(TypedDict):
    """A model at a glance (``GET /api/models/{name}``)."""

    name: str
    configured: bool
    task: str | None
    #: The model's ``[models.gates]`` as configured.
    gates: dict[str, Any]
    production_version: str | None
    latest_version: str | None
    versions: int
    by_status: dict[str, int]
    #: Every alias of the model -> the version it points at.
    aliases: dict[str, str]
    rollback_target: str | None


async def fetch_aliases(conn: AsyncConnection, model: str) -> dict[str, str]:
    """Every alias of ``model`` -> the version it points at."""
    rows = await conn.execute(
        sa.select(aliases_table.c.alias, aliases_table.c.version).where(
            aliases_table.c.model == model
        )
    )
    return {alias: version for alias, version in rows.all()}


async def registered_models(store: Store) -> set[str]:
    """The models with at least one registered version."""
    async with store.connect() as conn:
        rows = await conn.execute(sa.select(versions_table.c.model).distinct())
        return {r[0] for r in rows}


async def fetch_version(store: Store, model: str, version: str) -> VersionRecord:
    """The record of one version; NotFound names the model and version."""
    query = sa.select(versions_table).where(
        versions_table.c.model == model, versions_table.c.version == version
    )
    async with store.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"model {model!r} has no version {version!r}")
        aliases = await fetch_aliases(conn, model)
    return record_from_row(row, aliases)


async def fetch_versions(store: Store, model: str) -> list[VersionRecord]:
    """Every version of ``model``, oldest semantic version first."""
    query = sa.select(versions_table).where(versions_table.c.model == model)
    async with store.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
        aliases = await fetch_aliases(conn, model)
    records = [record_from_row(r, aliases) for r in rows]
    return sorted(records, key=lambda r: parse_semver(r["version"]))


async def fetch_history(
    store: Store, model: str, version: str | None = None
) -> list[TransitionRecord]:
    """Status transitions of ``model`` (of one version when given), oldest first."""
    query = sa.select(transitions_table).where(transitions_table.c.model == model)
    if version is not None:
        query = query.where(transitions_table.c.version == version)
    async with store.connect() as conn:
        rows = (await conn.execute(query.order_by(transitions_table.c.id))).mappings().all()
    return [transition_from_row(r) for r in rows]


def summarize(
    model: str,
    records: list[VersionRecord],
    aliases: dict[str, str],
    config: ModelConfig | None,
    rollback_target: str | None,
) -> ModelSummary:
    """A model's summary from its versions (oldest first), aliases and configuration."""
    production = next((r for r in records if r["status"] == Status.PRODUCTION), None)
    return {
        "name": model,
        "configured": config is not None,
        "task": config.task if config else None,
        "gates": dict(config.gates) if config else {},
        "production_version": production["version"] if production else None,
        "latest_version": records[-1]["version"] if records else None,
        "versions": len(records),
        "by_status": dict(Counter(r["status"] for r in records)),
        "aliases": aliases,
        "rollback_target": rollback_target,
    }
