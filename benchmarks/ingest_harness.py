"""The harness of the HTTP benchmarks: a real ``mlwarden run`` and the bodies sent to it.

Used by benchmarks/ingest.py (ingest throughput, memory), ingest_floor.py and
ingest_profile.py, so that all of them send the same bodies the same way:

- ``Daemon``: an ``mlwarden run`` subprocess on loopback, started with a config and
  waited for (``/readyz``), with its CPU time (and its worker processes') and RSS read
  from ``/proc``;
- ``record_bodies``, ``column_bodies``, ``arrow_bodies``: batches of records with 50
  numeric features as record JSON, columnar JSON and Arrow IPC, encoded beforehand;
- ``send_all``: every body posted by concurrent clients (``SENDERS``, from
  ``BENCH_SENDERS``, default 4), each answer a 201;
- ``reference_frame``: a reference of those features (and 5 categorical ones).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
