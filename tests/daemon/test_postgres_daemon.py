"""A real ``mlwarden run`` on a PostgreSQL store: ingest, restart, nothing lost."""

from __future__ import annotations

import asyncio

from tests.daemon.monitoring.test_drift_e2e import as_columns, as_records, frame


def pg_count(url: str, sql: str) -> int:
    import asyncpg

    async def run() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_a_daemon_on_postgresql_ingests_and_survives_restarts(
    daemon_factory, tmp_path, postgres_url
):
    reference = tmp_path / "reference.csv"
    frame(5000, seed=1).to_csv(reference, index=False)
    config = (
        "[monitoring]\nbucket_seconds = 2\ninterval_seconds = 3600\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\ndrift_methods = ["psi"]\n'
    )
    daemon = daemon_factory(config, env={"MLWARDEN_STORE_URL": postgres_url}).start()
    for batch in range(2):
        status, body = daemon.call(
            "POST",
            "/api/models/m/predictions",
            as_records(frame(400, seed=10 + batch), f"b{batch}-"),
        )
        assert status == 201, body
    status, body = daemon.call(
        "POST", "/api/models/m/predictions", as_columns(frame(700, seed=20), "c-")
    )
    assert status == 201, body
    labels = {"labels": [{"id": f"b0-{i}", "label": float(i)} for i in range(50)]}
    status, body = daemon.call("POST", "/api/models/m/labels", labels)
    assert status in (200, 201) and body["matched"] == 50, body
    status, report = daemon.call("POST", "/api/models/m/drift-check")
    assert status == 200 and report["rows"]["current"] == 1500, report

    # Everything went to PostgreSQL: no SQLite store, no SQLite lock beside it.
    assert not (daemon.base_path / "mlwarden.db").exists()
    assert pg_count(postgres_url, "SELECT count(*) FROM prediction_ids WHERE model = 'm'") == 1500
    assert pg_count(postgres_url, "SELECT count(*) FROM outcomes") == 50

    daemon.kill()  # kill -9: what was acknowledged is committed
    for restart in ("after kill -9", "after a clean stop"):
        daemon.start()
        status, again = daemon.call("POST", "/api/models/m/drift-check")
        assert status == 200 and again["rows"]["current"] == 1500, (restart, again)
        assert pg_count(postgres_url, "SELECT count(*) FROM outcomes") == 50, restart
        duplicate = as_columns(frame(1, seed=31), "c-")
        status, body = daemon.call("POST", "/api/models/m/predictions", duplicate)
        assert status == 409 and body["error"]["code"] == "duplicate_id", restart
        assert daemon.stop() == 0
    daemon.start()
    status, history = daemon.call("GET", "/api/models/m/drift-history?days=1")
    assert status == 200 and len(history["reports"]) == 3, history
