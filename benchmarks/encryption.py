"""What encryption at rest costs: ingest throughput and model load time, on and off.

    python benchmarks/encryption.py [--batches 60] [--loads 8] [--ids sequential|uuid]
                                    [--ids-at-rest digest|clear]

Both sides run in this process against a started Warden on a fresh base path (SQLite,
MLflow SQLite), the same data, interleaved so machine noise hits both alike; each
figure is a median (ingest: of the rounds, alternating which side goes first).

1. Ingest: ``IngestService.record_predictions`` with columnar JSON bodies of 1,000
   records x 50 numeric features (encoded beforehand), 4 concurrent senders; each call
   commits the batch (sealed: prediction batch, journal rows; the ids digested)
   before it returns. Records/s. Then a label for every stored prediction (1,000 per
   call, 4 senders; with encryption on each call's outcomes are sealed together, one
   document under one data key, itself sealed), labels/s, and one read of all the
   outcomes back (what a performance check reads; each batch opened), seconds.
2. Model load, three ways, two daemons (off and on) started side by side and their
   loads interleaved (off, on, on, off, ...: ``--loads`` x ``--rounds`` of each), the
   median seconds per load:
   - like for like: ``mlflow.artifacts.download_artifacts`` of the version into a fresh
     directory, then ``pyfunc.load_model`` (off: the files are copied; on: decrypted);
   - the gateway's first load of a version (``Gateway._load_sync``): off, MLflow loads
     it in place from the artifact store; on, it is decrypted into the gateway's private
     copy (rollouts/decrypted.py, discarded before each such load) and loaded from it;
   - the gateway's load of that version again (after an eviction from memory, a
     rollout's preflight): on, from the decrypted copy, which is what serving pays.

Besides the side-by-side figures (noisy on a shared machine: each round starts two
fresh daemons), the script counts the time spent inside ``Sealer.seal``/``open``,
``RowCipher`` (set-up, ``seal``, ``open``) and the id digests during the encrypted
runs and prints it as a share of their wall time: the direct cost of the cryptography,
which machine noise does not move.

``--ids``: the records' ids, ``sequential`` (``b3-17``: short, and each batch's ids
land together in the id indexes with encryption off) or ``uuid`` (36 random characters,
as many senders use). With encryption on the store keys ids by a 22-character keyed
digest either way, so the choice moves the encryption-off side only.

``--ids-at-rest``: the encrypted side's ``[encryption] ids``: ``digest`` (the default)
or ``clear`` (ids kept as sent, everything stored with them sealed: docs/security.md).

Goal (issue 22): the encrypted path costs < 10% of each.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlwarden.daemon.core import encryption as _enc
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.keys import new_key, write_key_file
from mlwarden.daemon.ingest import ids as _ids
from mlwarden.daemon.warden import Warden

FEATURES = [f"f{i}" for i in range(50)]
SENDERS = 4

#: Seconds spent sealing and opening, by phase ("ingest", "load").
CRYPTO: dict[str, float] = {"ingest": 0.0, "labels": 0.0, "read": 0.0, "load": 0.0}
_phase = ["ingest"]


def _timing(call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, its wall time added to the phase's CRYPTO."""

    @functools.wraps(call)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            CRYPTO[_phase[0]] += time.perf_counter() - start

    return timed


# Envelopes (Sealer), and what a label batch seals under one data key (RowCipher:
# the key's set-up, the batch's seal and open; rows of older stores one each).
for _cls, _names in (
    (_enc.Sealer, ("seal", "open")),
    (_enc.RowCipher, ("__init__", "seal", "open")),
):
    for _name in _names:
        setattr(_cls, _name, _timing(getattr(_cls, _name)))

#: Seconds spent digesting prediction ids (daemon/ingest/ids.py; the identity when off).
DIGESTS: dict[str, float] = {"ingest": 0.0}
_of = _ids.IdDigests.of


def _timed_of(self: _ids.IdDigests, model: str, ids: list[str]) -> list[str]:
    # CPU time of the calling thread: a big batch is digested in a thread, whose wall
    # time would count its waits for the GIL too.
    start = time.thread_time()
    try:
        return _of(self, model, ids)
    finally:
        if self.enabled:
            DIGESTS[_phase[0]] = DIGESTS.get(_phase[0], 0.0) + time.thread_time() - start


_ids.IdDigests.of = _timed_of  # type: ignore[method-assign]


def _bodies(batches: int, ids: str = "sequential", rows: int = 1000) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for b in range(batches):
        x = rng.normal(size=(rows, len(FEATURES)))
        if ids == "uuid":
            names = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(rows)]
        else:
            names = [f"b{b}-{i}" for i in range(rows)]
        out.append(
            json.dumps(
                {
                    "columns": {
                        "id": names,
                        "features": {f: x[:, n].tolist() for n, f in enumerate(FEATURES)},
                        "prediction": x[:, 0].tolist(),
                    }
                }
            ).encode()
        )
    return out


