"""The outbox table and what it hands out: its rows, entries and notifications as JSON.

Written and read by the delivery (daemon/alerts/outbox.py); the notification column is
sealed with encryption on, so every row is opened on its own (``notification_payload``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from ...errors import DecryptionFailed
from ...types import Notification, Severity
from ..core.encryption import SealedText, open_text

__all__ = [
    "OUTBOX_ROWS",
    "OutboxEntry",
    "entry_from_row",
    "notification_from_json",
    "notification_payload",
    "notification_title",
    "notification_to_json",
    "outbox_table",
]

_meta = sa.MetaData()
outbox_table = sa.Table(
    "notification_outbox",
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("notifier", sa.String(128), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | sent | dropped
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("sent_at", sa.Float, nullable=True),
    sa.Column("notification", SealedText("notification_outbox"), nullable=False),
    sa.Index("ix_notification_outbox_status", "status", "id"),
)

#: The outbox's columns with the notification as stored (sealed with encryption on):
#: each row is opened on its own, so one that fails its tag check is named and dropped
#: without holding up the others.
OUTBOX_ROWS = [c for c in outbox_table.c if c.name != "notification"] + [
    sa.type_coerce(outbox_table.c.notification, sa.Text()).label("notification")
]


def notification_payload(row: RowMapping) -> str:
    """The row's notification JSON; DecryptionFailed names the row."""
    return open_text(row["notification"], "notification_outbox", f"outbox row {row['id']}")


class OutboxEntry(TypedDict):
    """One notification to one destination of a notifier (``GET /api/alerts/outbox``)."""

    id: int
    created_at: float
    notifier: str
    #: The destination's key ("" for a notifier with one destination).
    target: str
    fingerprint: str
    #: ``pending``, ``sent`` or ``dropped``.
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str
    sent_at: float | None
    #: The :class:`~mlwarden.types.Notification` as JSON.
    notification: dict[str, Any]


def notification_to_json(n: Notification) -> str:
    return json.dumps(dataclasses.asdict(n), default=str, sort_keys=True)


def notification_from_json(text: str) -> Notification:
    raw = json.loads(text)
    raw["severity"] = Severity(raw["severity"])
    return Notification(**raw)


def notification_title(row: RowMapping) -> str:
    try:
        return str(json.loads(notification_payload(row)).get("title", ""))
    except DecryptionFailed:
        return "(cannot be decrypted)"


def entry_from_row(row: RowMapping) -> OutboxEntry:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "notifier": row["notifier"],
        "target": row["target"],
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"],
        "last_error": row["last_error"],
        "sent_at": row["sent_at"],
        "notification": json.loads(notification_payload(row)),
    }
