"""Persistence of rollouts and their analyses (tables owned by the ``rollouts`` service)."""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

import sqlalchemy as sa

from ...types import Action, Step
from ..core.store import Schema, Store, create_tables
from .serving_stats import serving_stats_table
from .traffic import TRAFFIC_SCHEMA, serving_table

__all__ = [
    "ACTIVE",
    "ROLLOUTS_SCHEMA",
    "TERMINAL",
    "AnalysisRecord",
    "Rollout",
    "RolloutState",
    "StepRecord",
    "analyses_table",
    "analysis_from_row",
    "public",
    "read_rollout",
    "rollout_from_row",
    "rollouts_table",
    "row_values",
    "shadow_table",
    "step_record",
]

#: States of a rollout. ``pending`` -> ``progressing`` (at step i) <-> ``paused`` ->
#: ``promoted`` | ``rolled_back`` | ``failed`` | ``completed`` (shadow without promotion).
RolloutState = Literal[
    "pending", "progressing", "paused", "promoted", "rolled_back", "failed", "completed"
]
ACTIVE: tuple[RolloutState, ...] = ("pending", "progressing", "paused")
TERMINAL: tuple[RolloutState, ...] = ("promoted", "rolled_back", "failed", "completed")

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
#: ``id`` is the request id as the ingest store keys it (a keyed digest with encryption
#: on: ingest/ids.py).
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
    [
        *TRAFFIC_SCHEMA,
        create_tables(rollouts_table, analyses_table, shadow_table),
        create_tables(serving_table),
        create_tables(serving_stats_table),  # the gateways' calls, every daemon's
    ],
)


class StepRecord(TypedDict):
    """A strategy's :class:`~mlwarden.types.Step` as JSON: the step a confirm-promotion
    hook holds (``held``), and the ``next_step`` the hook is shown."""

    action: Action
    weight: float | None
    index: int | None
    mirror: bool
    confirm: bool | None
    reason: str
    memo: dict[str, Any] | None


class Rollout(TypedDict):
    """A rollout: a ``rollouts`` row with its JSON columns decoded, as the controller
    keeps it and the API shows it (``GET /api/rollouts/{id}``)."""

    id: str
    model: str
    candidate: str
    baseline: str | None
    strategy: str
    #: The strategy's options in force, stored so that a resumed rollout keeps them.
    options: dict[str, Any]
    state: RolloutState
    step: int
    weight: float
    mirror: bool
    failures: int
    #: The strategy's own scratch space (``RolloutView.memo``).
    memo: dict[str, Any]
    held: StepRecord | None
    step_started_at: float
    next_analysis_at: float
    started_at: float
    updated_at: float
    finished_at: float | None
    actor: str
    reason: str
    active: bool
    #: The controller's cache of the latest analysis (``Analysis.to_dict()``), carried by
    #: its events; :func:`public` leaves it out.
    last_analysis: NotRequired[dict[str, Any]]


class AnalysisRecord(TypedDict):
    """One analysis of a rollout's step and what was decided on it."""

    step: int
    ts: float
    verdict: str
    action: str
    reason: str
    since: float
    until: float
    #: Requests and labelled outcomes per side (and the baseline's own window, when it
    #: differs from the candidate's).
    samples: dict[str, float]
    #: ``Check.to_dict()`` of every check held.
    checks: list[dict[str, Any]]
    #: The strategy's reason for the step it took.
    decision: str


def rollout_from_row(row: sa.Row[Any]) -> Rollout:
    """A rollout as the API and the controller see it (JSON columns decoded)."""
    r = row._mapping
    held = r["held"]
    # In the order of the table's columns, as the API has always shown them.
    return {
        "id": r["id"],
        "model": r["model"],
        "candidate": r["candidate"],
        "baseline": r["baseline"],
        "strategy": r["strategy"],
        "options": json.loads(r["options"]),
        "state": r["state"],
        "step": r["step"],
        "weight": r["weight"],
        "mirror": bool(r["mirror"]),
        "failures": r["failures"],
        "memo": json.loads(r["memo"]),
        "held": json.loads(held) if held else None,
        "step_started_at": r["step_started_at"],
        "next_analysis_at": r["next_analysis_at"],
        "started_at": r["started_at"],
        "updated_at": r["updated_at"],
        "finished_at": r["finished_at"],
        "actor": r["actor"],
        "reason": r["reason"],
        "active": r["state"] in ACTIVE,
    }


async def read_rollout(store: Store, rollout_id: str) -> Rollout:
    """The stored rollout ``rollout_id``; NotFound (404) naming it when there is none."""
    row = await store.row_by_id(
        rollouts_table, rollout_id, missing=f"no rollout with id {rollout_id!r}"
    )
    return rollout_from_row(row)


def row_values(rollout: Rollout) -> dict[str, object]:
    """The ``rollouts`` columns of a rollout (JSON columns serialised)."""
    names = {c.name for c in rollouts_table.columns}
    out: dict[str, object] = {k: v for k, v in rollout.items() if k in names}
    out["options"] = json.dumps(rollout["options"])
    out["memo"] = json.dumps(rollout["memo"])
    out["held"] = json.dumps(rollout["held"]) if rollout.get("held") else None
    return out


def public(rollout: Rollout) -> Rollout:
    """A rollout as the API shows it (the controller's cached last analysis left out)."""
    out = rollout.copy()
    out.pop("last_analysis", None)
    return out


def step_record(step: Step) -> StepRecord:
    return {
        "action": step.action,
        "weight": step.weight,
        "index": step.index,
        "mirror": step.mirror,
        "confirm": step.confirm,
        "reason": step.reason,
        "memo": step.memo,
    }


def analysis_from_row(row: sa.Row[Any]) -> AnalysisRecord:
    """An analysis as the API shows it: the row's step, time and action with the stored
    analysis (``Analysis.to_dict()``) and the decision."""
    detail = json.loads(row.detail)
    return {
        "step": row.step,
        "ts": row.ts,
        "verdict": detail["verdict"],
        "action": row.action,
        "reason": detail["reason"],
        "since": detail["since"],
        "until": detail["until"],
        "samples": detail["samples"],
        "checks": detail["checks"],
        "decision": detail["decision"],
    }
