"""Reading back the reports the monitoring services store: one JSON document a row."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from ..core.store import Store

__all__ = ["MAX_HISTORY", "stored_reports"]

#: The most rows one history request returns.
MAX_HISTORY = 5000


async def stored_reports(
    store: Store, table: sa.Table, model: str, since: float
) -> list[dict[str, Any]]:
    """``model``'s rows of ``table`` (columns ``id``, ``model``, ``ts``, ``report``) from
    ``since`` on, oldest first, the newest MAX_HISTORY of them; each report with its id."""
    query = (
        sa.select(table.c.id, table.c.report)
        .where(table.c.model == model, table.c.ts >= since)
        .order_by(table.c.id.desc())
        .limit(MAX_HISTORY)
    )
    async with store.connect() as conn:
        rows = (await conn.execute(query)).all()
    out = []
    for row in reversed(rows):
        report = json.loads(row.report)
        report["id"] = row.id
        out.append(report)
    return out
