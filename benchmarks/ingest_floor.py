"""The floor of ingest: what a 1,000-record batch costs before any daemon overhead.

    python benchmarks/ingest_floor.py [--batches 100]

Issue 3 asks for 200,000 records/s of columnar JSON (and 20,000 of record JSON) on a
2-core machine, in batches of 1,000: 200 batches/s, so at most 10 ms of CPU per batch
for everything, the client included. This script measures, in one run, the parts no
ingest design that keeps the present contract can skip, each on its own:

- **HTTP**: a bare aiohttp handler that only reads the body (a subprocess on loopback,
  the same 4 concurrent senders and bodies as benchmarks/ingest.py); its CPU per
  request.
- **prepare**: ``ingest_prepare.prepare_batch`` in-process (decode, validate, cut by
  bucket, profile, encode), the daemon's own code; median CPU per batch.
- **store**: the statements every acknowledged batch commits before its 201, in plain
  ``sqlite3`` with the daemon's pragmas (WAL, synchronous=NORMAL) and no SQLAlchemy:
  the duplicate-id probe (json_each driving the primary-key probes, as the daemon
  does), the batch row, one row per id (what labels join on), the journal row of the
  batch's columns, the commit. CPU per batch over ``--batches``
  batches into a growing table.

It then runs a real ``mlwarden run`` (default config) on the same bodies and prints its
CPU per batch and records/s next to the floor, and the records/s two fully used cores
would give at the floor.

Last, for the columnar form, the least that any implementation of the contract does in
compiled code alone, with no Python per value and no daemon: the simdjson parse of the
body with each feature read as one float64 buffer, the profile of the batch
(``Profile.from_columns``: counts, moments, histograms, the sample), the client's CPU
per request, the bare HTTP read and the store's statements. If that sum is over 10 ms,
no Python daemon that keeps the contract reaches 200,000 records/s on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_harness as bench  # the same bodies, client and daemon harness

from mlwarden.daemon.core.config import ModelConfig, MonitoringConfig
from mlwarden.daemon.ingest.prepare import prepare_batch
from mlwarden.daemon.profiles.columns import Columns
from mlwarden.daemon.profiles.profile import Profile
from mlwarden.daemon.profiles.reference import build_reference

SERVER = """
import sys
from aiohttp import web

async def read_only(request):
    await request.read()
    return web.json_response({"accepted": 1000}, status=201)

