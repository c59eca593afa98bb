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
2. Drift-check latency on windows of 1M and 10M rows built from bucket profiles (the
   rows themselves are never stored: a window is the sum of its buckets), through
   ``MonitorService.check`` in-process, with the daemon's clock moved by hand: the
   first check (methods fitted, every bucket read), the window read again from the
   store (as after a restart), the check right after a bucket closes (the clock moves
   one bucket: the closed bucket is flushed and the oldest one expires, as a daemon
   sees every ``bucket_seconds``; median of 5), the steady state between bucket
   closes (median of 10), and the same with an open bucket of one bucket's rows merged
   in (as with traffic). After each flush the script runs what the ingest housekeeping
   runs after its flush (``Ledger.move_windows``: the closed bucket counted in, the
   expired one evicted) and prints its time apart: that work is off the check. The
   buckets cycle through 8 profiles of different data, each with its own sample keys.
   Methods: KS + PSI per numeric feature, chi-square per categorical (50 + 5
   features).
3. RSS of a daemon with no model (the baseline: what MLflow, pandas, scipy, aiohttp and
   SQLAlchemy cost), then of a daemon watching 20 models of 50 features, each with a
   50k-row Parquet reference (KS + PSI), after the references are loaded, after 20k rows
   ingested per model and after one drift check of every model; the per-model cost is
   (final RSS - baseline) / 20. Peak RSS (VmHWM) too.

Goals (issue 3): >= 20,000 records/s (record JSON), >= 200,000 records/s (columnar),
< 50 ms per drift check on a 10M-row window, < 500 MB RSS for 20 x 50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = [f"f{i}" for i in range(50)]
SENDERS = int(os.environ.get("BENCH_SENDERS", "4"))
CATEGORICAL = [f"c{i}" for i in range(5)]


def reference_frame(n: int, seed: int, categorical: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(size=n) for name in FEATURES}
    if categorical:
        for name in CATEGORICAL:
            data[name] = rng.choice(list("abcdefgh"), n)
    data["prediction"] = rng.normal(size=n)
    return pd.DataFrame(data)


# -- 1 and 3: a real daemon ----------------------------------------------------------------


