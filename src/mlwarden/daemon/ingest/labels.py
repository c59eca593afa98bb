"""The label path's write: a label batch joined to its stored predictions, as outcomes.

Each label's prediction is found by its id as the store keys it (``ids.IdDigests``),
read from its stored batch, and stored with the label as an ``outcomes`` row; a label
sent again for an id replaces the earlier one (an upsert, atomic under concurrent
daemons). With encryption on the batch's outcomes are sealed together under one data
key (``ids.seal_outcomes``). Runs as a writer item of the ledger (ledger.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.store import upsert
from .ids import seal_outcomes
from .predictions import stored_predictions
from .tables import outcomes_table

__all__ = ["label_write"]


def label_write(
    model: str,
    labels: dict[str, Any],
    stored: dict[str, str],
    *,
    classification: bool,
    sealed: bool,
    now: float,
) -> Callable[[AsyncConnection], Awaitable[int]]:
    """The writer item storing ``labels`` (clear id -> label) of ``model``; it returns
    how many joined a stored prediction. ``stored`` maps each clear id to its stored
    form; ``sealed``: encryption is on."""
    by_stored = {v: k for k, v in stored.items()}

    async def write(conn: AsyncConnection) -> int:
        matched = await stored_predictions(conn, model, by_stored)
        if not matched:
            return 0
        rows = [
            {
                **r,
                "model": model,
                "label_num": None if classification else labels[r["id"]],
                "label_cls": labels[r["id"]] if classification else None,
                "labeled_at": now,
            }
            for r in matched
        ]
        rows = await seal_outcomes(conn, rows, stored, now, sealed)
        await conn.execute(upsert(conn.dialect, outcomes_table), rows)
        return len(matched)

    return write