#: The encrypted side's ``[encryption] ids`` (--ids-at-rest).
IDS_AT_REST = ["digest"]


def _config(base: Path, encrypted: bool) -> str:
    key_file = base / "keys"
    write_key_file(key_file, {"k1": new_key()})
    return f"""
[daemon]
base_path = "{base}"
[encryption]
enabled = {"true" if encrypted else "false"}
key_file = "{key_file}"
ids = "{IDS_AT_REST[0]}"
[[models]]
name = "bench"
features = {json.dumps(FEATURES)}
"""


async def _warden(encrypted: bool) -> tuple[Warden, Path]:
    base = Path(tempfile.mkdtemp(prefix="mlwarden-bench-enc-"))
    path = base / "mlwarden.toml"
    path.write_text(_config(base, encrypted))
    warden = Warden(load_config(path, env={}))
    await warden.start()
    return warden, base


WALL: dict[str, float] = {"ingest": 0.0, "labels": 0.0, "read": 0.0, "load": 0.0}


async def ingest_rate(encrypted: bool, bodies: list[bytes]) -> float:
    _phase[0] = "ingest" if encrypted else "ignored"
    CRYPTO.setdefault("ignored", 0.0)
    warden, _ = await _warden(encrypted)
    try:
        await warden.ingest.record_predictions("bench", bodies[0])  # warm-up
        queue = list(bodies[1:])

        async def sender() -> int:
            n = 0
            while queue:
                body = queue.pop()
                await warden.ingest.record_predictions("bench", body)
                n += 1000
            return n

        start = time.perf_counter()
        before = CRYPTO["ingest"]
        sent = sum(await asyncio.gather(*(sender() for _ in range(SENDERS))))
        wall = time.perf_counter() - start
        if encrypted:
            WALL["ingest"] += wall
        else:
            CRYPTO["ingest"] = before
        LABELS[encrypted].append(await _label_rate(warden, encrypted, bodies))
        return sent / wall
    finally:
        await warden.stop()


#: Per side: (labels/s, seconds to read every outcome back) of each round.
LABELS: dict[bool, list[tuple[float, float]]] = {False: [], True: []}


async def _label_rate(warden: Warden, encrypted: bool, bodies: list[bytes]) -> tuple[float, float]:
    """Labels for every stored prediction (1,000 per call, 4 senders), then one read of
    all the outcomes (what a performance check reads): labels/s and the read's seconds."""
    _phase[0] = "labels" if encrypted else "ignored"
    queue = [
        {
            "labels": [
                {"id": i, "label": float(n)} for n, i in enumerate(json.loads(b)["columns"]["id"])
            ]
        }
        for b in bodies
    ]

    async def sender() -> int:
        n = 0
        while queue:
            n += (await warden.ingest.record_labels("bench", queue.pop()))["matched"]
        return n

    start = time.perf_counter()
    matched = sum(await asyncio.gather(*(sender() for _ in range(SENDERS))))
    wall = time.perf_counter() - start
    if encrypted:
        WALL["labels"] += wall
    _phase[0] = "read" if encrypted else "ignored"  # the read's decryptions: their own
    start = time.perf_counter()
    outcomes = await warden.ingest.outcomes("bench")
    read = time.perf_counter() - start
    if encrypted:
        WALL["read"] += read
    assert len(outcomes) == matched == 1000 * len(bodies), (len(outcomes), matched)
    return matched / wall, read


def _log_model(warden: Warden) -> str:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(20000, 10)), columns=[f"x{i}" for i in range(10)])
    model = KNeighborsRegressor().fit(frame, frame["x0"])
    local = Path(tempfile.mkdtemp(prefix="mlwarden-bench-model-")) / "model"
    mlflow.sklearn.save_model(model, str(local), serialization_format="cloudpickle")
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


def _fresh_load(warden: Warden, record: dict) -> None:
    import mlflow.artifacts
    import mlflow.pyfunc

    uri = record["artifact_uri"] or record["source"]
    tracking = warden.tracking.uri
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, tracking_uri=tracking, registry_uri=tracking, dst_path=tmp
        )
        mlflow.pyfunc.load_model(local)


async def _timed(encrypted: bool, call, *args) -> float:
    _phase[0] = "load" if encrypted else "ignored"
    start = time.perf_counter()
    await asyncio.to_thread(call, *args)
    seconds = time.perf_counter() - start
    if encrypted:
        WALL["load"] += seconds
    return seconds


def _first_load(warden: Warden, record: dict) -> None:
    """The gateway's load of a version it has no decrypted copy of (on: decrypt + load)."""
    gateway = warden.rollouts.gateway
    gateway.decrypted.discard("bench", record["version"])
    gateway._load_sync("bench", record)


