"""Two real ``mlwarden run`` processes on one PostgreSQL database, a third on SQLite.

Predictions sent alternately to A and B, labels sent to the daemon that did not take
their prediction, a batch retried at the other daemon: the drift check of either daemon
counts what the lone SQLite daemon fed everything counts, and each label once.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.daemon.monitoring.test_drift_e2e import as_columns, frame


def _config(reference, postgres_url: str | None, instance: str) -> str:
    daemon = f'[daemon]\ndatabase_url = "{postgres_url}"\n' if postgres_url else ""
    return (
        f'{daemon}[cluster]\ninstance = "{instance}"\n'
        "[monitoring]\nbucket_seconds = 2\ninterval_seconds = 3600\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
    )


def _statistics(report: dict) -> dict:
    return {
        (feature, method): verdict["statistic"]
        for feature, drift in report["feature_drifts"].items()
        for method, verdict in drift["methods"].items()
    }


async def test_two_processes_count_like_one(daemon_factory, tmp_path, postgres_url):
    reference = tmp_path / "reference.csv"
    frame(20000, seed=1).to_csv(reference, index=False)
    a = daemon_factory(_config(reference, postgres_url, "a"), name="a").start()
    b = daemon_factory(_config(reference, postgres_url, "b"), name="b").start()
    lone = daemon_factory(_config(reference, None, "lone"), name="lone").start()
    sent = 0
    for k in range(6):  # 4,000 rows, part of them shifted, alternately to A and B
        body = as_columns(frame(500 + 100 * k, seed=10 + k, shift=0.8 * (k % 2)), f"b{k}-")
        sent += 500 + 100 * k
        for daemon in ((a, b)[k % 2], lone):
            status, answer = daemon.call("POST", "/api/models/m/predictions", body)
            assert status == 201, answer
    # The same batch retried at the other daemon (its answer lost): stored once.
    retry = as_columns(frame(200, seed=40), "retry-")
    headers = {"Mlwarden-Batch-Id": "batch-40"}
    status, first = a.call("POST", "/api/models/m/predictions", retry, headers=headers)
    assert status == 201 and "replayed" not in first, first
    status, again = b.call("POST", "/api/models/m/predictions", retry, headers=headers)
    assert status == 201 and again["replayed"] is True, again
    lone.call("POST", "/api/models/m/predictions", retry, headers=headers)
    sent += 200
    # An id A stored is refused by B.
    status, body = b.call("POST", "/api/models/m/predictions", as_columns(frame(1, seed=41), "b0-"))
    assert status == 409 and body["error"]["code"] == "duplicate_id", body

    reports = []
    for daemon in (a, b, lone):
        status, report = daemon.call("POST", "/api/models/m/drift-check")
        assert status == 200, report
        reports.append(report)
    assert [r["rows"]["current"] for r in reports] == [sent] * 3
    assert reports[0]["drifted_features"] == reports[2]["drifted_features"] == ["x2"]
    assert reports[1]["drifted_features"] == ["x2"]
    # Histograms are exact and every row is in the sample (fewer than sample_size):
    # every statistic is the lone daemon's.
    for report in reports[:2]:
        got, want = _statistics(report), _statistics(reports[2])
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key

    # Labels for A's batch b0 sent to B, and one of them again to A: each stored once.
    labels = {"labels": [{"id": f"b0-{i}", "label": 1.0} for i in range(100)]}
    status, joined = b.call("POST", "/api/models/m/labels", labels)
    assert status == 201 and joined["matched"] == 100, joined
    status, again = a.call("POST", "/api/models/m/labels", {"labels": labels["labels"][:10]})
    assert status == 201 and again["matched"] == 10, again
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            count = await conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM outcomes"))
            assert tuple(count.one()) == (100, 100)
            writers = await conn.execute(
                sa.text(
                    "SELECT DISTINCT writer FROM ingest_journal"
                    " UNION SELECT DISTINCT writer FROM profile_buckets"
                )
            )
            assert {w for (w,) in writers} <= {"a", "b"}
    finally:
        await engine.dispose()
    for daemon in (a, b, lone):
        assert daemon.stop() == 0
