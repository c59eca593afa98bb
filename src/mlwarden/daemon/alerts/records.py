"""The alerts table and the alert record the service keeps and hands out."""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

__all__ = ["Alert", "AlertStatus", "alert_from_row", "alerts_table"]

AlertStatus = Literal["firing", "resolved"]

_meta = sa.MetaData()
alerts_table = sa.Table(
    "alerts",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # firing | resolved
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("starts_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("ends_at", sa.Float, nullable=True),
    sa.Column("notified_at", sa.Float, nullable=True),
    sa.Column("notified", sa.Text, nullable=False),  # JSON list of notifier names
    sa.Column("resolve_pending", sa.Boolean, nullable=False),
)


class Alert(TypedDict):
    """An alert: an ``alerts`` row with its JSON columns decoded (``GET /api/alerts``)."""

    id: int
    #: The identity of the alert: a hash of its labels (also PagerDuty's dedup key).
    fingerprint: str
    rule: str
    labels: dict[str, str]
    #: The model and version of the latest event ("" for none).
    model: str
    version: str
    severity: str
    status: AlertStatus
    summary: str
    #: The latest event's data.
    data: dict[str, Any]
    #: How many events fired it.
    events: int
    starts_at: float
    updated_at: float
    ends_at: float | None
    notified_at: float | None
    #: The notifiers told it fires (told again when it resolves).
    notified: list[str]
    resolve_pending: bool
    #: The active silences matching a firing alert, where the service lists alerts.
    silenced_by: NotRequired[list[str]]


def alert_from_row(row: RowMapping) -> Alert:
    """The alert of an ``alerts`` row (in the order of the columns)."""
    return {
        "id": row["id"],
        "fingerprint": row["fingerprint"],
        "rule": row["rule"],
        "labels": json.loads(row["labels"]),
        "model": row["model"],
        "version": row["version"],
        "severity": row["severity"],
        "status": row["status"],
        "summary": row["summary"],
        "data": json.loads(row["data"]),
        "events": row["events"],
        "starts_at": row["starts_at"],
        "updated_at": row["updated_at"],
        "ends_at": row["ends_at"],
        "notified_at": row["notified_at"],
        "notified": json.loads(row["notified"]),
        "resolve_pending": bool(row["resolve_pending"]),
    }
