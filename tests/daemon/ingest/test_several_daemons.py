"""Several daemons on one PostgreSQL store: any daemon accepts any ingest request.

Two Wardens in one process (their own base paths and ``cluster.instance``) share one
fresh PostgreSQL database; a third one on SQLite is fed everything and is the yardstick.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import sqlalchemy as sa

from mlwarden.daemon.ingest.tables import (
    INGEST_SCHEMA,
    journal_table,
    outcomes_table,
    profile_table,
)
from mlwarden.daemon.warden import Warden
from tests.daemon.ingest.test_ingest import records, write_reference

START = (time.time() // 60) * 60 - 600  # a bucket start, ten minutes ago


def _config(reference) -> str:
    return (
        "[monitoring]\nbucket_seconds = 60\nwindow_hours = 1\nmin_window_rows = 10\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
    )


class _Daemons:
    """Wardens A and B on one PostgreSQL database, C alone on SQLite, one clock."""

    def __init__(self, make_config, tmp_path, postgres_url: str) -> None:
        reference = write_reference(tmp_path)
        text = _config(reference)
        self.now = [START + 5.0]
        clock = lambda: self.now[0]  # noqa: E731
        shared = {"store.url": postgres_url}

        def config(name: str, **overrides: str):
            return make_config(text, **{"daemon.base_path": str(tmp_path / name), **overrides})

        self.a = Warden(config("a", **shared, **{"cluster.instance": "a"}), clock=clock)
        # One MLflow for A and B (a server in production): the same registered versions.
        mlflow = {
            "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}",
            "mlflow.artifact_location": str(tmp_path / "a" / "mlartifacts"),
        }
        self.b = Warden(config("b", **shared, **mlflow, **{"cluster.instance": "b"}), clock=clock)
        alone = {"store.url": f"sqlite+aiosqlite:///{tmp_path / 'c' / 'mlwarden.db'}"}
        self.c = Warden(config("c", **alone), clock=clock)

    async def __aenter__(self) -> _Daemons:
        for warden in (self.a, self.b, self.c):
            await warden.__aenter__()
            await warden.ingest.model_state("m").ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for warden in (self.c, self.b, self.a):
            await warden.__aexit__(None, None, None)


@pytest.fixture
async def daemons(make_config, tmp_path, postgres_url):
    async with _Daemons(make_config, tmp_path, postgres_url) as d:
        yield d


def _batch(n: int, start: int, ts: float, shift: float = 0.0) -> dict:
    out = records(n, start=start, ts=ts)
    for rec in out:
        rec["features"]["x"] += shift
    return {"records": out}


def _same_profile(one, other) -> None:
    """The counted parts equal; moments equal to rounding; the same sampled rows."""
    assert one.rows == other.rows
    for name in ("count", "nulls", "nans", "infs", "hist", "cat_counts", "cat_nulls"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name), err_msg=name)
    np.testing.assert_allclose(one.mean, other.mean, rtol=1e-9)
    np.testing.assert_allclose(one.m2, other.m2, rtol=1e-9)
    # Fewer rows than sample_size: every row is sampled, whoever profiled it.
    assert len(one.sample) == one.rows
    np.testing.assert_array_equal(np.sort(one.sample, axis=0), np.sort(other.sample, axis=0))


async def test_split_ingest_gives_the_window_of_one_daemon(daemons):
    a, b, c = daemons.a, daemons.b, daemons.c
    n = 0
    for bucket in range(3):  # three buckets, batches alternating between A and B
        daemons.now[0] = START + bucket * 60 + 5
        for k in range(6):
            body = _batch(40, n, daemons.now[0], shift=0.8 * bucket)
            n += 40
            await (a if k % 2 else b).ingest.record_predictions("m", body)
            await c.ingest.record_predictions("m", body)
        if bucket == 1:  # A writes its closed buckets, B keeps its open ones
            daemons.now[0] += 60
            await a.ingest.ledger.flush()
            await c.ingest.ledger.flush()
    since, until = START - 60, daemons.now[0] + 60
    (version,) = {v for v, _ in c.ingest.model_state("m").open}  # records named none
    # Every mix of open and closed parts: each daemon sees the other's buckets too.
    for _ in range(2):
        whole = await c.ingest.window("m", since, until)
        assert whole.rows == n
        _same_profile(await a.ingest.window("m", since, until), whole)
        _same_profile(await b.ingest.window("m", since, until), whole)
        _same_profile(await a.ingest.window("m", since, until, version), whole)
        await a.ingest.ledger.flush(everything=True)  # then everything closed
        await b.ingest.ledger.flush(everything=True)
        await c.ingest.ledger.flush(everything=True)
    # Each daemon wrote its own partial buckets, and only its own journal was flushed.
    async with a.store.connect() as conn:
        writers = (
            await conn.execute(
                sa.select(profile_table.c.writer, sa.func.sum(profile_table.c.rows)).group_by(
                    profile_table.c.writer
                )
            )
        ).all()
        journal = (
            await conn.execute(sa.select(sa.func.count()).select_from(journal_table))
        ).scalar()
    assert dict(writers) == {"a": n // 2, "b": n // 2} and journal == 0
    # The drift check: the same counts and statistics from A, from B and from C alone.
    daemons.now[0] = START + 3 * 60 + 30
    reports = [await w.monitor.check("m") for w in (a, b, c)]
    assert [r["rows"]["current"] for r in reports] == [n, n, n]
    for report in reports[:2]:
        assert report["drifted_features"] == reports[2]["drifted_features"]
        for feature, drift in report["feature_drifts"].items():
            expected = reports[2]["feature_drifts"][feature]["methods"]
            for method, verdict in drift["methods"].items():
                assert verdict["statistic"] == pytest.approx(
                    expected[method]["statistic"], rel=1e-9
                ), (feature, method)


async def test_window_finds_a_bucket_committed_with_a_lower_seq(daemons):
    """A bucket whose seq is below the window's newest (committed late) is still counted."""
    a, b = daemons.a, daemons.b
    await a.ingest.record_predictions("m", _batch(30, 0, START + 5))
    await b.ingest.record_predictions("m", _batch(20, 100, START + 5))
    daemons.now[0] = START + 65
    await a.ingest.ledger.flush()
    await b.ingest.ledger.flush()
    since, until = START - 60, START + 600
    assert (await a.ingest.window("m", since, until)).rows == 50
    # As if a third daemon's transaction took seq 1 early and committed now.
    state = a.ingest.model_state("m")
    async with a.store.begin() as conn:
        row = (
            await conn.execute(sa.select(profile_table).where(profile_table.c.writer == "b"))
        ).one()
        values = {**row._mapping, "seq": 0, "writer": "late"}
        await conn.execute(profile_table.insert().values(values))
    assert max(state.windows[None].buckets) > 0
    assert (await a.ingest.window("m", since, until)).rows == 70
    # A purged bucket is noticed too (the window is rebuilt).
    async with a.store.begin() as conn:
        await conn.execute(profile_table.delete().where(profile_table.c.writer == "late"))
    assert (await a.ingest.window("m", since, until)).rows == 50


