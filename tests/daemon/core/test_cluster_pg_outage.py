"""PostgreSQL stopped for 30 s under load, two real ``mlwarden run`` daemons on it.

The server is this test's own throwaway cluster (``.ci/postgres start``), never the
shared one. While it is down both daemons stay up and alive, ``/readyz`` says 503,
ingest says 503 with ``Retry-After`` (never a 2xx for a batch it did not commit, never
a 500), and neither daemon keeps leased work past its lease. When the server is back
everything resumes within seconds and every acknowledged batch and label is stored
exactly once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlwarden.daemon.core.store import Store
from mlwarden.daemon.ingest.tables import (
    batch_ids_table,
    outcomes_table,
    prediction_batches_table,
    prediction_ids_table,
)
from tests.daemon.core.test_cluster_failover import reports
from tests.helpers import postgres_server_url, wait_until

ROOT = Path(__file__).resolve().parents[3]
TTL = 4.0
HEARTBEAT = 0.5
INTERVAL = 1.0
OUTAGE = 30.0
MODELS = ("m1", "m2")
ROWS = 20  # predictions per batch


def _postgres(command: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(ROOT / ".ci" / "postgres"), command],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def own_postgres():
    """A throwaway PostgreSQL cluster of this test alone: it may be stopped and started."""
    postgres_server_url()  # skip (or fail under CI) like every PostgreSQL test
    exports = dict(re.findall(r"export (\w+)=(\S+)", _postgres("start", {})))
    try:
        yield exports
    finally:
        _postgres("stop", exports)


async def _database(server: str) -> str:
    admin = server.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute('CREATE DATABASE "outage"')
    finally:
        await conn.close()
    return server.rsplit("/", 1)[0] + "/outage"


def _config(url: str, reference: Path) -> str:
    models = "".join(
        f'[[models]]\nname = "{name}"\nreference = "{reference}"\nfeatures = ["x1"]\n'
        for name in MODELS
    )
    return (
        f'[daemon]\ndatabase_url = "{url}"\n'
        f"[cluster]\nlease_ttl_seconds = {TTL}\nheartbeat_seconds = {HEARTBEAT}\n"
        f"[monitoring]\ninterval_seconds = {INTERVAL}\nmin_window_rows = 10\n"
        "bucket_seconds = 5\n"
        # The singletons' loops tick every second too (their leases are taken again at
        # the next tick after the outage).
        "[training]\nscheduler_interval_seconds = 1\n[deployment]\ntick_seconds = 1\n" + models
    )


def _call(
    url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], object]:
    """GET ``url``, or POST ``body`` as JSON: (status, headers, parsed JSON or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, answer, payload = exc.code, dict(exc.headers), exc.read()
    try:
        return status, answer, json.loads(payload)
    except ValueError:
        return status, answer, payload.decode(errors="replace")


def _get(url: str) -> tuple[int, dict[str, str], object]:
    return _call(url)


@dataclass
class Sender:
    """A steady stream of prediction batches (each with a batch id) round-robin to the
    daemons, and the labels of each acknowledged batch through the other daemon."""

    daemons: list
    #: batch id -> (model, prediction ids), for every batch answered 2xx
    acked: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    #: batch id -> (model, ids, body), for every batch answered 503 (to send again)
    pending: dict[str, tuple[str, list[str], dict]] = field(default_factory=dict)
    labelled: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    pending_labels: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    #: (monotonic time, daemon index, route, status) of every answer
    answers: list[tuple[float, int, str, int]] = field(default_factory=list)
    #: answers neither 2xx nor 503 with a Retry-After header
    bad: list[tuple[str, int, dict, object]] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def run(self) -> None:
        rng = np.random.default_rng(7)
        while not self.stop.is_set():
            k = self.sent
            self.sent += 1
            model, batch_id = MODELS[k % len(MODELS)], f"batch-{k}"
            ids = [f"{batch_id}-{j}" for j in range(ROWS)]
            body = {
                "columns": {
                    "id": ids,
                    "features": {"x1": rng.normal(size=ROWS).round(6).tolist()},
                    "prediction": rng.normal(size=ROWS).round(6).tolist(),
                }
            }
            self.predictions(k % 2, model, batch_id, ids, body)
            if batch_id in self.acked:
                self.labels((k + 1) % 2, model, batch_id, ids)
            # Refused: wait a little before the next batch (Retry-After is for this one;
            # it is sent again after the outage).
            time.sleep(0.05 if batch_id in self.acked else 0.5)

    def _send(self, index: int, route: str, body: object, headers: dict[str, str]) -> int:
        daemon = self.daemons[index]
        status, answer, payload = _call(daemon.url + route, body, headers)
        self.answers.append((time.monotonic(), index, route.rsplit("/", 1)[1], status))
        if status == 503 and answer.get("Retry-After", "").isdigit():
            self.retry_after.add(answer["Retry-After"])
        elif not 200 <= status < 300:
            self.bad.append((route, status, answer, payload))
        return status

    def predictions(self, index: int, model: str, batch_id: str, ids: list[str], body) -> None:
        headers = {"Mlwarden-Batch-Id": batch_id}
        status = self._send(index, f"/api/models/{model}/predictions", body, headers)
        if 200 <= status < 300:
            self.acked[batch_id] = (model, ids)
            self.pending.pop(batch_id, None)
        else:
            self.pending[batch_id] = (model, ids, body)

    def labels(self, index: int, model: str, batch_id: str, ids: list[str]) -> None:
        body = {"labels": [{"id": i, "label": 1.0} for i in ids]}
        status = self._send(index, f"/api/models/{model}/labels", body, {})
        if 200 <= status < 300:
            self.labelled[batch_id] = (model, ids)
            self.pending_labels.pop(batch_id, None)
        else:
            self.pending_labels[batch_id] = (model, ids)

    def send_pending(self) -> None:
        """What was refused during the outage, sent again (a client honouring Retry-After)."""
        for n, (batch_id, (model, ids, body)) in enumerate(list(self.pending.items())):
            self.predictions(n % 2, model, batch_id, ids, body)
        for n, (batch_id, (model, ids)) in enumerate(list(self.pending_labels.items())):
            if batch_id in self.acked:
                self.labels(n % 2, model, batch_id, ids)

    def first_success(self, index: int, route: str, after: float) -> float | None:
        times = [t for t, i, r, s in list(self.answers) if i == index and r == route and s < 300]
        later = [t for t in times if t > after]
        return min(later) if later else None


async def _stored(url: str) -> dict[str, object]:
    store = Store(url)
    await store.open()
    try:
        async with store.connect() as conn:
            b, p, i, o = (
                batch_ids_table,
                prediction_batches_table,
                prediction_ids_table,
                outcomes_table,
            )
            batches = (await conn.execute(sa.select(b.c.model, b.c.batch_id, b.c.rows))).all()
            rows = (await conn.execute(sa.select(sa.func.sum(p.c.rows)))).scalar() or 0
            ids = (await conn.execute(sa.select(i.c.model, i.c.id))).all()
            outcomes = (await conn.execute(sa.select(o.c.model, o.c.id))).all()
    finally:
        await store.close()
    return {
        "batches": batches,
        "rows": int(rows),
        "ids": ids,
        "outcomes": outcomes,
        "reports": await reports(url),  # model -> check times, oldest first
    }


def _leases(daemon) -> tuple[int, dict[str, tuple[str, int]]]:
    status, _, view = _get(daemon.url + "/api/system/cluster")
    if status != 200:
        return status, {}
    return status, {
        f"{x['kind']}/{x['key']}": (x["owner"], x["token"])
        for x in view["leases"]
        if not x["expired"]
    }


def _held(daemon) -> float:
    """The leases this daemon holds now, by its own /metrics."""
    status, _, text = _get(daemon.url + "/metrics")
    assert status == 200, text
    return sum(float(v) for v in re.findall(r"^mlwarden_leases_held\{[^}]*\} (\S+)", text, re.M))


async def test_postgresql_stopped_for_30_s_under_load(daemon_factory, own_postgres, tmp_path):
    url = await _database(own_postgres["MLWARDEN_TEST_POSTGRES_URL"])
    reference = tmp_path / "reference.csv"
    pd.DataFrame({"x1": np.random.default_rng(1).normal(size=2000)}).to_csv(reference, index=False)
    text = _config(url, reference)
    daemons = [
        daemon_factory(text, name=name, env={"MLWARDEN_INSTANCE": name}).start(wait=False)
        for name in ("a", "b")
    ]
    for daemon in daemons:
        daemon.wait_healthy()
    wait_until(
        lambda: (
            {k for k, (o, _) in _leases(daemons[0])[1].items() if k.startswith("model/")}
            == {"model/m1", "model/m2"}
            and len({o for k, (o, _) in _leases(daemons[0])[1].items() if k.startswith("model/")})
            == 2
        ),
        30,
        "the two models spread over the two daemons",
    )
    _, before = _leases(daemons[0])

    sender = Sender(daemons)
    thread = threading.Thread(target=sender.run, name="sender", daemon=True)
    thread.start()
    try:
        time.sleep(4)
        assert sender.acked and not sender.bad, sender.bad

        # -- the outage ------------------------------------------------------------------
        _postgres("pause", own_postgres)
        stopped = time.monotonic()
        readiness: list[tuple[float, int, int]] = []
        held: list[tuple[float, int, float]] = []
        api: list[tuple[int, dict, object]] = []
        while time.monotonic() - stopped < OUTAGE:
            for n, daemon in enumerate(daemons):
                assert daemon.proc.poll() is None, daemon.log()[-5000:]
                assert _get(daemon.url + "/healthz")[0] == 200
                readiness.append((time.monotonic() - stopped, n, _get(daemon.url + "/readyz")[0]))
                held.append((time.monotonic() - stopped, n, _held(daemon)))
            if len(api) < 2:
                api.append(_get(daemons[len(api)].url + "/api/system/cluster"))
            time.sleep(0.5)
        _postgres("resume", own_postgres)
        resumed, resumed_at = time.monotonic(), time.time()

        # -- recovery --------------------------------------------------------------------
        ready_after = []
        for daemon in daemons:
            wait_until(lambda d=daemon: _get(d.url + "/readyz")[0] == 200, 30, "ready again")
            ready_after.append(time.monotonic() - resumed)
        wait_until(
            lambda: all(sender.first_success(n, "predictions", resumed) for n in (0, 1)),
            30,
            "ingest answered 2xx again by both daemons",
        )
        ingest_after = [sender.first_success(n, "predictions", resumed) - resumed for n in (0, 1)]
        retaken: dict[str, tuple[float, str, int]] = {}  # lease -> (after, owner, token)

        def every_lease_taken() -> bool:
            for lease, (owner, token) in _leases(daemons[0])[1].items():
                retaken.setdefault(lease, (time.monotonic() - resumed, owner, token))
            return set(retaken) >= set(before)

        wait_until(every_lease_taken, 30, "every lease taken again")
        leases_after = max(after for after, _, _ in retaken.values())
        time.sleep(3)
    finally:
        sender.stop.set()
        thread.join(60)
    sender.send_pending()
    print(
        f"\noutage {OUTAGE:.0f}s: readyz 200 after {max(ready_after):.2f}s, ingest 2xx after "
        f"{max(ingest_after):.2f}s, every lease taken again after {leases_after:.2f}s "
        f"({', '.join(f'{k} {v[0]:.1f}s' for k, v in sorted(retaken.items()))}); "
        f"{len(sender.acked)} batches acknowledged of {sender.sent}"
    )

    # Up all along; /readyz 503 while the server was down (after the first beat noticed).
    statuses = {s for t, _, s in readiness if t > 1.0}
    assert statuses == {503}, readiness
    # The API said 503 with Retry-After too, never a 500.
    for status, headers, body in api:
        assert status == 503 and headers.get("Retry-After", "").isdigit(), (status, body)
        assert body["error"]["code"] == "store_unavailable", body
    # Ingest: 2xx or 503 + Retry-After, nothing else; and 503s there were.
    assert not sender.bad, sender.bad[:5]
    refused = [a for a in sender.answers if a[3] == 503]
    assert refused and sender.retry_after, "ingest was never refused during the outage"
    # Leased work stopped: within the TTL both daemons held no lease at all.
    late = [h for t, _, h in held if t > TTL + 1.0]
    assert late and all(h == 0 for h in late), held
    assert not sender.pending and not sender.pending_labels  # all taken after the outage
    # Every lease was taken again with a new token: a write begun under the old one is
    # refused (fencing), even by the daemon that held it before.
    for lease, (_owner, token) in before.items():
        assert retaken[lease][2] > token, (lease, before[lease], retaken[lease])

    # Every acknowledged batch stored exactly once, with each of its predictions and labels.
    stored = await _stored(url)
    batches = {(m, bid): rows for m, bid, rows in stored["batches"]}
    assert len(batches) == len(stored["batches"])
    for batch_id, (model, _ids) in sender.acked.items():
        assert batches.get((model, batch_id)) == ROWS, batch_id
    assert stored["rows"] == ROWS * len(batches), "a batch stored twice, or without its id"
    assert len(stored["ids"]) == len(set(stored["ids"])) == ROWS * len(batches)
    acked_ids = {(m, i) for m, ids in sender.acked.values() for i in ids}
    assert acked_ids <= set(stored["ids"])
    labelled_ids = {(m, i) for m, ids in sender.labelled.values() for i in ids}
    assert labelled_ids <= set(stored["outcomes"])
    assert len(stored["outcomes"]) == len(set(stored["outcomes"]))

    # No model was checked twice in one interval (two owners at once), before, during
    # or after the outage; and each was checked again after it.
    for model in MODELS:
        ts = stored["reports"][model]
        gaps = np.diff(ts)
        assert len(ts) >= 4 and gaps.min() > INTERVAL * 0.5, (model, gaps.min())
        assert ts[-1] > resumed_at, (model, "not checked since the outage")
    # Each daemon logged the outage in a few lines, not a traceback every tick.
    for daemon in daemons:
        log = daemon.log()
        assert "unhandled error" not in log, log[-5000:]
        assert log.count("Traceback") == 0, log[-5000:]
        assert daemon.stop() == 0