class Daemon:
    def __init__(self, root: Path, config: str) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "mlwarden.toml"
        self.config.write_text(f'[daemon]\nbase_path = "{root / "state"}"\n' + config)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        log = open(self.root / "daemon.log", "ab")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlwarden", "run", "--config", str(self.config),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("daemon did not start; see " + str(self.root / "daemon.log"))

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(60)

    def cpu_seconds(self, *, workers: bool = True) -> float:
        """User + system CPU time of the daemon (and of its worker processes) so far."""
        assert self.proc is not None
        total = 0
        for pid in [self.proc.pid, *(self.children() if workers else ())]:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def children(self) -> list[int]:
        """The daemon's child processes (ingest workers, when configured)."""
        assert self.proc is not None
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(stat.parent.name))
        return out

    def children_rss_mb(self) -> float:
        return sum(self._status_mb("VmRSS:", pid) for pid in self.children())

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM:")

    def _status_mb(self, key: str, pid: int | None = None) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{pid or self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record_bodies(batches: int, size: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    bodies = []
    for b in range(batches):
        values = rng.normal(size=(size, len(FEATURES))).round(6).tolist()
        records = [
            {"id": f"r{seed}-{b}-{i}", "features": dict(zip(FEATURES, row, strict=True)),
             "prediction": row[0]}
            for i, row in enumerate(values)
        ]  # fmt: skip
        bodies.append(json.dumps({"records": records}).encode())
    return bodies


def column_bodies(batches: int, size: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    bodies = []
    for b in range(batches):
        values = rng.normal(size=(len(FEATURES), size)).round(6)
        columns = {
            "id": [f"c{seed}-{b}-{i}" for i in range(size)],
            "features": {name: values[j].tolist() for j, name in enumerate(FEATURES)},
            "prediction": values[0].tolist(),
        }
        bodies.append(json.dumps({"columns": columns}).encode())
    return bodies


def arrow_bodies(batches: int, size: int, seed: int) -> list[bytes]:
    """Arrow IPC streams: one column per field and feature (what mlwarden.client sends)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    bodies = []
    for b in range(batches):
        values = rng.normal(size=(len(FEATURES), size)).round(6)
        columns = {"id": pa.array([f"a{seed}-{b}-{i}" for i in range(size)])}
        columns.update({name: pa.array(values[j]) for j, name in enumerate(FEATURES)})
        columns["prediction"] = pa.array(values[0])
        table = pa.table(columns)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        bodies.append(sink.getvalue().to_pybytes())
    return bodies


ARROW = "application/vnd.apache.arrow.stream"


async def send_all(
    url: str, bodies: list[bytes], senders: int, content_type: str = "application/json"
) -> tuple[float, float]:
    """Post every body with ``senders`` concurrent clients; (wall seconds, client CPU s)."""
    import aiohttp

    queue = list(reversed(bodies))

    async def sender(session: aiohttp.ClientSession) -> None:
        while queue:
            body = queue.pop()
            async with session.post(url, data=body, headers={"Content-Type": content_type}) as r:
                if r.status != 201:
                    raise RuntimeError(f"{r.status}: {await r.text()}")

    async with aiohttp.ClientSession() as session:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
        return time.perf_counter() - start, time.process_time() - cpu


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


def bench_memory(root: Path, quick: bool) -> dict[str, float]:
    """RSS of a daemon with no model, then of one watching 20 models, step by step."""
    models = 4 if quick else 20
    config = "[monitoring]\ninterval_seconds = 3600\n"
    (root / "empty").mkdir()
    with Daemon(root / "empty", config) as daemon:
        time.sleep(1)
        baseline = daemon.rss_mb()
    print(f"RSS of a daemon with no model: {baseline:.0f} MB", flush=True)
    for m in range(models):
        path = root / f"reference-{m}.parquet"
        reference_frame(50_000, seed=100 + m).to_parquet(path)
        config += (
            f'[[models]]\nname = "m{m}"\nreference = "{path}"\ndrift_methods = ["ks", "psi"]\n'
        )
    (root / "models").mkdir()
    with Daemon(root / "models", config) as daemon:
        for m in range(models):  # /readyz answers before every reference is loaded
            _wait_ready(daemon.url, f"m{m}")
        loaded, loaded_peak = daemon.rss_mb(), daemon.peak_rss_mb()
        for m in range(models):
            url = f"{daemon.url}/api/models/m{m}/predictions"
            asyncio.run(send_all(url, column_bodies(20, 1000, seed=1000 + m), senders=2))
        ingested, ingested_peak = daemon.rss_mb(), daemon.peak_rss_mb()
        for m in range(models):
            req = urllib.request.Request(f"{daemon.url}/api/models/m{m}/drift-check", method="POST")
            with urllib.request.urlopen(req, timeout=120) as r:
                assert r.status == 200
        rss = daemon.rss_mb()
        peak = daemon.peak_rss_mb()
    per_model = (rss - baseline) / models
    print(f"RSS with {models} models x 50 features: references loaded {loaded:.0f} MB "
          f"(peak so far {loaded_peak:.0f}), 20k rows ingested each {ingested:.0f} MB "
          f"(peak so far {ingested_peak:.0f}), one check each {rss:.0f} MB "
          f"(peak {peak:.0f} MB); {per_model:.1f} MB per model over the baseline",
          flush=True)  # fmt: skip
    return {"baseline": baseline, "loaded": loaded, "loaded_peak": loaded_peak,
            "ingested": ingested, "ingested_peak": ingested_peak, "rss": rss, "peak": peak,
            "per_model": per_model}  # fmt: skip


def _wait_ready(url: str, model: str) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/api/system/health", timeout=30) as r:
            health = json.loads(r.read())
        status = health["components"]["ingest"]["models"][model]["reference"]
        if status.startswith("ready"):
            return
        if status.startswith("error"):
            raise RuntimeError(f"model {model}: {status}")
        time.sleep(0.5)
    raise RuntimeError(f"model {model}: reference not loaded in time")


# -- 2: drift-check latency on big windows -------------------------------------------------


async def bench_window(root: Path, rows: int, buckets: int) -> dict[str, float]:
    """Drift-check latency on a window of ``rows`` rows in ``buckets`` stored buckets."""
    from mlwarden.daemon.core.config_loader import load_config
    from mlwarden.daemon.ingest.tables import profile_table
    from mlwarden.daemon.profiles.profile import Profile
    from mlwarden.daemon.profiles.reference import frame_columns
    from mlwarden.daemon.warden import Warden

    reference = root / "reference.parquet"
    if not reference.exists():
        reference_frame(200_000, seed=1, categorical=True).to_parquet(reference)
    state_dir = root / f"window-{rows}"
    config = root / f"window-{rows}.toml"
    bucket_seconds = 300
    # The window holds exactly ``buckets`` buckets, so every closed bucket expires one.
    config.write_text(
        f"[monitoring]\ninterval_seconds = 3600\nbucket_seconds = {bucket_seconds}\n"
        f"window_hours = {buckets * bucket_seconds / 3600}\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
    )
    cfg = load_config(config, env={}, overrides={"daemon.base_path": str(state_dir)})
    now = [time.time()]
    async with Warden(cfg, clock=lambda: now[0]) as warden:
        ingest, monitor = warden.ingest, warden.monitor
        state = ingest.model_state("m")
        await state.ready.wait()
        per_bucket = rows // buckets
        rng = np.random.default_rng(0)
        shapes = []  # a few different buckets, cycled (one bucket copied is too regular)
        for seed in range(8):
            batch = reference_frame(per_bucket, seed=7 + seed, categorical=True)
            batch["f3"] = batch["f3"] + 0.5  # one drifted feature
            shapes.append(
                Profile.from_columns(state.layout, frame_columns(batch, state.layout), 5000, rng)
            )

        def bucket(i: int) -> Profile:
            profile = shapes[i % len(shapes)].copy()
            profile.keys = rng.random(len(profile.keys))  # every bucket its own sample keys
            return profile

        start = (now[0] // bucket_seconds) * bucket_seconds - buckets * bucket_seconds
        async with warden.store.begin() as conn:
            for i in range(buckets):
                await conn.execute(
                    profile_table.insert(),
                    {
                        "model": "m",
                        "version": "1.0.0",
                        "bucket_start": start + i * bucket_seconds,
                        "layout": state.layout.fingerprint,
                        "rows": per_bucket,
                        "has_sample": True,
                        "profile": bucket(i).to_bytes(),
                        "created_at": now[0],
                    },
                )
        t = time.perf_counter()
        report = await monitor.check("m")  # methods fitted, every bucket read
        first = time.perf_counter() - t
        # As after a restart with the methods fitted: the window is read from the store.
        # (``cache`` is where the code before the in-memory window kept it: for A/B runs.)
        if hasattr(state, "windows"):
            state.windows.clear()
        else:
            state.cache = None
        t = time.perf_counter()
        await monitor.check("m")
        rebuild = time.perf_counter() - t
        closed, moved = [], []
        for i in range(5):  # a bucket closes and the oldest one expires, as every 5 minutes
            now[0] += bucket_seconds
            key = ("1.0.0", start + (buckets + i) * bucket_seconds)
            state.open[key] = bucket(buckets + i)
            await ingest.ledger.flush()
            # What the ingest housekeeping does after its flush (base: no such step, the
            # check moves the window): work moved off the check, timed on its own.
            if hasattr(ingest.ledger, "move_windows"):
                t = time.perf_counter()
                await ingest.ledger.move_windows()
                moved.append(time.perf_counter() - t)
            t = time.perf_counter()
            report = await monitor.check("m")
            closed.append(time.perf_counter() - t)
            assert report["rows"]["current"] == per_bucket * buckets, report["rows"]
        warm = []
        for _ in range(10):
            t = time.perf_counter()
            report = await monitor.check("m")
            warm.append(time.perf_counter() - t)
        # With traffic, the open bucket is merged on top of the window at every check:
        # here one bucket's worth of rows (and a full sample) in the current bucket.
        current = ("1.0.0", (now[0] // bucket_seconds) * bucket_seconds)
        state.open[current] = bucket(buckets + 5)
        live = []
        for _ in range(10):
            t = time.perf_counter()
            report = await monitor.check("m")
            live.append(time.perf_counter() - t)
        assert report["rows"]["current"] == per_bucket * (buckets + 1), report["rows"]
        # Before and after in the same run: the same checks (open bucket merged in) with
        # the methods one feature at a time (no batch scorers, no remembered p-values).
        one_by_one = await _one_by_one(monitor, "m")
    numeric_drifted = [f for f in report["drifted_features"] if f.startswith("f")]
    assert numeric_drifted == ["f3"], report["drifted_features"]
    result = {
        "rows": per_bucket * buckets,
        "buckets": buckets,
        "first_check_s": first,
        "rebuild_s": rebuild,
        "closed_median_s": statistics.median(closed),
        "closed_max_s": max(closed),
        "warm_median_s": statistics.median(warm),
        "moved_median_s": statistics.median(moved) if moved else 0.0,
        "open_median_s": statistics.median(live),
        **one_by_one,
    }
    print(f"drift check, window of {result['rows']:>9,d} rows in {buckets} buckets: "
          f"first (fit) {first * 1000:7.1f} ms, window re-read {rebuild * 1000:7.1f} ms, "
          f"after a bucket closes median {result['closed_median_s'] * 1000:6.1f} ms "
          f"(max {result['closed_max_s'] * 1000:6.1f}), "
          f"steady state median {result['warm_median_s'] * 1000:6.1f} ms; "
          f"drifted: {', '.join(report['drifted_features'])}",
          flush=True)  # fmt: skip
    print(f"  steady state with an open bucket of {per_bucket:,d} rows merged in: median "
          f"{result['open_median_s'] * 1000:6.1f} ms", flush=True)  # fmt: skip
    print(f"  same run, interleaved, open bucket merged in: methods feature by feature "
          f"median {one_by_one['serial_median_s'] * 1000:6.1f} ms (CPU "
          f"{one_by_one['serial_cpu_s'] * 1000:.1f}), batched median "
          f"{one_by_one['batched_median_s'] * 1000:6.1f} ms (CPU "
          f"{one_by_one['batched_cpu_s'] * 1000:.1f}); reports equal: "
          f"{one_by_one['equal']}", flush=True)  # fmt: skip
    if moved:
        print(f"  window moved after the flush (ingest housekeeping task, off the check): "
              f"median {result['moved_median_s'] * 1000:6.1f} ms (max {max(moved) * 1000:6.1f})",
              flush=True)  # fmt: skip
    return result


async def _one_by_one(monitor: Any, model: str) -> dict[str, Any]:
    """Checks alternately without and with the batch scorers (``DriftMethod.batch``).

    Without: ``Detectors.batches`` emptied and the remembered KS p-values dropped before
    each check, so every method scores one feature at a time as before issue 19. Wall
    and CPU medians of 10 each; whether both gave the same verdicts and p-values.
    """
    from mlwarden.stats.kolmogorov import kolmogorov_sf

    detectors = monitor._detectors[model][1]
    batches = dict(detectors.batches)
    times: dict[str, tuple[list[float], list[float]]] = {"serial": ([], []), "batched": ([], [])}
    reports: dict[str, Any] = {}
    for _ in range(10):
        for mode, (wall, cpu) in times.items():
            detectors.batches.clear()
            if mode == "serial":
                kolmogorov_sf.cache_clear()
            else:
                detectors.batches.update(batches)
            t, c = time.perf_counter(), time.process_time()
            report = await monitor.check(model)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            reports[mode] = {
                (f, m): (score["statistic"], score["p_value"], score["drifted"])
                for f, d in report["feature_drifts"].items()
                for m, score in d["methods"].items()
            }
    detectors.batches.update(batches)
    out: dict[str, Any] = {"equal": reports["serial"] == reports["batched"]}
    for mode, (wall, cpu) in times.items():
        out[f"{mode}_median_s"] = statistics.median(wall)
        out[f"{mode}_cpu_s"] = statistics.median(cpu)
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
            (root / "window").mkdir()
            asyncio.run(bench_window(root / "window", 1_000_000, 100))
            asyncio.run(bench_window(root / "window", 10_000_000, 288))
        if "memory" in parts:
            (root / "memory").mkdir()
            bench_memory(root / "memory", args.quick)


if __name__ == "__main__":
    main()