async def test_labels_join_predictions_another_daemon_took(daemons):
    a, b = daemons.a, daemons.b
    await a.ingest.record_predictions("m", _batch(10, 0, START + 5))
    labels = {"labels": [{"id": f"r{i}", "label": float(i)} for i in range(8)]}
    result = await b.ingest.record_labels("m", labels)
    assert result == {"accepted": 8, "matched": 8, "unmatched": 0}
    # The same label sent to both at once (a retry racing its original): counted once,
    # each answer a match; a later correction replaces it.
    same = {"labels": [{"id": "r9", "label": 1.0}]}
    first, second = await asyncio.gather(
        a.ingest.record_labels("m", same), b.ingest.record_labels("m", same)
    )
    assert first["matched"] == second["matched"] == 1
    await a.ingest.record_labels("m", {"labels": [{"id": "r9", "label": 2.0}]})
    unknown = await b.ingest.record_labels("m", {"labels": [{"id": "nope", "label": 1.0}]})
    assert unknown == {"accepted": 1, "matched": 0, "unmatched": 1}
    for warden in (a, b):
        out = await warden.ingest.outcomes("m")
        assert sorted(out.id) == sorted([f"r{i}" for i in range(8)] + ["r9"])
        assert float(out.label[list(out.id).index("r9")]) == 2.0
    async with a.store.connect() as conn:
        count = sa.select(sa.func.count()).select_from(outcomes_table)
        assert (await conn.execute(count)).scalar() == 9


