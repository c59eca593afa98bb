"""The registry's records: their types match the tables, and a row round-trips."""

from __future__ import annotations

import sqlalchemy as sa

from mlwarden.daemon.registry.gates import GateCheck, GateReport
from mlwarden.daemon.registry.input import clean_registration
from mlwarden.daemon.registry.records import TransitionRecord, VersionRecord
from mlwarden.daemon.registry.tables import (
    record_from_row,
    row_values,
    transitions_table,
    versions_table,
)


def columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_the_record_types_name_every_column():
    assert VersionRecord.__required_keys__ == set(columns(versions_table)) | {"aliases"}
    assert TransitionRecord.__required_keys__ == set(columns(transitions_table))


def test_a_version_row_round_trips_in_column_order():
    report = GateReport(True, [GateCheck("max_mse", "mse", 0.01, 0.05, True)], 5.0, None)
    record: VersionRecord = {
        "model": "btc", "version": "1.2.0", "mlflow_version": 3, "status": "staging",
        "model_uri": "runs:/r/model", "source": "s", "artifact_uri": "a", "run_id": "r",
        "model_id": None, "framework": "sklearn", "inputs": ["x1"], "metrics": {"mse": 0.01},
        "params": {"lr": "0.1"}, "tags": {"team": "quant"}, "lineage": {"holdout": "h"},
        "data_window": {"start": "2026-01-01", "end": None}, "parent": None, "author": "ana",
        "description": "", "gate_report": report.to_dict(), "created_at": 1.0,
        "status_changed_at": 2.0, "aliases": ["champion"],
    }  # fmt: skip
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        versions_table.create(conn)
        conn.execute(versions_table.insert(), row_values(record))
        row = conn.execute(sa.select(versions_table)).mappings().one()
    again = record_from_row(row, {"champion": "1.2.0", "challenger": "1.3.0"})
    assert again == record
    assert list(again) == [*columns(versions_table), "aliases"]
    assert again["gate_report"] == {
        "passed": True,
        "evaluated_at": 5.0,
        "production_version": None,
        "checks": [
            {"name": "max_mse", "metric": "mse", "measured": 0.01, "threshold": 0.05,
             "passed": True, "detail": ""},
        ],
    }  # fmt: skip


def test_a_clean_registration_keeps_what_was_given():
    given = clean_registration(
        {"run_id": "r1", "artifact_path": "/model/", "bump": "minor", "author": " ana ",
         "data_window": {"end": 5, "start": None}, "params": {"layers": [64, 32]}}
    )  # fmt: skip
    assert given == {
        "model_uri": "runs:/r1/model", "bump": "minor", "author": "ana", "metrics": {},
        "params": {"layers": "[64, 32]"}, "tags": {}, "lineage": {}, "description": "",
        "data_window": {"start": None, "end": 5},
    }  # fmt: skip
    assert "version" not in given and "parent" not in given
