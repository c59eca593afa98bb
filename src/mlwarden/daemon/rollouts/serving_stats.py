"""The gateway's serving stats, shared by every daemon of a cluster (PostgreSQL).

A rollout's analysis holds the candidate to the calls the gateways served: requests,
errors and the latency of the successful ones, per version. Each daemon's gateway
counts its own calls (``ServingStats`` in memory, daemon/rollouts/gateway.py); with
one daemon (SQLite) the analysis reads them from there, exactly as they were served.

With several daemons (PostgreSQL) a load balancer spreads the calls, and the daemon
that holds the ``rollouts`` lease must see every gateway's. So each daemon also sums
its calls per (model, version, ``INTERVAL_SECONDS`` interval) into mergeable figures —
requests, errors, and a histogram of the latencies on log-spaced bins (``RATIO`` wide,
so a quantile read from it is within ``RATIO ** 0.5 - 1`` ≈ 2.2 % of the value) — and
writes them to ``serving_stats`` under its ``writer`` name every ``FLUSH_SECONDS`` and
before its own analyses. A row holds the interval's running totals and is upserted
(rewritten whole), so writing it again never counts a call twice. The analysis merges
the rows of every writer whose interval starts in the window (the window's edges are
thus rounded down to ``INTERVAL_SECONDS``). Rows older than ``RETENTION_SECONDS`` are
deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from ..core.store import Store, upsert

__all__ = [
    "FLUSH_SECONDS",
    "INTERVAL_SECONDS",
    "LatencyHistogram",
    "ServingTotals",
    "SharedServingStats",
    "serving_stats_table",
]

logger = logging.getLogger(__name__)

#: The width of one row's interval, and how often a daemon writes its open intervals.
INTERVAL_SECONDS = 10.0
FLUSH_SECONDS = 1.0
RETENTION_SECONDS = 7 * 86400.0
#: Latency bins: bin i holds (LOW * RATIO**i, LOW * RATIO**(i+1)]; bin 0 everything <= LOW.
LOW, RATIO = 1e-5, 2.0 ** (1 / 16)

serving_stats_table = sa.Table(
    "serving_stats",
    sa.MetaData(),
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("writer", sa.String(200), primary_key=True),
    sa.Column("interval_start", sa.Float, primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("errors", sa.BigInteger, nullable=False),
    # {bin: calls} of the successful calls' latencies (JSON).
    sa.Column("latency", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


def latency_bin(seconds: float) -> int:
    """The histogram bin of a latency."""
    if not seconds > LOW:
        return 0
    return max(0, math.ceil(math.log(seconds / LOW) / math.log(RATIO)) - 1)


@dataclass
class LatencyHistogram:
    """Calls per latency bin: mergeable by adding, a quantile read off the bins."""

    bins: Counter[int] = field(default_factory=Counter)

    def add(self, seconds: float, count: int = 1) -> None:
        self.bins[latency_bin(seconds)] += count

    def merge(self, other: LatencyHistogram) -> None:
        self.bins.update(other.bins)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Each bin's value (its geometric middle) and its calls, by value."""
        keys = np.array(sorted(self.bins), dtype=float)
        values = LOW * RATIO ** (keys + 0.5)
        return values, np.array([self.bins[int(k)] for k in keys], dtype=float)


@dataclass
class ServingTotals:
    """What the gateways served of one version in a window: the analysis's figures."""

    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class SharedServingStats:
    """This daemon's serving calls per interval, written to the store and merged back."""

    def __init__(self, store: Store, writer: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.writer = writer
        self.clock = clock
        #: (model, version, interval start) -> this daemon's running totals.
        self._open: dict[tuple[str, str, float], ServingTotals] = {}
        self._dirty: set[tuple[str, str, float]] = set()
        self._write = asyncio.Lock()
        self._purged = -math.inf

    def add(self, model: str, version: str, ts: float, latency: float, error: bool, n: int) -> None:
        """Count ``n`` calls of one group (as the gateway records them)."""
        key = (model, version, math.floor(ts / INTERVAL_SECONDS) * INTERVAL_SECONDS)
        totals = self._open.setdefault(key, ServingTotals())
        totals.requests += n
        if error:
            totals.errors += n
        else:
            totals.latency.add(latency, n)
        self._dirty.add(key)

    async def flush(self) -> int:
        """Write the intervals counted since the last flush; return how many."""
        async with self._write:
            dirty, self._dirty = self._dirty, set()
            now = self.clock()
            rows = [
                {
                    "model": model,
                    "version": version,
                    "writer": self.writer,
                    "interval_start": start,
                    "requests": self._open[key].requests,
                    "errors": self._open[key].errors,
                    "latency": json.dumps(dict(self._open[key].latency.bins)),
                    "updated_at": now,
                }
                for key in sorted(dirty)
                for model, version, start in [key]
            ]
            try:
                if rows:
                    async with self.store.begin() as conn:
                        await conn.execute(upsert(conn.dialect, serving_stats_table), rows)
            except BaseException:
                self._dirty |= dirty  # written at the next flush
                raise
            # An interval well past its end gets no more calls: forgotten once written.
            done = now - 2 * INTERVAL_SECONDS
            for key in [k for k in self._open if k[2] < done and k not in self._dirty]:
                del self._open[key]
            if now - self._purged > 3600:
                self._purged = now
                async with self.store.begin() as conn:
                    t = serving_stats_table
                    await conn.execute(t.delete().where(t.c.updated_at < now - RETENTION_SECONDS))
            return len(rows)

    async def run(self) -> None:
        """Write the open intervals every ``FLUSH_SECONDS`` (a task of the gateway)."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception as exc:  # the store is away: the next flush writes them
                logger.warning("writing the gateway's serving stats failed: %r", exc)

    async def window(self, model: str, version: str, since: float, until: float) -> ServingTotals:
        """Every daemon's calls of ``version`` in the intervals starting in [since, until]:
        this daemon's up to now, the others' as of their last write."""
        await self.flush()
        return await self.stored(model, version, since, until)

    async def stored(self, model: str, version: str, since: float, until: float) -> ServingTotals:
        """The calls of ``version`` the store holds for the intervals in [since, until]."""
        t = serving_stats_table
        first = math.floor(since / INTERVAL_SECONDS) * INTERVAL_SECONDS
        query = sa.select(t.c.requests, t.c.errors, t.c.latency).where(
            t.c.model == model,
            t.c.version == version,
            t.c.interval_start >= first,
            t.c.interval_start <= until,
        )
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        totals = ServingTotals()
        for requests, errors, latency in rows:
            totals.requests += int(requests)
            totals.errors += int(errors)
            bins = Counter({int(k): int(v) for k, v in json.loads(latency).items()})
            totals.latency.merge(LatencyHistogram(bins))
        return totals
