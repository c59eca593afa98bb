"""Persistence of rollouts and their analyses (tables owned by the ``rollouts`` service)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from ..core.store import Schema, create_tables
from .traffic import TRAFFIC_SCHEMA

__all__ = [
    "ACTIVE",
    "ROLLOUTS_SCHEMA",
    "TERMINAL",
    "analyses_table",
    "public",
    "rollout_from_row",
    "rollouts_table",
    "shadow_table",
]

#: States of a rollout. ``pending`` -> ``progressing`` (at step i) <-> ``paused`` ->
#: ``promoted`` | ``rolled_back`` | ``failed`` | ``completed`` (shadow without promotion).
ACTIVE = ("pending", "progressing", "paused")
TERMINAL = ("promoted", "rolled_back", "failed", "completed")

_meta = sa.MetaData()
rollouts_table = sa.Table(
    "rollouts",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("candidate", sa.String(128), nullable=False),
    sa.Column("baseline", sa.String(128)),
    sa.Column("strategy", sa.String(128), nullable=False),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("mirror", sa.Boolean, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("memo", sa.Text, nullable=False),
    sa.Column("held", sa.Text),  # the step a confirm-promotion hook is holding (JSON)
    sa.Column("step_started_at", sa.Float, nullable=False),
    sa.Column("next_analysis_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)
analyses_table = sa.Table(
    "rollout_analyses",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "rollout_id", sa.String(32), sa.ForeignKey("rollouts.id"), nullable=False, index=True
    ),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

#: Predictions of a shadow (mirrored) candidate, kept to join the labels of the requests
#: they mirrored: the user-facing prediction owns the request id on the ingest path.
shadow_table = sa.Table(
    "shadow_predictions",
    _meta,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("version", sa.String(128), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("prediction", sa.Text),  # JSON
    sa.Column("latency", sa.Float),
    sa.Column("error", sa.Boolean, nullable=False),
    sa.Index("ix_shadow_model_version_ts", "model", "version", "ts"),
)

ROLLOUTS_SCHEMA = Schema(
    "rollouts",
    [*TRAFFIC_SCHEMA, create_tables(rollouts_table, analyses_table, shadow_table)],
)


def rollout_from_row(row: Any) -> dict[str, Any]:
    """A rollout as the API and the controller see it (JSON columns decoded)."""
    out = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    out["options"] = json.loads(out["options"])
    out["memo"] = json.loads(out["memo"])
    out["held"] = json.loads(out["held"]) if out.get("held") else None
    out["mirror"] = bool(out["mirror"])
    out["active"] = out["state"] in ACTIVE
    return out


def public(rollout: dict[str, Any]) -> dict[str, Any]:
    """A rollout as the API shows it (the controller's cached last analysis left out)."""
    return {k: v for k, v in rollout.items() if k != "last_analysis"}