def _again(warden: Warden, record: dict) -> None:
    """The gateway's load of a version again (after an eviction, a restart of serving)."""
    warden.rollouts.gateway._load_sync("bench", record)


LOADS = {"fresh": _fresh_load, "first": _first_load, "again": _again}


async def load_times(loads: int) -> tuple[dict[str, dict[bool, list[float]]], int]:
    """Both daemons started side by side, their loads interleaved (off, on, on, off...)."""
    sides: dict[bool, tuple[Warden, dict]] = {}
    size = 0
    try:
        for encrypted in (False, True):
            warden, base = await _warden(encrypted)
            sides[encrypted] = (warden, {})
            uri = await asyncio.to_thread(_log_model, warden)
            record = await warden.registry.register("bench", model_uri=uri)
            sides[encrypted] = (warden, dict(record))
            if not encrypted:
                size = sum(
                    p.stat().st_size for p in (base / "mlartifacts").rglob("*") if p.is_file()
                )
        for encrypted, (warden, record) in sides.items():  # warm-up: imports, first copy
            await _timed(encrypted, _again, warden, record)
        out: dict[str, dict[bool, list[float]]] = {k: {False: [], True: []} for k in LOADS}
        for i in range(loads):
            order = (False, True) if i % 2 == 0 else (True, False)
            for kind, call in LOADS.items():
                for encrypted in order:
                    warden, record = sides[encrypted]
                    out[kind][encrypted].append(await _timed(encrypted, call, warden, record))
        return out, size
    finally:
        for warden, _ in sides.values():
            await warden.stop()


async def main(batches: int, loads: int, rounds: int, ids: str) -> None:
    bodies = _bodies(batches, ids)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for n in range(rounds):
        for encrypted in (False, True) if n % 2 == 0 else (True, False):
            rates[encrypted].append(await ingest_rate(encrypted, bodies))
    times, size = await load_times(loads * rounds)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"ingest (columnar, 1,000 x 50, {ids} ids, stored {IDS_AT_REST[0]} with encryption on, "
        f"{SENDERS} senders, median of {rounds} rounds)"
    )
    print(f"  encryption off: {off:10,.0f} records/s")
    print(f"  encryption on:  {on:10,.0f} records/s   cost {100 * (1 - on / off):+.1f}%")
    off, on = (statistics.median(r for r, _ in LABELS[side]) for side in (False, True))
    print("labels (1,000 per call, each joined to its stored prediction, 4 senders)")
    print(f"  encryption off: {off:10,.0f} labels/s")
    print(f"  encryption on:  {on:10,.0f} labels/s    cost {100 * (1 - on / off):+.1f}%")
    off, on = (statistics.median(t for _, t in LABELS[side]) for side in (False, True))
    print(f"reading every outcome back ({1000 * (len(bodies))} rows)")
    print(f"  encryption off: {1000 * off:8.1f} ms")
    print(f"  encryption on:  {1000 * on:8.1f} ms   cost {100 * (on / off - 1):+.1f}%")
    titles = {
        "fresh": "like for like: downloaded into a fresh directory, then loaded",
        "first": "the gateway's first load of a version (on: decrypted to its private copy)",
        "again": "the gateway's load of it again (on: from the decrypted copy)",
    }
    print(f"model load (KNeighbors on 20k rows, {size / 1e6:.1f} MB stored), "
          f"median of {loads * rounds} interleaved loads")  # fmt: skip
    for kind, title in titles.items():
        off, on = statistics.median(times[kind][False]), statistics.median(times[kind][True])
        print(f"  {title}")
        print(f"    encryption off: {1000 * off:8.1f} ms")
        print(f"    encryption on:  {1000 * on:8.1f} ms   cost {100 * (on / off - 1):+.1f}%")
    print("time inside the cryptography (Sealer, RowCipher; the id digests),")
    print("share of the encrypted runs' wall time")
    for phase in ("ingest", "labels", "read", "load"):
        share = 100 * CRYPTO[phase] / WALL[phase] if WALL[phase] else 0.0
        print(f"  {phase:7s} {1000 * CRYPTO[phase]:8.1f} ms of {WALL[phase]:6.2f} s = {share:.1f}%")
        if phase in ("ingest", "labels"):
            digests = DIGESTS.get(phase, 0.0)
            both = 100 * (CRYPTO[phase] + digests) / WALL[phase] if WALL[phase] else 0.0
            print(f"    + id digests {1000 * digests:6.1f} ms CPU = {both:.1f}% with them")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ids", choices=("sequential", "uuid"), default="sequential")
    parser.add_argument("--ids-at-rest", choices=("digest", "clear"), default="digest")
    args = parser.parse_args()
    IDS_AT_REST[0] = args.ids_at_rest
    asyncio.run(main(args.batches, args.loads, args.rounds, args.ids))
