"""The experiments service's tables, its records, and the arms it feeds the statistics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import InvalidInput, NotFound
from ...stats import Arm, Evaluation, metric_values
from ...types import Outcomes
from ..core.config import ModelConfig
from ..core.leases import fence
from ..core.store import Schema, Store, create_tables
from ..rollouts.interfaces import Rollout

__all__ = [
    "EXPERIMENTS_SCHEMA",
    "EvaluationSummary",
    "ExperimentPromotion",
    "ExperimentRecord",
    "ExperimentStatus",
    "arm_from_outcomes",
    "default_metric",
    "evaluation_from_row",
    "evaluations_table",
    "experiments_table",
    "locked_record",
    "parse_arms",
    "public",
    "record_from_row",
    "store_evaluation",
]

ExperimentStatus = Literal["running", "concluded", "stopped"]

_meta = sa.MetaData()
experiments_table = sa.Table(
    "experiments",
    _meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version_a", sa.String(128), nullable=False),
    sa.Column("version_b", sa.String(128), nullable=False),
    sa.Column("weight_b", sa.Float, nullable=False),
    sa.Column("duration_hours", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # running | concluded | stopped
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=False),
    sa.Column("concluded_at", sa.Float),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("settings", sa.Text, nullable=False),
    sa.Column("auto_promote", sa.Boolean, nullable=False),
    sa.Column("previous_traffic", sa.Text, nullable=False),
    sa.Column("sequential_state", sa.Text, nullable=False, default="{}"),
    sa.Column("evaluations", sa.Integer, nullable=False, default=0),
    sa.Column("result", sa.Text),
    sa.Column("recommendation", sa.String(32)),
    sa.Column("winner", sa.String(128)),
    sa.Column("promotion", sa.Text),
    sa.Column("mlflow_run_id", sa.String(64)),
    # At most one running experiment per model, enforced by the database.
    sa.Index(
        "ux_experiments_running",
        "model",
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
    sa.Index("ix_experiments_started", "started_at"),
)
evaluations_table = sa.Table(
    "experiment_evaluations",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("experiment_id", sa.String(32), nullable=False, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("recommendation", sa.String(32), nullable=False),
    sa.Column("p_value", sa.Float),
    sa.Column("samples_a", sa.Integer, nullable=False),
    sa.Column("samples_b", sa.Integer, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
)
EXPERIMENTS_SCHEMA = Schema("experiments", [create_tables(experiments_table, evaluations_table)])


class ExperimentPromotion(TypedDict):
    """What became of a winning B: ``not_started`` (auto-promotion off, see ``reason``),
    ``pending`` (being started), ``started`` (its ``rollout``) or ``failed`` (``error``)."""

    status: Literal["not_started", "pending", "started", "failed"]
    reason: NotRequired[str]
    rollout: NotRequired[Rollout]
    error: NotRequired[str]


class ExperimentRecord(TypedDict):
    """An experiment: an ``experiments`` row with its JSON columns decoded, as the
    service returns it; :func:`public` makes what the API shows of it."""

    id: str
    name: str
    model: str
    version_a: str
    version_b: str
    weight_b: float
    duration_hours: float
    status: ExperimentStatus
    started_at: float
    ends_at: float
    concluded_at: float | None
    actor: str
    auto_promote: bool
    #: The traffic table restored when the experiment ends.
    previous_traffic: dict[str, float] | None
    evaluations: int
    #: The latest evaluation (``Evaluation.to_dict()`` with the winner's version).
    result: dict[str, Any] | None
    recommendation: str | None
    winner: str | None
    promotion: ExperimentPromotion | None
    mlflow_run_id: str | None
    #: ``AnalysisSettings`` fixed at the start, as JSON.
    settings: dict[str, Any]
    #: The sequential tests' state by name (``SequentialState.to_dict()``); internal,
    #: :func:`public` leaves it out.
    _state: NotRequired[dict[str, dict[str, Any]]]
    traffic_split: float
    weights: dict[str, float]


class EvaluationSummary(TypedDict):
    """One evaluation of an experiment (an ``experiment_evaluations`` row, summed up)."""

    ts: float
    recommendation: str
    p_value: float | None
    samples_a: int
    samples_b: int


def _decoded(text: str | None) -> Any:
    return json.loads(text) if text else None


def record_from_row(row: sa.Row[Any]) -> ExperimentRecord:
    """An experiment's record from its row (the API's order: the columns, then the
    decoded settings and what is derived from the split)."""
    r = row._mapping
    weight_b = r["weight_b"]
    return {
        "id": r["id"],
        "name": r["name"],
        "model": r["model"],
        "version_a": r["version_a"],
        "version_b": r["version_b"],
        "weight_b": weight_b,
        "duration_hours": r["duration_hours"],
        "status": r["status"],
        "started_at": r["started_at"],
        "ends_at": r["ends_at"],
        "concluded_at": r["concluded_at"],
        "actor": r["actor"],
        "auto_promote": bool(r["auto_promote"]),
        "previous_traffic": _decoded(r["previous_traffic"]),
        "evaluations": r["evaluations"],
        "result": _decoded(r["result"]),
        "recommendation": r["recommendation"],
        "winner": r["winner"],
        "promotion": _decoded(r["promotion"]),
        "mlflow_run_id": r["mlflow_run_id"],
        "settings": json.loads(r["settings"]),
        "_state": json.loads(r["sequential_state"] or "{}"),
        "traffic_split": weight_b,
        "weights": {r["version_a"]: 1.0 - weight_b, r["version_b"]: weight_b},
    }


def public(record: ExperimentRecord) -> ExperimentRecord:
    """The record as the API shows it (internal sequential state left out)."""
    out = record.copy()
    out.pop("_state", None)
    return out


@asynccontextmanager
async def locked_record(
    store: Store, experiment_id: str
) -> AsyncIterator[tuple[AsyncConnection | None, ExperimentRecord]]:
    """The experiment's record, its row locked until the block's writes commit.

    On PostgreSQL ``SELECT … FOR UPDATE`` in a transaction the block writes in (the
    connection it yields). On SQLite one daemon runs, and this daemon's tasks take
    turns on the asyncio lock: the record is read and the block writes in a
    transaction of its own (None), as a long open SQLite transaction would hold up
    every other writer.
    """
    if store.is_sqlite:
        row = await store.row_by_id(
            experiments_table, experiment_id, missing=f"no experiment with id {experiment_id!r}"
        )
        yield None, record_from_row(row)
        return
    t = experiments_table
    async with store.begin() as conn:
        locked = (
            await conn.execute(sa.select(t).where(t.c.id == experiment_id).with_for_update())
        ).first()
        if locked is None:
            raise NotFound(f"no experiment with id {experiment_id!r}")
        yield conn, record_from_row(locked)


async def store_evaluation(
    conn: AsyncConnection,
    record: ExperimentRecord,
    evaluation: Evaluation,
    data: dict[str, Any],
) -> None:
    """Store one evaluation and the sequential state it leaves, in ``conn``'s transaction."""
    now = data["evaluated_at"]
    states = {k: s.to_dict() for k, s in evaluation.states.items()}
    await fence(conn)  # the loop's evaluation: only while this daemon owns the model
    await conn.execute(
        evaluations_table.insert().values(
            experiment_id=record["id"],
            ts=now,
            recommendation=str(evaluation.recommendation),
            p_value=data["p_value"],
            samples_a=data["samples"]["A"],
            samples_b=data["samples"]["B"],
            result=json.dumps(data),
        )
    )
    await conn.execute(
        experiments_table.update()
        .where(experiments_table.c.id == record["id"])
        .values(
            result=json.dumps(data),
            recommendation=str(evaluation.recommendation),
            sequential_state=json.dumps(states),
            evaluations=experiments_table.c.evaluations + 1,
        )
    )


