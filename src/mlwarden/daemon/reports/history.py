"""Reads the services' stored history over a period (the tables each service owns).

The report service is a read side over the others' tables: it sits above them in the
import layers (pyproject.toml) and writes none of them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..alerts.outbox_records import outbox_table
from ..alerts.records import alerts_table
from ..core.store import Store
from ..experiments.records import evaluations_table, experiments_table
from ..monitoring.drift import reports_table
from ..monitoring.performance import history_table, state_table
from ..registry.tables import transitions_table, versions_table
from ..rollouts.records import analyses_table, rollouts_table
from ..rollouts.traffic import traffic_changes
from ..training.records import jobs_table
from .period import Period

__all__ = ["History"]

_JSON_COLUMNS = frozenset(
    {"metrics", "params", "tags", "lineage", "data_window", "gate_report", "inputs", "labels",
     "data", "notified", "options", "memo", "held", "detail", "result", "settings",
     "promotion", "previous_traffic", "weights", "notification"}
)  # fmt: skip


def _plain(row: sa.RowMapping) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key in _JSON_COLUMNS and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


class History:
    """The stored history of some models over one period, read table by table."""

    def __init__(self, store: Store, period: Period) -> None:
        self.store = store
        self.period = period

    async def _rows(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_plain(r) for r in rows]

    def _within(self, column: sa.ColumnElement[float]) -> sa.ColumnElement[bool]:
        return sa.and_(column >= self.period.since, column <= self.period.until)

    async def drift_reports(self, model: str) -> list[dict[str, Any]]:
        """Stored drift checks, oldest first, each the stored report with its id."""
        r = reports_table
        query = (
            sa.select(r.c.id, r.c.report)
            .where(r.c.model == model, self._within(r.c.ts))
            .order_by(r.c.ts, r.c.id)
        )
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [{**json.loads(row.report), "id": row.id} for row in rows]

    async def performance(self, model: str) -> list[dict[str, Any]]:
        h = history_table
        query = sa.select(h).where(h.c.model == model, self._within(h.c.ts)).order_by(h.c.ts)
        return await self._rows(query)

    async def performance_state(self, model: str) -> list[dict[str, Any]]:
        return await self._rows(sa.select(state_table).where(state_table.c.model == model))

    async def versions(self, models: Sequence[str]) -> list[dict[str, Any]]:
        """Every version of ``models`` registered up to the period's end (the inventory)."""
        v = versions_table
        query = (
            sa.select(v)
            .where(v.c.model.in_(models), v.c.created_at <= self.period.until)
            .order_by(v.c.model, v.c.created_at)
        )
        return await self._rows(query)

    async def transitions(self, models: Sequence[str]) -> list[dict[str, Any]]:
        t = transitions_table
        query = sa.select(t).where(t.c.model.in_(models), self._within(t.c.ts)).order_by(t.c.id)
        return await self._rows(query)

    async def rollouts(self, models: Sequence[str]) -> list[dict[str, Any]]:
        r = rollouts_table
        query = (
            sa.select(r)
            .where(
                r.c.model.in_(models),
                r.c.started_at <= self.period.until,
                sa.or_(r.c.finished_at.is_(None), r.c.finished_at >= self.period.since),
            )
            .order_by(r.c.started_at)
        )
        rollouts = await self._rows(query)
        if rollouts:
            a = analyses_table
            ids = [r["id"] for r in rollouts]
            analyses = await self._rows(
                sa.select(a).where(a.c.rollout_id.in_(ids)).order_by(a.c.id)
            )
            for rollout in rollouts:
                rollout["analyses"] = [x for x in analyses if x["rollout_id"] == rollout["id"]]
        return rollouts

    async def traffic_changes(self, models: Sequence[str]) -> list[dict[str, Any]]:
        """Each change of a traffic table in the period, with the table it replaced
        (``weights_before``: the model's previous change, from before the period too;
        ``{}`` when nothing was routed)."""
        t = traffic_changes
        query = sa.select(t).where(t.c.model.in_(models), self._within(t.c.ts)).order_by(t.c.id)
        rows = await self._rows(query)
        first: dict[str, int] = {}
        for row in rows:
            first.setdefault(row["model"], row["id"])
        before: dict[str, dict[str, float]] = {}
        async with self.store.connect() as conn:
            for model, first_id in first.items():
                earlier = (
                    sa.select(t.c.weights)
                    .where(t.c.model == model, t.c.id < first_id)
                    .order_by(t.c.id.desc())
                    .limit(1)
                )
                text = (await conn.execute(earlier)).scalar()
                before[model] = json.loads(text) if text else {}
        for row in rows:
            row["weights_before"] = before[row["model"]]
            before[row["model"]] = row["weights"]
        return rows

    async def experiments(self, models: Sequence[str]) -> list[dict[str, Any]]:
        e = experiments_table
        query = (
            sa.select(e)
            .where(
                e.c.model.in_(models),
                e.c.started_at <= self.period.until,
                sa.or_(e.c.concluded_at.is_(None), e.c.concluded_at >= self.period.since),
            )
            .order_by(e.c.started_at)
        )
        rows = await self._rows(query)
        for row in rows:
            row.pop("sequential_state", None)
        return rows

    async def experiment_evaluations(self, experiment_id: str) -> list[dict[str, Any]]:
        e = evaluations_table
        query = sa.select(e).where(e.c.experiment_id == experiment_id).order_by(e.c.ts, e.c.id)
        return await self._rows(query)

    async def alerts(self, models: Sequence[str] | None) -> list[dict[str, Any]]:
        a = alerts_table
        query = sa.select(a).where(
            a.c.starts_at <= self.period.until,
            sa.or_(a.c.ends_at.is_(None), a.c.ends_at >= self.period.since),
        )
        if models is not None:
            query = query.where(a.c.model.in_(models))
        return await self._rows(query.order_by(a.c.starts_at))

    async def notifications_sent(self) -> list[dict[str, Any]]:
        o = outbox_table
        query = (
            sa.select(o.c.id, o.c.notifier, o.c.fingerprint, o.c.status, o.c.created_at,
                      o.c.sent_at, o.c.attempts, o.c.last_error, o.c.notification)
            .where(self._within(o.c.created_at))
            .order_by(o.c.id)
        )  # fmt: skip
        rows = await self._rows(query)
        for row in rows:
            note = row.pop("notification")
            row["title"] = note.get("title", "") if isinstance(note, dict) else ""
            row["model"] = note.get("model") if isinstance(note, dict) else None
        return rows

    async def jobs(self, models: Sequence[str]) -> list[dict[str, Any]]:
        j = jobs_table
        query = (
            sa.select(j.c.id, j.c.model, j.c.state, j.c.reason, j.c.trigger, j.c.created_at,
                      j.c.finished_at, j.c.version, j.c.run_id, j.c.error)
            .where(j.c.model.in_(models), self._within(j.c.created_at))
            .order_by(j.c.created_at)
        )  # fmt: skip
        return await self._rows(query)

    async def model_names(self) -> list[str]:
        """Every model with a registered version."""
        async with self.store.connect() as conn:
            rows = await conn.execute(sa.select(versions_table.c.model).distinct())
            return sorted(r[0] for r in rows)
