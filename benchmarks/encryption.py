"""What encryption at rest costs: ingest throughput and model load time, on and off.

    python benchmarks/encryption.py [--batches 60] [--loads 8]

Both sides run in this process against a started Warden on a fresh base path (SQLite,
MLflow SQLite), the same data, interleaved (off, on, off, on) so machine noise hits
both alike; the figure is the median of the rounds.

1. Ingest: ``IngestService.record_predictions`` with columnar JSON bodies of 1,000
   records x 50 numeric features (encoded beforehand), 4 concurrent senders; each call
   commits the batch (sealed: prediction batch, journal rows) before it returns.
   Records/s.
2. Model load, two ways (median seconds per load):
   - like for like: ``mlflow.artifacts.download_artifacts`` of the version into a fresh
     directory, then ``pyfunc.load_model`` (off: the files are copied; on: decrypted);
   - the serving gateway's load as it runs (``Gateway._load_sync``). Off, MLflow loads
     the model in place from the artifact store (no copy) and caches what it checked
     about the same path (its dependency check); on, every load decrypts into a fresh
     private temporary directory, so that figure carries MLflow's per-path work too.

Besides the side-by-side figures (noisy on a shared machine: each round starts two
fresh daemons), the script counts the time spent inside ``Sealer.seal``/``open``
during the encrypted runs and prints it as a share of their wall time: the direct
cost of the cryptography, which machine noise does not move.

Goal (issue 22): the encrypted path costs < 10% of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlwarden.daemon.core import encryption as _enc
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.core.keys import new_key, write_key_file
from mlwarden.daemon.warden import Warden

FEATURES = [f"f{i}" for i in range(50)]
SENDERS = 4

#: Seconds spent sealing and opening, by phase ("ingest", "load").
CRYPTO: dict[str, float] = {"ingest": 0.0, "load": 0.0}
_phase = ["ingest"]
_seal, _open = _enc.Sealer.seal, _enc.Sealer.open


def _timed_seal(self: _enc.Sealer, data: bytes, purpose: str) -> bytes:
    start = time.perf_counter()
    try:
        return _seal(self, data, purpose)
    finally:
        CRYPTO[_phase[0]] += time.perf_counter() - start


def _timed_open(self: _enc.Sealer, data: bytes, purpose: str, what: str) -> bytes:
    start = time.perf_counter()
    try:
        return _open(self, data, purpose, what)
    finally:
        CRYPTO[_phase[0]] += time.perf_counter() - start


_enc.Sealer.seal = _timed_seal  # type: ignore[method-assign]
_enc.Sealer.open = _timed_open  # type: ignore[method-assign]


def _bodies(batches: int, rows: int = 1000) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for b in range(batches):
        x = rng.normal(size=(rows, len(FEATURES)))
        out.append(
            json.dumps(
                {
                    "columns": {
                        "id": [f"b{b}-{i}" for i in range(rows)],
                        "features": {f: x[:, n].tolist() for n, f in enumerate(FEATURES)},
                        "prediction": x[:, 0].tolist(),
                    }
                }
            ).encode()
        )
    return out


def _config(base: Path, encrypted: bool) -> str:
    key_file = base / "keys"
    write_key_file(key_file, {"k1": new_key()})
    return f"""
[daemon]
base_path = "{base}"
[encryption]
enabled = {"true" if encrypted else "false"}
key_file = "{key_file}"
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


WALL: dict[str, float] = {"ingest": 0.0, "load": 0.0}


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
        return sent / wall
    finally:
        await warden.stop()


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


async def load_time(encrypted: bool, loads: int) -> tuple[float, float, int]:
    warden, base = await _warden(encrypted)
    try:
        uri = await asyncio.to_thread(_log_model, warden)
        record = await warden.registry.register("bench", model_uri=uri)
        size = sum(p.stat().st_size for p in (base / "mlartifacts").rglob("*") if p.is_file())
        gateway = warden.rollouts.gateway
        _phase[0] = "load" if encrypted else "ignored"
        crypto_before = CRYPTO["load"]
        begin = time.perf_counter()
        times = []
        for _ in range(loads):
            start = time.perf_counter()
            await asyncio.to_thread(gateway._load_sync, "bench", record)
            times.append(time.perf_counter() - start)
        fresh = []
        for _ in range(loads):
            start = time.perf_counter()
            await asyncio.to_thread(_fresh_load, warden, record)
            fresh.append(time.perf_counter() - start)
        if encrypted:
            WALL["load"] += time.perf_counter() - begin
        else:
            CRYPTO["load"] = crypto_before
        return statistics.median(fresh), statistics.median(times), size
    finally:
        await warden.stop()


async def main(batches: int, loads: int, rounds: int) -> None:
    bodies = _bodies(batches)
    rates: dict[bool, list[float]] = {False: [], True: []}
    loads_s: dict[bool, list[float]] = {False: [], True: []}
    gateway_s: dict[bool, list[float]] = {False: [], True: []}
    for n in range(rounds):
        for encrypted in (False, True) if n % 2 == 0 else (True, False):
            rates[encrypted].append(await ingest_rate(encrypted, bodies))
            fresh, served, size = await load_time(encrypted, loads)
            loads_s[encrypted].append(fresh)
            gateway_s[encrypted].append(served)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"ingest (columnar, 1,000 x 50, {SENDERS} senders, median of {rounds} rounds)")
    print(f"  encryption off: {off:10,.0f} records/s")
    print(f"  encryption on:  {on:10,.0f} records/s   cost {100 * (1 - on / off):+.1f}%")
    off, on = statistics.median(loads_s[False]), statistics.median(loads_s[True])
    print(f"model load, like for like (KNeighbors on 20k rows, {size / 1e6:.1f} MB stored)")
    print(f"  encryption off: {1000 * off:8.1f} ms")
    print(f"  encryption on:  {1000 * on:8.1f} ms   cost {100 * (on / off - 1):+.1f}%")
    off, on = statistics.median(gateway_s[False]), statistics.median(gateway_s[True])
    print("model load as the gateway runs it (off: in place, MLflow's per-path caches)")
    print(f"  encryption off: {1000 * off:8.1f} ms")
    print(f"  encryption on:  {1000 * on:8.1f} ms   cost {100 * (on / off - 1):+.1f}%")
    print("time inside seal/open, share of the encrypted runs' wall time")
    for phase in ("ingest", "load"):
        share = 100 * CRYPTO[phase] / WALL[phase] if WALL[phase] else 0.0
        print(f"  {phase:7s} {1000 * CRYPTO[phase]:8.1f} ms of {WALL[phase]:6.2f} s = {share:.1f}%")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.loads, args.rounds))
