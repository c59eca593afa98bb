"""The open buckets of a daemon that is gone, on one PostgreSQL store (issue 18).

Wardens in one process share a fresh PostgreSQL database, each under its own
``cluster.instance`` and base path. Their heartbeat loops are slowed down (60 s) so
that a test decides who is gone: a graceful stop (no member row left) or a heartbeat
aged by hand in the store (a paused daemon).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.leases import members_table
from mlwarden.daemon.ingest.tables import journal_table, profile_table
from mlwarden.daemon.warden import Warden
from tests.daemon.ingest.test_ingest import write_reference
from tests.daemon.ingest.test_several_daemons import START, _batch, _config

SINCE, UNTIL = START - 60, START + 600


@pytest.fixture
async def cluster(make_config, tmp_path, postgres_url):
    """``start(name)`` starts a Warden of the cluster; all are stopped at the end."""
    text = _config(write_reference(tmp_path))
    now = [START + 5.0]
    started: dict[str, Warden] = {}
    stopped: set[str] = set()

    async def start(name: str) -> Warden:
        warden = Warden(
            make_config(
                text,
                **{
                    "daemon.base_path": str(tmp_path / name),
                    "store.url": postgres_url,
                    "cluster.instance": name,
                    "cluster.heartbeat_seconds": 60.0,
                    "cluster.lease_ttl_seconds": 120.0,
                    # One MLflow for all (a server in production).
                    "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "mlflow.artifact_location": str(tmp_path / "mlartifacts"),
                },
            ),
            clock=lambda: now[0],
        )
        await warden.__aenter__()
        await warden.ingest.model_state("m").ready.wait()
        started[name] = warden
        return warden

    async def stop(name: str) -> None:
        stopped.add(name)
        await started[name].__aexit__(None, None, None)

    start.now = now  # type: ignore[attr-defined]
    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for name, warden in reversed(started.items()):
        if name not in stopped:
            with contextlib.suppress(Exception):
                await warden.__aexit__(None, None, None)


async def _journal(warden: Warden) -> dict[str, int]:
    """Journal rows by writer."""
    j = journal_table
    async with warden.store.connect() as conn:
        rows = await conn.execute(sa.select(j.c.writer, sa.func.count()).group_by(j.c.writer))
        return dict(rows.all())


async def _stored(warden: Warden) -> dict[str, int]:
    """Records in stored buckets by writer."""
    b = profile_table
    async with warden.store.connect() as conn:
        rows = await conn.execute(sa.select(b.c.writer, sa.func.sum(b.c.rows)).group_by(b.c.writer))
        return {writer: int(n) for writer, n in rows.all()}


async def test_count_predictions_adds_every_daemons_open_buckets(cluster):
    a, b = await cluster("a"), await cluster("b")
    await a.ingest.record_predictions("m", _batch(30, 0, START + 5))
    await b.ingest.record_predictions("m", _batch(20, 100, START + 5))
    past_ttl = START - a.config.monitoring.label_ttl_hours * 3600.0 - 60
    for warden in (a, b):  # both open: counted from each daemon's buckets and journal
        assert await warden.ingest.count_predictions("m") == 50
        assert await warden.ingest.count_predictions("m", since=past_ttl) == 50
    cluster.now[0] = START + 65
    await a.ingest.ledger.flush()  # A's bucket stored, B's still open
    for warden in (a, b):
        assert await warden.ingest.count_predictions("m") == 50


async def test_a_stopped_daemons_open_buckets_are_taken_over_once(cluster):
    a, b, d = await cluster("a"), await cluster("b"), await cluster("d")
    for warden, n, first in ((a, 30, 0), (b, 20, 100), (b, 5, 200), (d, 10, 300)):
        await warden.ingest.record_predictions("m", _batch(n, first, START + 5))
    await cluster.stop("b")  # for good: its open bucket is two journal rows, never flushed
    assert (await _journal(a))["b"] == 2
    assert (await a.ingest.window("m", SINCE, UNTIL)).rows == 65
    # A and D both look for gone writers at once: one takes B's rows (a lease each).
    await asyncio.gather(a.ingest.ledger.adopt(), d.ingest.ledger.adopt())
    journal = await _journal(a)
    assert "b" not in journal and sum(journal.values()) == 4
    taker = a if journal.get("a") == 3 else d
    assert sum(p.rows for p in taker.ingest.model_state("m").open.values()) == 25 + (
        30 if taker is a else 10
    )
    for warden in (a, d):  # counted once, whoever looks
        assert (await warden.ingest.window("m", SINCE, UNTIL)).rows == 65
        assert await warden.ingest.count_predictions("m") == 65
    assert await a.ingest.ledger.adopt() == 0  # nothing left to take
    cluster.now[0] = START + 65
    for warden in (a, d):
        await warden.ingest.ledger.flush()
    assert await _journal(a) == {}
    assert sum((await _stored(a)).values()) == 65 and "b" not in await _stored(a)
    for warden in (a, d):
        assert (await warden.ingest.window("m", SINCE, UNTIL)).rows == 65


async def test_a_paused_daemon_does_not_flush_what_was_taken_over(cluster):
    a, b = await cluster("a"), await cluster("b")
    await b.ingest.record_predictions("m", _batch(20, 0, START + 5))
    m = members_table
    async with a.store.begin() as conn:  # B froze: its heartbeat stopped 1000 s ago
        await conn.execute(
            m.update().where(m.c.instance == "b").values(heartbeat_at=m.c.heartbeat_at - 1000)
        )
    assert await a.ingest.ledger.adopt() == 1
    assert await _journal(a) == {"a": 1}
    # B wakes up, takes another batch into the same open bucket, and flushes it.
    await b.ingest.record_predictions("m", _batch(10, 100, START + 5))
    assert (await a.ingest.window("m", SINCE, UNTIL)).rows == 30
    # B's first flush finds one journal row where its bucket folded two: it writes
    # nothing and rebuilds the bucket from its row; the next writes that (the
    # housekeeping loops flush too, so the calls here may find nothing left).
    cluster.now[0] = START + 65
    for warden in (b, b, a):
        await warden.ingest.ledger.flush()
    assert await _stored(a) == {"a": 20, "b": 10} and await _journal(a) == {}
    for warden in (a, b):
        assert (await warden.ingest.window("m", SINCE, UNTIL)).rows == 30
