"""The experiments' records: their types match the tables, and a row reads back."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mlwarden.daemon.experiments.records import (
    EvaluationSummary,
    ExperimentRecord,
    evaluations_table,
    experiments_table,
    public,
    record_from_row,
)


def columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_the_record_types_name_every_column():
    stored = set(columns(experiments_table)) - {"sequential_state"}
    derived = {"_state", "traffic_split", "weights"}
    assert set(ExperimentRecord.__annotations__) == stored | derived
    summed_up = set(columns(evaluations_table)) - {"id", "experiment_id", "result"}
    assert set(EvaluationSummary.__annotations__) == summed_up


def test_an_experiment_row_reads_back_in_the_order_the_api_shows():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        experiments_table.create(conn)
        conn.execute(
            experiments_table.insert(),
            {"id": "e1", "name": "ab", "model": "m", "version_a": "1.0.0", "version_b": "1.1.0",
             "weight_b": 0.25, "duration_hours": 2.0, "status": "running", "started_at": 1.0,
             "ends_at": 7201.0, "actor": "ana", "settings": json.dumps({"metric": "mse"}),
             "auto_promote": 1, "previous_traffic": json.dumps({"1.0.0": 1.0}),
             "sequential_state": json.dumps({"primary": {"looks": 2}})},
        )  # fmt: skip
        row = conn.execute(sa.select(experiments_table)).one()
    record = record_from_row(row)
    shown = public(record)
    assert record["_state"] == {"primary": {"looks": 2}} and "_state" not in shown
    assert shown["auto_promote"] is True and shown["result"] is None
    assert shown["weights"] == {"1.0.0": 0.75, "1.1.0": 0.25} and shown["traffic_split"] == 0.25
    assert list(shown) == [
        *(c for c in columns(experiments_table) if c not in ("settings", "sequential_state")),
        "settings", "traffic_split", "weights",
    ]  # fmt: skip
