"""The alerts' records: their types match the tables, and a row reads back."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mlwarden.daemon.alerts.outbox_records import OutboxEntry, outbox_table
from mlwarden.daemon.alerts.records import Alert, alert_from_row, alerts_table
from mlwarden.daemon.alerts.silences import SilenceRecord, silences_table


def columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_the_record_types_name_every_column():
    assert set(Alert.__annotations__) == set(columns(alerts_table)) | {"silenced_by"}
    assert set(OutboxEntry.__annotations__) == set(columns(outbox_table))
    assert set(SilenceRecord.__annotations__) == set(columns(silences_table)) | {"state"}


def test_an_alert_row_reads_back_decoded_in_column_order():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        alerts_table.create(conn)
        conn.execute(
            alerts_table.insert(),
            {"fingerprint": "f", "rule": "ModelDataDrift", "labels": json.dumps({"model": "m"}),
             "model": "m", "version": "", "severity": "warning", "status": "firing",
             "summary": "drift", "data": json.dumps({"drift_score": 0.5}), "events": 2,
             "starts_at": 1.0, "updated_at": 2.0, "notified": '["ops"]', "resolve_pending": 0},
        )  # fmt: skip
        row = conn.execute(sa.select(alerts_table)).mappings().one()
    alert = alert_from_row(row)
    assert list(alert) == columns(alerts_table)
    assert alert["labels"] == {"model": "m"} and alert["data"] == {"drift_score": 0.5}
    assert alert["notified"] == ["ops"] and alert["resolve_pending"] is False
    assert alert["ends_at"] is None and alert["id"] == 1
