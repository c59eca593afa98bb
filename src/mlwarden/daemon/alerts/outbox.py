"""The durable outbox: every notification is written to the store before it is sent.

A row per (notification, notifier, target) is inserted in the same transaction as the
alert state change that calls for it, so a notification is never lost between deciding
and sending: after a crash the pending rows are sent at the next start. Rows of one
target are sent in the order they were written (a resolve never overtakes its firing).
A failed send puts the target into exponential backoff with jitter; its rows are
retried, in order, when the backoff ends, and each row is marked sent the moment it
is delivered, so a notifier that was down for an hour gets everything, each once.
Rows older than ``alerts.outbox_max_age_seconds`` are dropped, counted and logged.

Exactly once, also when a send is slow. A send is given ``alerts.send_timeout_seconds``
plus the time the notifier says its library will hold it back first (apprise throttles
each destination, ``send_delay``). A send that overruns is *not* abandoned: work in a
library's worker thread cannot be stopped and may still deliver, so the send goes on in
the background, the row stays pending with ``last_error`` saying so, and its
destination is retried only once that send has ended and failed; when it succeeds the
row is marked sent. At stop the daemon waits (within its shutdown timeout) for such
sends to end and records their outcome.

Several daemons: the ``outbox`` lease's holder delivers; each pass pins the lease
(``leases.pinned``), so it cannot change hands while a send is under way.

What remains is the crash window: a kill -9 between a delivery and the commit that
marks its row sent (or during a send still running at stop) re-sends that one row at
the next start; PagerDuty's dedup key makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import DecryptionFailed
from ...types import Notification
from ..core.config import AlertsConfig
from ..core.context import Clock
from ..core.leases import Pin, fence, pinned
from ..core.metrics import Metrics
from ..core.store import Store
from .notifiers import Notifier
from .outbox_records import (
    OUTBOX_ROWS,
    OutboxEntry,
    entry_from_row,
    notification_from_json,
    notification_payload,
    notification_title,
    notification_to_json,
    outbox_table,
)

__all__ = ["Outbox"]

logger = logging.getLogger(__name__)

#: How many pending rows one delivery pass looks at.
_BATCH = 500


@dataclass
class _Send:
    """A send that outlived its timeout: it goes on, and its outcome decides the row's."""

    row_id: int
    attempts: int
    task: asyncio.Task[None]
    since: float  # time.monotonic() when it started


