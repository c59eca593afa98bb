"""Failover of a cluster: how long after a kill -9 another daemon holds the dead one's work.

    python benchmarks/cluster.py [--kills 10] [--ttl 2] [--heartbeat 0.5] [--interval 1]
        [--postgres postgresql+asyncpg://…/postgres]

Starts a throwaway PostgreSQL (``.ci/postgres start``; ``--postgres`` names a server to
use instead, the benchmark then creates and drops a database of its own on it) and
three real ``mlwarden run`` daemons on it, with three watched models, short leases
(``cluster.lease_ttl_seconds`` = ``--ttl``, ``cluster.heartbeat_seconds`` =
``--heartbeat``) and every loop ticking each ``--interval`` seconds. Then, ``--kills``
times: it kills (SIGKILL) the daemon that holds the ``rollouts`` lease, notes the
leases it held, waits until each has a new owner, and restarts the victim under the
same name (it rejoins, and the models spread again) before the next kill.

The takeover time of a lease is its new ``acquired_at`` (stamped on the database's
clock, on this same host) minus the wall time of the kill: no polling delay in it.
Printed per kill, then min / median / max over the kills for the ``rollouts`` lease
and for the last of the victim's leases to move (the other singletons it held and its
model), against the bound ``lease_ttl_seconds`` + one interval (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("m1", "m2", "m3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Daemon:
    """``mlwarden run`` under a fixed instance name, killed and started again."""

    def __init__(self, root: Path, name: str, config: str) -> None:
        self.name = name
        self.root = root / name
        self.root.mkdir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.root / "mlwarden.toml"
        header = f'[daemon]\nbase_path = "{self.root}"\n'
        self.config.write_text(config.replace("[daemon]\n", header, 1))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        log = open(self.root / "daemon.log", "ab")  # noqa: SIM115 - the child writes it
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLWARDEN_INSTANCE": self.name}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlwarden", "run", "--config", str(self.config),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"{self.name} exited"
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; see {self.root / 'daemon.log'}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def cluster(self) -> dict:
        return _get(self.url + "/api/system/cluster")


def config(url: str, reference: Path, args: argparse.Namespace) -> str:
    i = args.interval
    models = "".join(
        f'[[models]]\nname = "{m}"\nreference = "{reference}"\nfeatures = ["x1"]\n' for m in MODELS
    )
    return (
        f'[daemon]\ndatabase_url = "{url}"\n'
        f"[cluster]\nlease_ttl_seconds = {args.ttl}\nheartbeat_seconds = {args.heartbeat}\n"
        f"[monitoring]\ninterval_seconds = {i}\nmin_window_rows = 10\n"
        f"[training]\nscheduler_interval_seconds = {i}\n"
        f"[deployment]\ntick_seconds = {i}\n"
        f"[alerts]\ntick_seconds = {i}\n" + models
    )


def held_by(view: dict, owner: str) -> dict[tuple[str, str], dict]:
    return {
        (x["kind"], x["key"]): x for x in view["leases"] if x["owner"] == owner and not x["expired"]
    }


def spread(daemons: list[Daemon]) -> bool:
    """Every daemon alive and each holding one model."""
    view = daemons[0].cluster()
    alive = {m["instance"] for m in view["members"] if m["alive"]}
    owners = [x["owner"] for x in view["leases"] if x["kind"] == "model" and not x["expired"]]
    return alive >= {d.name for d in daemons} and sorted(owners) == sorted(d.name for d in daemons)


def one_kill(daemons: list[Daemon], timeout: float) -> tuple[str, float, float, int]:
    """Kill the rollouts holder; (victim, rollouts takeover s, last takeover s, leases)."""
    view = daemons[0].cluster()
    owner = next(x["owner"] for x in view["leases"] if x["kind"] == "rollouts")
    victim = next(d for d in daemons if d.name == owner)
    survivor = next(d for d in daemons if d is not victim)
    before = held_by(view, owner)
    killed_at = time.time()
    victim.kill()
    deadline = time.monotonic() + timeout
    while True:
        leases = {(x["kind"], x["key"]): x for x in survivor.cluster()["leases"]}
        moved = {k: leases[k] for k in before if k in leases and leases[k]["owner"] != owner}
        if len(moved) == len(before):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sorted(set(before) - set(moved))} not taken over in {timeout}s")
        time.sleep(0.05)
    times = {k: x["acquired_at"] - killed_at for k, x in moved.items()}
    victim.start().wait_ready()
    return owner, times[("rollouts", "")], max(times.values()), len(before)


def summary(label: str, values: list[float], bound: float) -> str:
    return (
        f"{label}: min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
        f"max {max(values):.2f} s over {len(values)} kills (bound {bound:.2f} s; "
        f"{sum(v <= bound for v in values)} of {len(values)} within it)"
    )


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def start_postgres() -> tuple[str, dict[str, str]]:
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "postgres"), "start"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    return env["MLWARDEN_TEST_POSTGRES_URL"], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttl", type=float, default=2.0, help="cluster.lease_ttl_seconds")
    parser.add_argument("--heartbeat", type=float, default=0.5, help="cluster.heartbeat_seconds")
    parser.add_argument("--interval", type=float, default=1.0, help="every loop's interval")
    parser.add_argument("--postgres", default="", help="a server URL (default: a throwaway one)")
    args = parser.parse_args()
    command = "python benchmarks/cluster.py " + shlex.join(sys.argv[1:])
    print(f"{command}\n{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    pg_env: dict[str, str] = {}
    server = args.postgres
    if not server:
        server, pg_env = start_postgres()
    database = f"mlwarden_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{database}"'))
    daemons: list[Daemon] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mlwarden-cluster-") as tmp:
            root = Path(tmp)
            reference = root / "reference.csv"
            rng = np.random.default_rng(1)
            pd.DataFrame({"x1": rng.normal(size=2000)}).to_csv(reference, index=False)
            text = config(server.rsplit("/", 1)[0] + "/" + database, reference, args)
            daemons = [Daemon(root, f"d{i}", text) for i in (1, 2, 3)]
            for daemon in daemons:
                daemon.start()
            for daemon in daemons:
                daemon.wait_ready()
            bound = args.ttl + args.interval
            first, last = [], []
            for n in range(args.kills):
                deadline = time.monotonic() + 120
                while not spread(daemons):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the models did not spread over the three daemons")
                    time.sleep(0.2)
                time.sleep(args.heartbeat * 2)  # a kill at any phase of the heartbeat
                victim, singleton, everything, leases = one_kill(daemons, 10 * bound + 30)
                first.append(singleton)
                last.append(everything)
                print(
                    f"kill {n + 1}: {victim} (held {leases} leases): rollouts taken over after "
                    f"{singleton:.2f} s, the last of its leases after {everything:.2f} s",
                    flush=True,
                )
            print(summary("the rollouts lease", first, bound))
            print(summary("every lease of the victim (singletons, its model)", last, bound))
            print(f"rerun: {command}")
    finally:
        for daemon in daemons:
            daemon.stop()
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        if pg_env:
            subprocess.run(
                ["bash", str(ROOT / ".ci" / "postgres"), "stop"],
                env={**os.environ, **pg_env}, check=False,
            )  # fmt: skip


if __name__ == "__main__":
    main()