async def test_batch_ids_and_prediction_ids_are_shared(daemons):
    a, b = daemons.a, daemons.b
    body = _batch(25, 0, START + 5)
    assert "replayed" not in await a.ingest.record_predictions("m", body, batch_id="one")
    retried = await b.ingest.record_predictions("m", body, batch_id="one")
    assert retried["replayed"] is True
    # Sent to both at once: one stores it, the other answers as a retry.
    body = _batch(25, 100, START + 5)
    answers = await asyncio.gather(
        a.ingest.record_predictions("m", body, batch_id="two"),
        b.ingest.record_predictions("m", body, batch_id="two"),
    )
    assert sorted(bool(r.get("replayed")) for r in answers) == [False, True]
    # The same prediction ids without a batch id, at once: one stored, one refused (409).
    body = _batch(25, 200, START + 5)
    answers = await asyncio.gather(
        a.ingest.record_predictions("m", body),
        b.ingest.record_predictions("m", body),
        return_exceptions=True,
    )
    refused = [r for r in answers if isinstance(r, Exception)]
    assert len(refused) == 1 and refused[0].status == 409, answers
    assert await a.ingest.count_predictions("m", since=START) == 75
    daemons.now[0] = START + 65
    for warden in (a, b):
        await warden.ingest.ledger.flush()
    assert (await b.ingest.window("m", START - 60, START + 600)).rows == 75


async def test_a_traffic_change_at_one_daemon_routes_at_the_other(daemons):
    from mlwarden.daemon.rollouts.traffic import FOLLOW_SECONDS
    from tests.daemon.registry.helpers import log_model_files

    a, b = daemons.a, daemons.b
    for _ in range(2):
        run_id = await asyncio.to_thread(log_model_files, a)
        await a.registry.register("m", model_uri=f"runs:/{run_id}/model")
    await a.rollouts.set_traffic("m", {"1.0.0": 0.5, "1.0.1": 0.5}, reason="test", actor="t")
    keys = [f"customer-{i}" for i in range(200)]
    started = time.monotonic()
    while b.rollouts.traffic_tables.get("m") != {"1.0.0": 0.5, "1.0.1": 0.5}:
        assert time.monotonic() - started < FOLLOW_SECONDS + 2, "B never saw the table"
        await asyncio.sleep(0.05)
    routes = [a.rollouts.route("m", k) for k in keys]
    assert routes == [b.rollouts.route("m", k) for k in keys]
    assert 60 < routes.count("1.0.1") < 140
    # A change through B reaches A the same way; B's own change is not undone by a
    # read that started before it.
    await b.rollouts.set_traffic("m", {"1.0.0": 0.1, "1.0.1": 0.9}, reason="test", actor="t")
    assert b.rollouts.traffic_tables.get("m") == {"1.0.0": 0.1, "1.0.1": 0.9}
    started = time.monotonic()
    while a.rollouts.traffic_tables.get("m") != {"1.0.0": 0.1, "1.0.1": 0.9}:
        assert time.monotonic() - started < FOLLOW_SECONDS + 2, "A never saw the table"
        await asyncio.sleep(0.05)
    assert [a.rollouts.route("m", k) for k in keys] == [b.rollouts.route("m", k) for k in keys]
    # A setting A still believes in (stale) is written all the same: B's table differs.
    a.rollouts.traffic_tables.adopt("m", {"1.0.0": 0.5, "1.0.1": 0.5})
    await a.rollouts.set_traffic("m", {"1.0.0": 0.5, "1.0.1": 0.5}, reason="back", actor="t")
    assert (await a.rollouts.traffic_tables.stored("m"))["m"] == {"1.0.0": 0.5, "1.0.1": 0.5}


async def test_upgrade_adds_the_writer_and_claims_old_journal_rows(
    make_config, tmp_path, store_url
):
    """A store from before the writer column: step 4 adds it, the first daemon replays."""
    text = _config(write_reference(tmp_path))

    def config(instance: str):
        return make_config(text, **{"store.url": store_url, "cluster.instance": instance})

    clock = lambda: START + 5.0  # noqa: E731
    async with Warden(config("old"), clock=clock) as warden:
        await warden.ingest.model_state("m").ready.wait()
        await warden.ingest.record_predictions("m", _batch(30, 0, START + 5))
        async with warden.store.begin() as conn:  # as the release before wrote them
            await conn.execute(sa.text("UPDATE ingest_journal SET writer = NULL"))
            for table in ("ingest_journal", "profile_buckets"):
                await conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN writer"))
            await conn.execute(
                sa.text("UPDATE schema_version SET version = 3 WHERE component = 'ingest'")
            )
    async with Warden(config("new"), clock=clock) as warden:
        state = warden.ingest.model_state("m")
        await state.ready.wait()
        assert (await warden.store.schema_versions())["ingest"] == len(INGEST_SCHEMA.steps)
        assert sum(p.rows for p in state.open.values()) == 30
        async with warden.store.connect() as conn:
            writers = await conn.execute(sa.select(journal_table.c.writer).distinct())
            assert [w for (w,) in writers] == ["new"]
        assert (await warden.ingest.window("m", START - 60, START + 600)).rows == 30
