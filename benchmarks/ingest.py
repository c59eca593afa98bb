"""The streaming path: ingest throughput over HTTP, drift-check latency, memory.

    python benchmarks/ingest.py [--quick] [--only ingest|client|window|memory]
        [--ingest-workers 0,2]

1. Ingest over HTTP against a real ``mlwarden run`` subprocess on loopback: batches of
   1,000 records with 50 numeric features, record JSON and columnar JSON, sent by 4
   concurrent clients (``BENCH_SENDERS=n`` for another number; bodies encoded
   beforehand, so the client costs little), once per ``monitoring.ingest_workers``
   value given; prints records/s, feature values/s and the CPU per batch of the daemon
   (with its worker processes, and of its own process alone). Each answer is a 2xx
   that was committed to SQLite.
   Arrow IPC bodies too, in batches of 1,000 and of 10,000 records, in the same run.
   Then (``--only client``, benchmarks/client_cost.py) the cost of mlwarden.client.
   The daemon, the bodies and the senders are benchmarks/ingest_harness.py's.
2. (``--only window``, benchmarks/ingest_window.py) Drift-check latency on windows of
   1M and 10M rows built from bucket profiles, in-process with the daemon's clock moved
   by hand: the first check, the window re-read, right after a bucket closes, the
   steady state, and with an open bucket merged in.
3. (``--only memory``, benchmarks/ingest_memory.py) RSS of a daemon with no model, then
   of one watching 20 models of 50 features, step by step; the per-model cost.

Goals (issue 3): >= 20,000 records/s (record JSON), >= 200,000 records/s (columnar),
< 50 ms per drift check on a 10M-row window, < 500 MB RSS for 20 x 50.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from ingest_harness import (
    ARROW,
    FEATURES,
    SENDERS,
    Daemon,
    arrow_bodies,
    column_bodies,
    record_bodies,
    reference_frame,
    send_all,
)


def bench_ingest(root: Path, quick: bool, workers: int = 0) -> dict[str, float]:
    reference = root / "reference.parquet"
    if not reference.exists():
        reference_frame(50_000, seed=1).to_parquet(reference)
    config = (
        f"[monitoring]\ninterval_seconds = 3600\ningest_workers = {workers}\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
    )
    out = {}
    root = root / f"workers-{workers}"
    root.mkdir()
    print(f"ingest_workers = {workers}", flush=True)
    with Daemon(root, config) as daemon:
        url = daemon.url + "/api/models/m/predictions"
        asyncio.run(send_all(url, record_bodies(2, 1000, seed=0), 2))  # warm-up
        n_rec = 10 if quick else 100
        n_col = 20 if quick else 200
        forms = [
            ("records", record_bodies(n_rec, 1000, seed=1), 1000, "application/json"),
            ("columns", column_bodies(n_col, 1000, seed=2), 1000, "application/json"),
            ("arrow", arrow_bodies(n_col, 1000, seed=3), 1000, ARROW),
            ("arrow10k", arrow_bodies(n_col // 10, 10_000, seed=4), 10_000, ARROW),
        ]
        for form, bodies, size, content_type in forms:
            daemon_cpu, main_cpu = daemon.cpu_seconds(), daemon.cpu_seconds(workers=False)
            seconds, client_cpu = asyncio.run(
                send_all(url, bodies, senders=SENDERS, content_type=content_type)
            )
            daemon_cpu = daemon.cpu_seconds() - daemon_cpu
            main_cpu = daemon.cpu_seconds(workers=False) - main_cpu
            rows = len(bodies) * size
            out[f"ingest_{form}_records_per_s"] = rows / seconds
            out[f"ingest_{form}_values_per_s"] = rows * (len(FEATURES) + 1) / seconds
            out[f"ingest_{form}_mb"] = sum(map(len, bodies)) / 1e6
            print(f"ingest {form:8s} ({size:5d}/batch): {rows:7d} records in {seconds:6.2f} s = "
                  f"{rows / seconds:9.0f} records/s, {rows * 51 / seconds:11.0f} values/s; "
                  f"CPU per batch: daemon {daemon_cpu / len(bodies) * 1000:5.1f} ms "
                  f"(its main process {main_cpu / len(bodies) * 1000:5.1f}), "
                  f"client {client_cpu / len(bodies) * 1000:5.1f} ms",
                  flush=True)  # fmt: skip
        if workers:
            print(f"  RSS: daemon {daemon.rss_mb():.0f} MB, "
                  f"{len(daemon.children())} workers {daemon.children_rss_mb():.0f} MB",
                  flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument(
        "--only",
        choices=("ingest", "client", "window", "memory"),
        action="append",
        help="parts to run",
    )
    parser.add_argument(
        "--ingest-workers", default="0,2", help="monitoring.ingest_workers values to run (0,2)"
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="mlwarden-bench-") as tmp:
        root = Path(tmp)
        parts = args.only or ["ingest", "client", "window", "memory"]
        if "ingest" in parts:
            (root / "ingest").mkdir()
            for workers in map(int, args.ingest_workers.split(",")):
                bench_ingest(root / "ingest", args.quick, workers)
        if "client" in parts:
            from client_cost import bench_client

            bench_client()
        if "window" in parts:
            from ingest_window import run

            (root / "window").mkdir()
            run(root / "window")
        if "memory" in parts:
            from ingest_memory import bench_memory

            (root / "memory").mkdir()
            bench_memory(root / "memory", args.quick)


if __name__ == "__main__":
    main()
