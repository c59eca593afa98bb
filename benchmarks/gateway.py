"""The serving gateway's added latency over calling the MLflow pyfunc model directly.

One run, same model (a scikit-learn LinearRegression logged with mlflow.sklearn), same
single-row requests, three ways:

- ``direct``: ``pyfunc_model.predict(DataFrame)`` in the calling thread — the floor;
- ``gateway (in-process)``: ``rollouts.predict(model, body)`` on a started Warden —
  routing, the pyfunc call in a worker thread, serving stats, and the prediction
  recorded on the ingest path (one committed batch per request);
- ``gateway (HTTP)``: ``POST /api/models/{name}/predict`` over loopback with aiohttp —
  what a client sees, JSON and middlewares (auth, audit, metrics) included.

Prints p50/p99 in milliseconds, the added latency over ``direct`` and the ratio.
Rerun::

    python benchmarks/gateway.py --requests 500

Numbers depend on the machine and its load; the docs record one run with its context.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLWARDEN_DISABLE_PLUGIN_AUTOLOAD", "1")

CONFIG = """
[deployment]
tick_seconds = 3600
[[models]]
name = "bench"
features = ["x1", "x2", "x3"]
"""


def _log_model(warden, tmp: Path) -> tuple[str, str]:
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(500, 3)), columns=["x1", "x2", "x3"])
    y = x.to_numpy() @ np.array([1.0, -2.0, 0.5])
    path = tmp / "model"
    mlflow.sklearn.save_model(
        LinearRegression().fit(x, y),
        str(path),
        pip_requirements=["scikit-learn"],
        input_example=x[:2],
    )
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, str(path), "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model", str(path)


def _quantiles(samples: list[float]) -> tuple[float, float]:
    arr = np.array(samples) * 1000.0
    return float(np.quantile(arr, 0.5)), float(np.quantile(arr, 0.99))


async def run(requests: int) -> None:
    import mlflow.pyfunc
    import pandas as pd
    from aiohttp.test_utils import TestClient, TestServer

    from mlwarden.daemon.api import build_app
    from mlwarden.daemon.core.config_loader import load_config
    from mlwarden.daemon.warden import Warden

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        (tmp / "mlwarden.toml").write_text(CONFIG)
        config = load_config(
            tmp / "mlwarden.toml", env={}, overrides={"daemon.base_path": str(tmp / "state")}
        )
        async with Warden(config) as warden:
            uri, local = await asyncio.to_thread(_log_model, warden, tmp)
            registry = warden.registry
            record = await registry.register("bench", model_uri=uri)
            await registry.transition("bench", record["version"], "staging", actor="bench")
            await registry.transition("bench", record["version"], "production", actor="bench")
            rollouts = warden.rollouts
            await rollouts.set_traffic("bench", {record["version"]: 1.0}, reason="bench")

            rng = np.random.default_rng(1)
            rows = [
                dict(zip(("x1", "x2", "x3"), map(float, r), strict=True))
                for r in rng.normal(size=(requests, 3))
            ]

            model = mlflow.pyfunc.load_model(local)
            for row in rows[:20]:  # warm-up
                model.predict(pd.DataFrame([row]))
            direct = []
            for row in rows:
                start = time.perf_counter()
                model.predict(pd.DataFrame([row]))
                direct.append(time.perf_counter() - start)

            await rollouts.predict("bench", {"id": "warm", "features": rows[0]})
            in_process = []
            for i, row in enumerate(rows):
                start = time.perf_counter()
                await rollouts.predict("bench", {"id": f"p{i}", "features": row})
                in_process.append(time.perf_counter() - start)

            http = []
            async with TestClient(TestServer(build_app(warden))) as client:
                for i, row in enumerate(rows):
                    start = time.perf_counter()
                    resp = await client.post(
                        "/api/models/bench/predict", json={"id": f"h{i}", "features": row}
                    )
                    await resp.read()
                    http.append(time.perf_counter() - start)
                    assert resp.status == 200, await resp.text()

    d50, d99 = _quantiles(direct)
    print(
        f"gateway latency benchmark: {requests} single-row requests, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'path':<24}{'p50 ms':>10}{'p99 ms':>10}{'+p50 ms':>10}{'+p99 ms':>10}"
        f"{'x p50':>8}{'x p99':>8}"
    )
    for name, samples in (
        ("direct pyfunc", direct),
        ("gateway (in-process)", in_process),
        ("gateway (HTTP)", http),
    ):
        p50, p99 = _quantiles(samples)
        print(
            f"{name:<24}{p50:>10.3f}{p99:>10.3f}{p50 - d50:>10.3f}{p99 - d99:>10.3f}"
            f"{p50 / d50:>8.2f}{p99 / d99:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(args.requests))


if __name__ == "__main__":
    main()
