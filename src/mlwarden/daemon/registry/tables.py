"""The registry's own tables: versions, status transitions, aliases.

MLflow is the source of truth for runs, models and artifacts; these tables hold the
registry's view (semantic version, lifecycle status, gate report, lineage) so that it
survives restarts and answers without a round trip to the tracking store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.store import Schema, create_tables
from .records import TransitionRecord, VersionRecord
from .status import Status

__all__ = [
    "REGISTRY_SCHEMA",
    "aliases_table",
    "log_transition",
    "record_from_row",
    "row_values",
    "transition_from_row",
    "transitions_table",
    "versions_table",
]

_meta = sa.MetaData()

versions_table = sa.Table(
    "registry_versions",
    _meta,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("mlflow_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("model_uri", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("model_id", sa.String(64)),
    sa.Column("framework", sa.String(64)),
    sa.Column("inputs", sa.Text, nullable=False, default="null"),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
    sa.Column("lineage", sa.Text, nullable=False, default="{}"),
    sa.Column("data_window", sa.Text, nullable=False, default="null"),
    sa.Column("parent", sa.String(64)),
    sa.Column("author", sa.String(128), nullable=False, default=""),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("gate_report", sa.Text, nullable=False, default="null"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("status_changed_at", sa.Float, nullable=False),
    sa.Index("ix_registry_versions_status", "model", "status"),
)

transitions_table = sa.Table(
    "registry_transitions",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("from_status", sa.String(32)),
    sa.Column("to_status", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Index("ix_registry_transitions_model", "model", "id"),
)

aliases_table = sa.Table(
    "registry_aliases",
    _meta,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("alias", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
)

REGISTRY_SCHEMA = Schema(
    "registry", [create_tables(versions_table, transitions_table, aliases_table)]
)

_JSON_COLUMNS = ("inputs", "metrics", "params", "tags", "lineage", "data_window", "gate_report")


def _decoded(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def record_from_row(row: RowMapping, aliases: Mapping[str, str]) -> VersionRecord:
    """The record of a ``registry_versions`` row; ``aliases`` are the model's (alias ->
    version), those pointing at this version are kept (sorted)."""
    version = row["version"]
    # In the order of the table's columns, as the API has always shown them.
    return {
        "model": row["model"],
        "version": version,
        "mlflow_version": row["mlflow_version"],
        "status": row["status"],
        "model_uri": row["model_uri"],
        "source": row["source"],
        "artifact_uri": row["artifact_uri"],
        "run_id": row["run_id"],
        "model_id": row["model_id"],
        "framework": row["framework"],
        "inputs": _decoded(row["inputs"]),
        "metrics": _decoded(row["metrics"]),
        "params": _decoded(row["params"]),
        "tags": _decoded(row["tags"]),
        "lineage": _decoded(row["lineage"]),
        "data_window": _decoded(row["data_window"]),
        "parent": row["parent"],
        "author": row["author"],
        "description": row["description"],
        "gate_report": _decoded(row["gate_report"]),
        "created_at": row["created_at"],
        "status_changed_at": row["status_changed_at"],
        "aliases": sorted(a for a, v in aliases.items() if v == version),
    }


def row_values(record: VersionRecord) -> dict[str, object]:
    """Column values for a version record (JSON columns serialised, aliases left out)."""
    values: dict[str, object] = {c.name: record.get(c.name) for c in versions_table.columns}
    for key in _JSON_COLUMNS:
        values[key] = json.dumps(record.get(key), sort_keys=True)
    return values


def transition_from_row(row: RowMapping) -> TransitionRecord:
    return {
        "id": row["id"],
        "model": row["model"],
        "version": row["version"],
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "actor": row["actor"],
        "reason": row["reason"],
        "ts": row["ts"],
    }


async def log_transition(
    conn: AsyncConnection,
    model: str,
    version: str,
    old: Status | None,
    new: Status,
    actor: str,
    reason: str,
    ts: float,
) -> None:
    await conn.execute(
        transitions_table.insert(),
        {
            "model": model,
            "version": version,
            "from_status": old.value if old else None,
            "to_status": new.value,
            "actor": actor,
            "reason": reason,
            "ts": ts,
        },
    )