class Outbox:
    """Writes, sends, retries and drops notifications.

    ``notifiers`` is a callable returning the notifier instances by name (they change
    on reload); ``settings`` returns the current ``AlertsConfig``.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        notifiers: Callable[[], dict[str, Notifier]],
        settings: Callable[[], AlertsConfig],
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.notifiers = notifiers
        self.settings = settings
        self.rng = rng or random.Random()
        self._lock = asyncio.Lock()
        #: (notifier, target) -> (consecutive failures, time of the next attempt)
        self.backoff: dict[tuple[str, str], tuple[int, float]] = {}
        #: (notifier, target) -> its send that outlived the timeout and still runs
        self.running: dict[tuple[str, str], _Send] = {}
        #: The outbox lease pinned for the delivery pass under way (PostgreSQL).
        self._pin: Pin | None = None

    # -- writing ---------------------------------------------------------------------

    async def enqueue(
        self, conn: AsyncConnection, notification: Notification, notifier: str, targets: list[str]
    ) -> None:
        """Insert one pending row per target, inside the caller's transaction ``conn``."""
        now = self.clock()
        payload = notification_to_json(notification)
        await conn.execute(
            outbox_table.insert(),
            [
                {
                    "created_at": now,
                    "notifier": notifier,
                    "target": target,
                    "fingerprint": notification.fingerprint,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": "",
                    "sent_at": None,
                    "notification": payload,
                }
                for target in targets
            ],
        )

    # -- sending ---------------------------------------------------------------------

    async def deliver(self) -> int:
        """One delivery pass over the due rows; returns how many were sent."""
        engine = self.store.engine
        assert engine is not None, "store is not open"
        async with self._lock:
            if not self.running and not await self._anything_pending():
                return 0  # nothing to send: no pin (a pass runs every alerts tick)
            # A pin idle longer than one send and a margin belongs to a lost daemon.
            idle = self.settings().send_timeout_seconds + 60.0
            async with pinned(engine, idle) as pin:
                self._pin = pin
                try:
                    return await self._pass()
                finally:
                    self._pin = None

    async def _anything_pending(self) -> bool:
        async with self.store.connect() as conn:
            query = sa.select(outbox_table.c.id).where(outbox_table.c.status == "pending")
            return (await conn.execute(query.limit(1))).first() is not None

    async def _pass(self) -> int:
        await self.drop_expired()
        async with self.store.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(*OUTBOX_ROWS)
                        .where(outbox_table.c.status == "pending")
                        .order_by(outbox_table.c.id)
                        .limit(_BATCH)
                    )
                )
                .mappings()
                .all()
            )
        queues: dict[tuple[str, str], list[RowMapping]] = {}
        for row in rows:
            queues.setdefault((row["notifier"], row["target"]), []).append(row)
        sent = await asyncio.gather(*(self._send_queue(k, q) for k, q in queues.items()))
        return sum(sent)

    async def _send_queue(self, key: tuple[str, str], rows: list[RowMapping]) -> int:
        name, target = key
        sent = 0
        running = self.running.get(key)
        if running is not None:
            if not running.task.done():
                return 0  # no retry before its outcome is known
            del self.running[key]
            if not await self._settle(key, running):
                return 0
            sent += 1
            rows = [row for row in rows if row["id"] != running.row_id]
        _failures, retry_at = self.backoff.get(key, (0, 0.0))
        if self.clock() < retry_at:
            return sent
        notifier = self.notifiers().get(name)
        if notifier is None:
            for row in rows:
                await self._drop(row, f"notifier {name!r} is no longer configured")
            return sent
        if target and target not in notifier.targets():
            for row in rows:
                await self._drop(row, f"destination {target} of {name!r} is no longer configured")
            return sent
        for row in rows:
            try:
                notification = notification_from_json(notification_payload(row))
            except DecryptionFailed as exc:
                await self._drop(row, str(exc))
                continue
            attempts = row["attempts"] + 1
            # A daemon that lost the outbox stops before a send the new holder makes.
            await self._fence()
            # The library's own throttling comes on top of the time the send may take.
            timeout = self.settings().send_timeout_seconds + notifier.send_delay(target)
            started = time.monotonic()
            task = asyncio.ensure_future(notifier.send(notification, target=target))
            try:
                await asyncio.wait([task], timeout=timeout)
            except asyncio.CancelledError:
                # The pass was cancelled (shutdown): the send itself goes on, followed.
                self.running[key] = _Send(row["id"], attempts, task, started)
                raise
            if not task.done():
                self.running[key] = _Send(row["id"], attempts, task, started)
                logger.warning(
                    "notifier %s%s: the send of outbox row %d (attempt %d) did not end within "
                    "%.1fs; it goes on, and the row waits for its outcome before any retry",
                    name,
                    f" target {target}" if target else "",
                    row["id"],
                    attempts,
                    timeout,
                )
                await self._update(
                    row["id"],
                    attempts=attempts,
                    last_error=f"timed out after {timeout:.1f}s; still sending, "
                    "the outcome is awaited before any retry",
                )
                return sent
            error = _error_of(task)
            if error is not None:
                await self._failed(key, row["id"], attempts, error)
                return sent
            await self._sent(key, row["id"], attempts)
            sent += 1
        return sent

    async def _fence(self) -> None:
        """LeaseLost when this daemon no longer holds the outbox (pinned or not)."""
        if self._pin is not None:
            await self._pin.check()
            return
        async with self.store.begin() as conn:
            await fence(conn)

    async def _settle(self, key: tuple[str, str], running: _Send) -> bool:
        """Record the outcome of a send that outlived its timeout; True when it delivered."""
        error = _error_of(running.task)
        async with self.store.connect() as conn:
            status = (
                await conn.execute(
                    sa.select(outbox_table.c.status).where(outbox_table.c.id == running.row_id)
                )
            ).scalar()
        took = time.monotonic() - running.since
        if status != "pending":  # dropped meanwhile (max age, reload): nothing to retry
            if error is None:
                logger.warning(
                    "outbox row %d (%s) was delivered %.1fs after it started, after it was %s",
                    running.row_id,
                    key[0],
                    took,
                    status,
                )
            return error is None
        if error is not None:
            await self._failed(key, running.row_id, running.attempts, error)
            return False
        logger.info(
            "notifier %s: outbox row %d was delivered %.1fs after its send started (late)",
            key[0],
            running.row_id,
            took,
        )
        await self._sent(key, running.row_id, running.attempts)
        return True

    async def _sent(self, key: tuple[str, str], row_id: int, attempts: int) -> None:
        self.backoff.pop(key, None)
        await self._update(row_id, status="sent", attempts=attempts, sent_at=self.clock())
        self.metrics.notifications.labels(key[0], "sent").inc()

    async def _failed(self, key: tuple[str, str], row_id: int, attempts: int, error: str) -> None:
        name, target = key
        failures = self.backoff.get(key, (0, 0.0))[0] + 1
        retry_at = self.clock() + self._delay(failures)
        self.backoff[key] = (failures, retry_at)
        self.metrics.notifications.labels(name, "failed").inc()
        logger.warning(
            "notifier %s%s failed (attempt %d of outbox row %d, retry in %.1fs): %s",
            name,
            f" target {target}" if target else "",
            attempts,
            row_id,
            retry_at - self.clock(),
            error,
        )
        await self._update(
            row_id, attempts=attempts, next_attempt_at=retry_at, last_error=error[:2000]
        )

    async def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the sends still running, and record their outcome.

        Called at stop, after the last delivery pass. A send still running after that
        is cancelled; if it delivers anyway (a thread cannot be stopped), its row is
        sent again at the next start, and the log says so.
        """
        if not self.running:
            return
        tasks = [r.task for r in self.running.values()]
        await asyncio.wait(tasks, timeout=timeout)
        for key, running in list(self.running.items()):
            if running.task.done():
                del self.running[key]
                await self._settle(key, running)
            else:
                running.task.cancel()
                logger.error(
                    "notifier %s: the send of outbox row %d is still running at shutdown; "
                    "if it delivers, the row is sent again at the next start",
                    key[0],
                    running.row_id,
                )

    def _delay(self, failures: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random."""
        s = self.settings()
        delay = min(s.retry_max_seconds, s.retry_initial_seconds * 2 ** (failures - 1))
        return delay / 2 + self.rng.uniform(0, delay / 2)

    async def _update(self, row_id: int, **values: object) -> None:
        async with self.store.begin() as conn:
            await conn.execute(
                outbox_table.update().where(outbox_table.c.id == row_id).values(**values)
            )

    async def _drop(self, row: RowMapping, reason: str) -> None:
        logger.error(
            "dropping notification %d for notifier %s (%s, %d attempts, last error: %s): %s",
            row["id"],
            row["notifier"],
            reason,
            row["attempts"],
            row["last_error"] or "none",
            notification_title(row),
        )
        await self._update(row["id"], status="dropped", last_error=reason)
        self.metrics.notifications.labels(row["notifier"], "dropped").inc()

    async def drop_expired(self) -> set[str]:
        """Drop (count, log) the pending rows older than ``alerts.outbox_max_age_seconds``.

        Returns the fingerprints of the alerts whose notifications were dropped.
        """
        max_age = self.settings().outbox_max_age_seconds
        if max_age <= 0:
            return set()
        cutoff = self.clock() - max_age
        async with self.store.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(*OUTBOX_ROWS).where(
                            outbox_table.c.status == "pending",
                            outbox_table.c.created_at < cutoff,
                        )
                    )
                )
                .mappings()
                .all()
            )
        for row in rows:
            await self._drop(row, f"older than alerts.outbox_max_age_seconds ({max_age:g}s)")
        return {row["fingerprint"] for row in rows}

    # -- reading and housekeeping ----------------------------------------------------

    async def entries(self, status: str | None = None, limit: int = 100) -> list[OutboxEntry]:
        query = sa.select(*OUTBOX_ROWS).order_by(outbox_table.c.id.desc()).limit(limit)
        if status:
            query = query.where(outbox_table.c.status == status)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [entry_from_row(row) for row in rows]

    async def counts(self) -> dict[str, int]:
        async with self.store.connect() as conn:
            rows = await conn.execute(
                sa.select(outbox_table.c.status, sa.func.count()).group_by(outbox_table.c.status)
            )
            return {status: n for status, n in rows.all()}

    async def prune(self, older_than: float) -> int:
        """Delete sent and dropped rows written before ``older_than``."""
        async with self.store.begin() as conn:
            result = await conn.execute(
                outbox_table.delete().where(
                    outbox_table.c.status != "pending", outbox_table.c.created_at < older_than
                )
            )
            return result.rowcount or 0


def _error_of(task: asyncio.Task[None]) -> str | None:
    """Why a finished send failed, or None when it delivered."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{exc}" or repr(exc)