def evaluation_from_row(row: RowMapping) -> EvaluationSummary:
    return {
        "ts": row["ts"],
        "recommendation": row["recommendation"],
        "p_value": row["p_value"],
        "samples_a": row["samples_a"],
        "samples_b": row["samples_b"],
    }


def default_metric(model_config: ModelConfig | None) -> str:
    if model_config is None:
        return "squared_error"
    if model_config.task == "classification":
        return "accuracy"
    return "strategy_return" if model_config.trading else "squared_error"


def arm_from_outcomes(metric: str, outcomes: Outcomes) -> Arm:
    """The arm's per-request metric (successful calls with a usable label) and guardrails.

    Guardrails count serving *calls*: the gateway times a batch once and gives every
    record in it the batch's latency (and error flag), so rows sharing a timestamp and a
    latency are one observation; counting them as many would fake precision
    (pseudo-replication). Rows without a latency stay one observation each.
    """
    error = np.asarray(outcomes.error, bool)
    ok = ~error
    values = metric_values(metric, outcomes.prediction[ok], outcomes.label[ok])
    values = values[np.isfinite(values)]
    latency = np.asarray(outcomes.latency, float)
    timed = np.isfinite(latency)
    calls = np.unique(
        np.column_stack([np.asarray(outcomes.ts, float)[timed], latency[timed], error[timed]]),
        axis=0,
    )
    return Arm(
        values=values,
        latency=calls[:, 1],
        error=np.concatenate([calls[:, 2].astype(bool), error[~timed]]),
        assigned=int(error.size),
    )


def parse_arms(model_a: object, model_b: object, model: str | None = None) -> tuple[str, str, str]:
    """``(model, version_a, version_b)`` from ``"name@version"`` arms, or from ``model``
    plus plain versions. Both arms must be versions of one model (one traffic table)."""
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidInput(f"'model' must be a non-empty string, got {model!r}")
    names, versions = [], []
    for key, arm in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(arm, str) or not arm.strip():
            raise InvalidInput(
                f"{key!r} is required: expected 'name@version' (or a version with 'model'), "
                f"got {arm!r}"
            )
        name, sep, version = arm.rpartition("@")
        if not sep:
            if model is None:
                raise InvalidInput(
                    f"{key!r} must be 'name@version' when 'model' is not given, got {arm!r}"
                )
            name, version = model, arm
        if not name or not version:
            raise InvalidInput(f"{key!r} must be 'name@version', got {arm!r}")
        names.append(name)
        versions.append(version)
    if names[0] != names[1] or (model is not None and names[0] != model):
        raise InvalidInput(
            f"both arms must be versions of one model (they share its traffic table), got "
            f"{names[0]!r} and {names[1]!r}" + (f" with model {model!r}" if model else "")
        )
    return names[0], versions[0], versions[1]