app = web.Application(client_max_size=64 << 20)
app.router.add_post("/p", read_only)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_http(bodies: list[bytes]) -> tuple[float, float]:
    """CPU seconds per request of a handler that only reads the body, and of the client."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        before = _cpu(proc.pid)
        _, client = asyncio.run(bench.send_all(f"http://127.0.0.1:{port}/p", bodies, bench.SENDERS))
        return (_cpu(proc.pid) - before) / len(bodies), client / len(bodies)
    finally:
        proc.terminate()
        proc.wait(30)


def prepare(bodies: list[bytes], layout) -> tuple[float, list]:
    """Median CPU seconds of prepare_batch per body, and the prepared batches."""
    now = time.time()
    times, prepared = [], []
    for body in bodies:
        start = time.process_time()
        prepared.append(
            prepare_batch(
                body, layout, profiled=True, default_version="1", bucket_seconds=300,
                sample_size=5000, task="regression", now=now, oldest=now - 86400,
                max_batch=10_000,
            )
        )  # fmt: skip
        times.append(time.process_time() - start)
    return statistics.median(times), prepared


def compiled(bodies: list[bytes], layout) -> tuple[float, float]:
    """Median CPU seconds per columnar body of the typed parse, and of its profile."""
    import simdjson

    parser = simdjson.Parser()
    rng = np.random.default_rng(0)
    parse_times, profile_times = [], []
    for body in bodies:
        start = time.process_time()
        doc = parser.parse(body)
        columns = doc["columns"]
        features = columns["features"]
        arrays = [  # the layout's numeric columns: the features, then the prediction
            features[name] if name in features else columns[name] for name in layout.numeric
        ]
        block = np.stack([np.frombuffer(a.as_buffer(of_type="d")) for a in arrays], axis=1)
        del arrays, features, columns, doc
        middle = time.process_time()
        Profile.from_columns(layout, Columns(block, np.zeros((len(block), 0), np.int32)), 5000, rng)
        parse_times.append(middle - start)
        profile_times.append(time.process_time() - middle)
    return statistics.median(parse_times), statistics.median(profile_times)


def store(prepared: list, path: Path, skip: str = "") -> float:
    """CPU seconds per batch of the statements an acknowledged batch commits.

    ``skip`` ("probe", "ids" or "journal") leaves that statement out, to tell its cost.
    """
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE batches (seq INTEGER PRIMARY KEY, model TEXT, ts_min REAL, "
        "ts_max REAL, rows INT, data BLOB)"
    )
    db.execute("CREATE TABLE ids (model TEXT, id TEXT, batch INT, PRIMARY KEY (model, id))")
    db.execute(
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY, model TEXT, version TEXT, "
        "start REAL, layout TEXT, data BLOB)"
    )
    import orjson

    start = time.process_time()
    for b, batch in enumerate(prepared):
        ids = orjson.dumps([f"{b}-{rid}" for rid in batch.batch.ids.tolist()]).decode()
        db.execute("BEGIN")
        if skip != "probe":
            db.execute(
                "SELECT i.id FROM json_each(?) AS j CROSS JOIN ids AS i "
                "ON i.model = 'm' AND i.id = j.value LIMIT 1",
                (ids,),
            ).fetchall()
        seq = db.execute(
            "INSERT INTO batches (model, ts_min, ts_max, rows, data) VALUES ('m', ?, ?, ?, ?)",
            (float(batch.batch.ts.min()), float(batch.batch.ts.max()), len(batch.batch),
             batch.predictions),
        ).lastrowid  # fmt: skip
        if skip != "ids":
            db.execute(
                "INSERT INTO ids (model, id, batch) SELECT 'm', value, ? FROM json_each(?)",
                (seq, ids),
            )
        for (version, bucket), blob, _ in batch.parts if skip != "journal" else ():
            db.execute(
                "INSERT INTO journal (model, version, start, layout, data) "
                "VALUES ('m', ?, ?, 'fp', ?)",
                (version, bucket, blob),
            )
        db.execute("COMMIT")
    seconds = (time.process_time() - start) / len(prepared)
    db.close()
    return seconds


def daemon_run(root: Path, reference: Path, forms: dict[str, list[bytes]]) -> dict:
    config = (
        "[monitoring]\ninterval_seconds = 3600\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
    )
    out = {}
    with bench.Daemon(root, config) as daemon:
        url = daemon.url + "/api/models/m/predictions"
        asyncio.run(bench.send_all(url, bench.record_bodies(2, 1000, seed=0), 2))  # warm-up
        for form, bodies in forms.items():
            cpu = daemon.cpu_seconds()
            seconds, _ = asyncio.run(bench.send_all(url, bodies, bench.SENDERS))
            out[form] = ((daemon.cpu_seconds() - cpu) / len(bodies), len(bodies) * 1000 / seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=100, help="batches per form (100)")
    args = parser.parse_args()
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    forms = {
        "records": bench.record_bodies(args.batches, 1000, seed=1),
        "columns": bench.column_bodies(args.batches, 1000, seed=2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        frame = bench.reference_frame(50_000, seed=1)
        reference = root / "reference.parquet"
        frame.to_parquet(reference)
        layout = build_reference(frame, ModelConfig(name="m"), MonitoringConfig(), "fp").layout
        floors, clients = {}, {}
        for form, bodies in forms.items():
            http, clients[form] = bare_http(bodies)
            prep, prepared = prepare(bodies, layout)
            db = store(prepared, root / f"floor-{form}.db")
            floors[form] = (http, prep, db)
            if form == "columns":
                parts = {
                    skip: db - store(prepared, root / f"floor-no-{skip}.db", skip)
                    for skip in ("probe", "ids", "journal")
                }
                least = (clients[form], http, *compiled(bodies, layout), db)
        (root / "daemon").mkdir()
        measured = daemon_run(root / "daemon", reference, forms)
    print("CPU per 1,000-record batch (50 features), ms; records/s on 2 cores:")
    for form, (http, prep, db) in floors.items():
        floor = http + prep + db
        cpu, rate = measured[form]
        print(
            f"  {form:8s}: HTTP read {http * 1e3:5.1f} + prepare {prep * 1e3:5.1f} + store "
            f"{db * 1e3:5.1f} = floor {floor * 1e3:5.1f} ms -> at most {2 / floor * 1000:8.0f} "
            f"records/s with both cores busy; the daemon: {cpu * 1e3:5.1f} ms "
            f"({cpu / floor:.2f}x the floor), {rate:7.0f} records/s"
        )
    print(
        "  of the columnar store: "
        + ", ".join(f"{name} {cost * 1e3:.1f} ms" for name, cost in parts.items())
        + " (the store without it, subtracted)"
    )
    names = ("client", "HTTP read", "typed parse", "profile", "store")
    print(
        "  columnar, compiled parts only: "
        + " + ".join(f"{name} {cost * 1e3:.1f}" for name, cost in zip(names, least, strict=True))
        + f" = {sum(least) * 1e3:.1f} ms -> at most {2 / sum(least) * 1000:.0f} records/s "
        "with both cores busy and no Python per value"
    )
    print("Goals: 200,000 records/s columnar (10 ms per batch on 2 cores), 20,000 record JSON.")


if __name__ == "__main__":
    main()
