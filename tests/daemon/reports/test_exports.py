"""Exports: every kind round-trips through CSV, Parquet and JSON with typed columns;
a million-row export streams without growing the process; bad parameters are 4xx."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pandas.api.types as pdt
import pyarrow.parquet as pq
import pytest

from mlwarden.daemon.experiments.records import experiments_table
from mlwarden.daemon.monitoring.performance import history_table
from mlwarden.daemon.reports.exports import EXPORT_KINDS
from mlwarden.daemon.rollouts.records import rollouts_table
from tests.daemon.reports.helpers import ingest_and_check, model_config

PANDAS_DTYPES = {"int64": "int64", "double": "float64", "bool": "bool", "string": "object"}


async def _history(warden, client) -> None:
    """Drift checks, profile buckets, performance windows, an experiment, a rollout."""
    await ingest_and_check(client, shifted=False)
    await ingest_and_check(client, shifted=True)
    await warden.ingest.ledger.flush(everything=True)
    now = warden.clock()
    async with warden.store.begin() as conn:
        await conn.execute(
            history_table.insert(),
            [
                {"model": "m", "version": "1.0.0", "ts": now - i, "since": now - i - 60,
                 "until": now - i, "samples": 100 + i, "metrics": json.dumps({"rmse": 0.5 + i})}
                for i in range(3)
            ],
        )  # fmt: skip
        await conn.execute(
            experiments_table.insert().values(
                id="e1", name="ab", model="m", version_a="1.0.0", version_b="1.1.0",
                weight_b=0.5, duration_hours=24, status="concluded", started_at=now - 100,
                ends_at=now, concluded_at=now - 5, actor="op", settings="{}",
                auto_promote=False, previous_traffic="{}", sequential_state="{}",
                evaluations=2, result=json.dumps({"p_value": 0.01, "lift": 0.12}),
                recommendation="PROMOTE_B", winner="1.1.0",
            )
        )  # fmt: skip
        await conn.execute(
            rollouts_table.insert().values(
                id="r1", model="m", candidate="1.1.0", baseline="1.0.0", strategy="canary",
                options="{}", state="rolled_back", step=2, weight=0.25, mirror=False,
                failures=1, memo="{}", step_started_at=now - 50, next_analysis_at=now,
                started_at=now - 60, updated_at=now, finished_at=now - 1, actor="op",
                reason="error rate",
            )
        )  # fmt: skip


async def test_every_kind_round_trips_in_every_format(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    await _history(warden, client)
    for name, kind in EXPORT_KINDS.items():
        resp = await client.get(f"/api/exports/{name}?format=json&model=m")
        assert resp.status == 200, (name, await resp.text())
        rows = json.loads(await resp.read())
        assert rows, f"export {name} has no rows"
        expected = pd.DataFrame(rows, columns=[c for c, _ in kind.columns])

        resp = await client.get(f"/api/exports/{name}?format=parquet&model=m")
        assert resp.status == 200 and resp.content_type == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(await resp.read()))
        assert table.schema.equals(kind.schema), name
        frame = table.to_pandas()
        pd.testing.assert_frame_equal(
            frame, expected.astype(frame.dtypes.to_dict()), check_dtype=True
        )

        resp = await client.get(f"/api/exports/{name}?format=csv&model=m")
        assert resp.status == 200 and resp.content_type == "text/csv"
        # CSV carries no types: text columns are named (a status "201" reads as a
        # number otherwise); numbers and booleans are read as such unaided.
        text = {c: "string" for c, t in kind.columns if str(t) == "string"}
        csv_frame = pd.read_csv(io.BytesIO(await resp.read()), dtype=text)
        assert list(csv_frame.columns) == list(expected.columns)
        assert len(csv_frame) == len(expected)
        for column, arrow_type in kind.columns:
            values = csv_frame[column]
            if values.isna().all():
                continue  # an all-empty column has no type to read
            want = PANDAS_DTYPES[str(arrow_type)]
            if want == "int64" and values.isna().any():
                want = "float64"  # pandas reads an int column with gaps as float
            check = {"int64": pdt.is_integer_dtype, "float64": pdt.is_float_dtype,
                     "bool": pdt.is_bool_dtype, "object": pdt.is_string_dtype}[want]  # fmt: skip
            assert check(values.dtype), (name, column, values.dtype)
            left = [None if pd.isna(v) else v for v in values.tolist()]
            right = [None if v is None or v == "" or pd.isna(v) else v
                     for v in expected[column].tolist()]  # fmt: skip
            if want == "float64":
                assert left == pytest.approx(right, rel=1e-15), (name, column)
            else:
                assert left == right, (name, column)


async def test_profiles_summarise_each_window_per_feature(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    await _history(warden, client)
    rows = json.loads(await (await client.get("/api/exports/profiles?format=json")).read())
    x2 = [r for r in rows if r["feature"] == "x2"]
    assert sum(r["count"] for r in x2) == 6000
    total = sum(r["mean"] * r["count"] for r in x2) / 6000
    assert 0.6 < total < 0.9  # half the rows shifted by 1.5
    kind = [r for r in rows if r["feature"] == "kind"]
    assert sum(r["count"] for r in kind) == 6000


async def test_bad_export_parameters(make_warden, make_client, tmp_path):
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    cases = {
        "/api/exports/nope": (400, "unknown export kind 'nope'"),
        "/api/exports/drift?format=xlsx": (
            400,
            "query parameter 'format': expected one of csv, parquet, json, got 'xlsx'",
        ),
        "/api/exports/drift?from=2026-02-01&to=2026-01-01": (400, "after 'to'"),
        "/api/exports/drift?model=ghost": (404, "'ghost'"),
    }
    for path, (status, words) in cases.items():
        resp = await client.get(path)
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert words in body["error"]["message"], (path, body)
    # A range with no data: a file with its header only.
    resp = await client.get("/api/exports/drift?from=2001-01-01&to=2001-01-02")
    assert resp.status == 200
    assert (await resp.text()).strip().split(",")[:2] == ["id", "model"]
    frame = pq.read_table(
        io.BytesIO(await (await client.get("/api/exports/drift?format=parquet&to=1")).read())
    )
    assert frame.num_rows == 0 and frame.schema.equals(EXPORT_KINDS["drift"].schema)


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fill_audit(database: Path, n: int) -> None:
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA busy_timeout=30000")
        start = db.execute("SELECT COALESCE(MAX(id), 0) FROM audit_log").fetchone()[0] + 1
        db.executemany(
            "INSERT INTO audit_log (id, ts, actor, action, target, outcome, detail, prev_hash,"
            " hash) VALUES (?, ?, 'bulk', 'POST /x', ?, 'ok', '{\"n\": 1}', ?, ?)",
            ((i, 1000.0 + i, f"/api/models/m/{i}", "0" * 64, f"{i:064d}")
             for i in range(start, start + n)),
        )  # fmt: skip


def test_a_million_rows_stream_flat_and_the_loop_stays_free(daemon_factory):
    """A real daemon exports 1M audit rows as CSV and then as Parquet, each the first
    export of its format in the process: its RSS grows by less than 50 MB meanwhile
    (sampled every 20 ms from the daemon's idle RSS), and /healthz, probed from another
    thread every 50 ms, never waits a second (an export that ran on the event loop
    would hold it for the whole export: seconds; the p99 and the slowest are printed,
    not asserted, as the machine running the tests is shared).

    Measured on the 2-core test machine: CSV +1-4 MB, Parquet +21-25 MB at the peak
    (first export included: the writer's fixed cost is paid at start, and mimalloc's
    purge delay holds some 15 MB of it; reports/exports.py). The 50 MB bound leaves
    twice that for a shared machine; before the export used its own pool the first
    Parquet export peaked at +40-68 MB and kept 29 MB."""
    daemon = daemon_factory().start()
    _fill_audit(daemon.base_path / "mlwarden.db", 1_000_000)
    pid = daemon.proc.pid
    for fmt in ("csv", "parquet"):
        base = _rss(pid)
        peak = [base]
        probes: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():  # noqa: B023 (joined in the same iteration)
                peak[0] = max(peak[0], _rss(pid))  # noqa: B023
                time.sleep(0.02)

        def probe() -> None:
            while not done.is_set():  # noqa: B023 (joined in the same iteration)
                started = time.perf_counter()
                with urllib.request.urlopen(daemon.url + "/healthz", timeout=10) as resp:
                    assert resp.status == 200
                probes.append(time.perf_counter() - started)  # noqa: B023
                time.sleep(0.05)

        threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
        for thread in threads:
            thread.start()
        size = 0
        try:
            url = f"{daemon.url}/api/exports/audit?format={fmt}&to=2000000"
            with urllib.request.urlopen(url, timeout=300) as resp:
                assert resp.status == 200
                while chunk := resp.read(1 << 16):
                    size += len(chunk)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        growth = (peak[0] - base) / 2**20
        slowest = max(probes) * 1000
        # What stays once the export has given its memory back (in its thread, after
        # the last piece): a few MB, where the first Parquet export used to keep 29.
        deadline = time.monotonic() + 5
        while (kept := (_rss(pid) - base) / 2**20) >= 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"{fmt}: {size / 2**20:.0f} MB exported, daemon RSS +{growth:.1f} MB at the "
              f"peak, +{kept:.1f} MB after, /healthz max {slowest:.1f} ms over "
              f"{len(probes)} probes")  # fmt: skip
        assert kept < 10, f"{fmt}: the export kept {kept:.1f} MB"
        assert size > (100 if fmt == "csv" else 10) * 2**20
        assert growth < 50, f"{fmt}: RSS grew {growth:.1f} MB"
        assert len(probes) >= 10
        p99 = sorted(probes)[int(len(probes) * 0.99) - 1] * 1000
        print(f"{fmt}: /healthz p99 {p99:.1f} ms")
        assert slowest < 1000, f"{fmt}: /healthz took {slowest:.0f} ms: the loop was held"


def test_cli_report_and_export_against_a_daemon(daemon_factory, tmp_path):
    import subprocess
    import sys

    daemon = daemon_factory().start()
    common = ["--config", str(daemon.config_path), "--url", daemon.url]
    out = tmp_path / "audit.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "mlwarden", "export", "audit", "--format", "parquet",
         "-o", str(out), *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert pq.read_table(out).schema.equals(EXPORT_KINDS["audit"].schema)
    done = subprocess.run(
        [sys.executable, "-m", "mlwarden", "report", "compliance", "--format", "json", *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["audit"]["verification"]["intact"] is True
    done = subprocess.run(
        [sys.executable, "-m", "mlwarden", "report", "model", "ghost", *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "404" in done.stderr and "'ghost'" in done.stderr
