"""RSS of a daemon with no model, then of one watching 20 models of 50 features.

    python benchmarks/ingest_memory.py [--quick]    (or: python benchmarks/ingest.py --only memory)

The baseline is what MLflow, pandas, scipy, aiohttp and SQLAlchemy cost. Then a daemon
watching 20 models (4 with ``--quick``), each with a 50k-row Parquet reference (KS +
PSI), measured after the references are loaded, after 20k rows ingested per model and
after one drift check of every model; the per-model cost is (final RSS - baseline) /
20. Peak RSS (VmHWM) too.

Goal (issue 3): < 500 MB RSS for 20 x 50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

from ingest_harness import Daemon, column_bodies, reference_frame, send_all


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 models instead of 20")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory(prefix="mlwarden-bench-") as tmp:
        bench_memory(Path(tmp), args.quick)


if __name__ == "__main__":
    main()
