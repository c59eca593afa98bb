"""The alert engine: events -> rules -> alerts -> durable outbox -> notifiers.

Following Alertmanager: an event that a rule fires on creates (or refreshes) the alert
with that rule's fingerprint (dedup); the first notification waits
``alerts.group_wait_seconds`` (events arriving meanwhile fold into it, and an alert
resolved within the wait notifies nobody); while it keeps firing it is re-sent every
``alerts.repeat_interval_seconds`` and no more often; a resolving event closes it and
the notifiers that were told it fired are told it resolved (those with
``send_resolved``), even under a silence, so PagerDuty incidents close. Each alert is
its own group, so a notification is about exactly one alert and PagerDuty's dedup key
is its fingerprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ...hookspecs import hookimpl
from ...types import Event, Severity
from ..core.cluster import ALERT_WORK, OUTBOX_WORK
from ..core.config import Config
from ..core.context import Context
from ..core.leases import LeaseLost, fence, holding
from ..core.service import Service
from ..core.store import ALERT_LOCKS, Schema, create_tables, lock_for_transaction
from .notifiers import Notifier, build_notifiers, format_notification, routes_to
from .outbox import Outbox
from .outbox_records import outbox_table
from .records import Alert, alert_from_row, alerts_table
from .rules import AlertRule, build_rules, fingerprint
from .silences import Silences, silences_table

__all__ = ["AlertService", "alerts_table"]

logger = logging.getLogger(__name__)

ALERTS_SCHEMA = Schema("alerts", [create_tables(alerts_table, silences_table, outbox_table)])

#: How often (in clock seconds) sent and dropped outbox rows and old alerts are pruned.
_PRUNE_EVERY = 3600.0


class AlertService(Service):
    """Turns events into alerts and alerts into notifications through the outbox."""

    name = "alerts"
    schema = ALERTS_SCHEMA

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.notifiers: dict[str, Notifier] = build_notifiers(context.plugins, context.config)
        self.rules: list[AlertRule] = build_rules(context.config.alerts)
        self.silences = Silences(context.store)
        self.outbox = Outbox(
            context.store,
            context.clock,
            context.metrics,
            notifiers=lambda: self.notifiers,
            settings=lambda: self.context.config.alerts,
        )
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._pruned_at = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.silences.load()
        await self._update_gauge()
        self.context.spawn(self._loop(), name="alerts")

    async def stop(self) -> None:
        # Flush: one last delivery pass over what is due, then the outcome of the sends
        # that are still running (a delivered row must not stay pending), each within
        # part of the shutdown timeout the Warden gives this stop.
        budget = self.context.config.daemon.shutdown_timeout_seconds
        try:
            delivery = await self.context.cluster.singleton(OUTBOX_WORK)
            if delivery is not None:  # else the daemon that holds the outbox delivers
                with holding(delivery):
                    await asyncio.wait_for(self.outbox.deliver(), budget * 0.5)
        except TimeoutError:
            logger.warning("flushing the notification outbox took over %.1fs", budget * 0.5)
        except Exception:
            logger.exception("flushing the notification outbox failed")
        try:
            await self.outbox.finish(budget * 0.4)
        except Exception:
            logger.exception("waiting for the notifications still being sent failed")

    async def reload(self, config: Config) -> None:
        notifiers = build_notifiers(self.context.plugins, config)
        self.rules = build_rules(config.alerts)
        self.notifiers = notifiers
        self._wake.set()

    def wake(self) -> None:
        """Run a tick now (after an event, a reload, or a silence that expired)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.context.config.alerts.tick_seconds)
            self._wake.clear()
            try:
                await self.tick()
            except LeaseLost as exc:
                logger.info("alert tick stopped: %s", exc)
            except Exception as exc:
                self.context.failed(logger, exc, "alerts", "alert tick failed")

    # -- events ----------------------------------------------------------------------

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        changed = False
        async with self._lock:
            for rule in self.rules:
                if rule.fires(event):
                    await self._fire(rule, event)
                    changed = True
                elif rule.resolves(event):
                    changed |= await self._resolve(rule, event)
        if changed:
            await self._update_gauge()
            self._wake.set()

    async def _active(self, conn: AsyncConnection, fp: str) -> RowMapping | None:
        return (
            (
                await conn.execute(
                    sa.select(alerts_table).where(
                        alerts_table.c.fingerprint == fp, alerts_table.c.status == "firing"
                    )
                )
            )
            .mappings()
            .first()
        )

    async def _fire(self, rule: AlertRule, event: Event) -> None:
        labels = rule.alert_labels(event)
        fp = fingerprint(labels)
        now = self.context.clock()
        values = {
            "severity": str(rule.severity_for(event)),
            "summary": rule.summary_for(event),
            "data": json.dumps(event.data, default=str),
            "version": event.version or "",
            "updated_at": now,
        }
        async with self.context.store.begin() as conn:
            # Two daemons firing one alert at once make one alert, not two.
            await lock_for_transaction(conn, ALERT_LOCKS, fp)
            row = await self._active(conn, fp)
            if row is not None:
                await conn.execute(
                    alerts_table.update()
                    .where(alerts_table.c.id == row["id"])
                    .values(events=alerts_table.c.events + 1, **values)
                )
                return
            await conn.execute(
                alerts_table.insert(),
                {
                    "fingerprint": fp,
                    "rule": rule.name,
                    "labels": json.dumps(labels, sort_keys=True),
                    "model": event.model or "",
                    "status": "firing",
                    "events": 1,
                    "starts_at": now,
                    "ends_at": None,
                    "notified_at": None,
                    "notified": "[]",
                    "resolve_pending": False,
                    **values,
                },
            )
        logger.info("alert %s firing for %s (%s)", rule.name, event.model, fp)

    async def _resolve(self, rule: AlertRule, event: Event) -> bool:
        fp = fingerprint(rule.alert_labels(event))
        now = self.context.clock()
        async with self.context.store.begin() as conn:
            await lock_for_transaction(conn, ALERT_LOCKS, fp)
            row = await self._active(conn, fp)
            if row is None:
                return False
            await conn.execute(
                alerts_table.update()
                .where(alerts_table.c.id == row["id"])
                .values(
                    status="resolved",
                    ends_at=now,
                    updated_at=now,
                    resolve_pending=row["notified"] != "[]",
                )
            )
        logger.info("alert %s resolved for %s (%s)", rule.name, event.model, fp)
        return True

    # -- notifications ---------------------------------------------------------------

    async def tick(self) -> None:
        """Queue what is due (first notifications, repeats, resolves), then deliver.

        In a cluster one daemon evaluates the alerts (lease ``alerts``) and one delivers
        the outbox (lease ``outbox``); on SQLite the one daemon does both.
        """
        cluster = self.context.cluster
        lease = await cluster.singleton(ALERT_WORK)
        if lease is not None:
            with holding(lease):
                await self._evaluate()
        delivery = await cluster.singleton(OUTBOX_WORK)
        if delivery is not None:
            with holding(delivery):
                await self.outbox.deliver()
        now = self.context.clock()
        if lease is not None and now - self._pruned_at >= _PRUNE_EVERY:
            self._pruned_at = now
            await self._prune(now)

    async def _evaluate(self) -> None:
        dropped = await self.outbox.drop_expired()
        async with self._lock:
            if dropped:
                # What was dropped is re-sent with the alert's current state if it still fires.
                async with self.context.store.begin() as conn:
                    await fence(conn)
                    await conn.execute(
                        alerts_table.update()
                        .where(
                            alerts_table.c.fingerprint.in_(dropped),
                            alerts_table.c.status == "firing",
                        )
                        .values(notified_at=None)
                    )
            await self._queue_due()

    async def _queue_due(self) -> None:
        settings = self.context.config.alerts
        now = self.context.clock()
        async with self.context.store.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(alerts_table).where(
                            sa.or_(
                                alerts_table.c.status == "firing",
                                alerts_table.c.resolve_pending.is_(True),
                            )
                        )
                    )
                )
                .mappings()
                .all()
            )
        for alert in map(alert_from_row, rows):
            if alert["status"] == "resolved":
                await self._queue_resolved(alert)
                continue
            if alert["notified_at"] is None:
                due = now >= alert["starts_at"] + settings.group_wait_seconds
            else:
                due = now >= alert["notified_at"] + settings.repeat_interval_seconds
            if due and not self.silences.silenced_by(alert["labels"], now):
                await self._queue_firing(alert, now)

    async def _queue_firing(self, alert: Alert, now: float) -> None:
        severity = Severity(alert["severity"])
        names = [
            n.name
            for n in self.notifiers.values()
            if routes_to(n.config, severity, alert["labels"])
        ]
        notification = format_notification(alert, "firing", self.context.config)
        notified = sorted(set(alert["notified"]) | set(names))
        async with self.context.store.begin() as conn:
            await fence(conn)  # queued by the holder of the alert evaluation only
            for name in names:
                if await self._still_pending(conn, alert["fingerprint"], name):
                    # A repeat of a message the notifier has not received yet adds nothing.
                    continue
                notifier = self.notifiers[name]
                await self.outbox.enqueue(conn, notification, name, notifier.targets())
            await conn.execute(
                alerts_table.update()
                .where(alerts_table.c.id == alert["id"])
                .values(notified_at=now, notified=json.dumps(notified))
            )

    async def _still_pending(self, conn: AsyncConnection, fp: str, notifier: str) -> bool:
        row = await conn.execute(
            sa.select(outbox_table.c.id)
            .where(
                outbox_table.c.fingerprint == fp,
                outbox_table.c.notifier == notifier,
                outbox_table.c.status == "pending",
            )
            .limit(1)
        )
        return row.first() is not None

    async def _queue_resolved(self, alert: Alert) -> None:
        notification = format_notification(alert, "resolved", self.context.config)
        async with self.context.store.begin() as conn:
            await fence(conn)
            for name in alert["notified"]:
                notifier = self.notifiers.get(name)
                if notifier is not None and notifier.config.send_resolved:
                    await self.outbox.enqueue(conn, notification, name, notifier.targets())
            await conn.execute(
                alerts_table.update()
                .where(alerts_table.c.id == alert["id"])
                .values(resolve_pending=False)
            )

    async def _update_gauge(self) -> None:
        async with self.context.store.connect() as conn:
            rows = await conn.execute(
                sa.select(alerts_table.c.severity, sa.func.count())
                .where(alerts_table.c.status == "firing")
                .group_by(alerts_table.c.severity)
            )
            counts: dict[str, int] = {severity: n for severity, n in rows.all()}
        for severity in Severity:
            self.context.metrics.alerts_firing.labels(str(severity)).set(
                counts.get(str(severity), 0)
            )

    async def _prune(self, now: float) -> None:
        cutoff = now - self.context.config.alerts.retention_days * 86400
        pruned = await self.outbox.prune(cutoff)
        async with self.context.store.begin() as conn:
            result = await conn.execute(
                alerts_table.delete().where(
                    alerts_table.c.status == "resolved",
                    alerts_table.c.resolve_pending.is_(False),
                    alerts_table.c.ends_at < cutoff,
                )
            )
        if pruned or result.rowcount:
            logger.info("pruned %d outbox rows and %d resolved alerts", pruned, result.rowcount)

    # -- reading ---------------------------------------------------------------------

    async def alerts(
        self, *, state: str = "firing", model: str | None = None, limit: int = 100
    ) -> list[Alert]:
        """Alerts, newest first; ``state`` is firing, resolved or all."""
        query = sa.select(alerts_table).order_by(alerts_table.c.id.desc()).limit(limit)
        if state != "all":
            query = query.where(alerts_table.c.status == state)
        if model:
            query = query.where(alerts_table.c.model == model)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        now = self.context.clock()
        out = []
        for alert in map(alert_from_row, rows):
            alert["silenced_by"] = (
                self.silences.silenced_by(alert["labels"], now)
                if alert["status"] == "firing"
                else []
            )
            out.append(alert)
        return out

    async def health(self) -> dict[str, Any]:
        counts = await self.outbox.counts()
        failing = sorted(f"{n}:{t}" if t else n for n, t in self.outbox.backoff)
        return {
            "status": "degraded" if failing else "ok",
            "notifiers": {n: x.config.plugin for n, x in self.notifiers.items()},
            "rules": [r.name for r in self.rules],
            "outbox": {"pending": counts.get("pending", 0), "dropped": counts.get("dropped", 0)},
            "failing_notifiers": failing,
        }
