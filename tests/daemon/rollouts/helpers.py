"""Helpers for the rollout tests: real scikit-learn models in MLflow, a clock, traffic."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlwarden.daemon.warden import Warden

FEATURES = ("x1", "x2", "x3")
TRUE_COEF = np.array([1.0, -2.0, 0.5])

DEPLOYMENT_CONFIG = """
[deployment]
tick_seconds = 3600
[deployment.strategies.canary]
steps = [10, 50, 100]
interval_seconds = 60
min_samples = 30
max_metric_increase = 0.5
max_latency_ratio = 100
latency_slack_seconds = 5
[deployment.strategies.blue_green]
interval_seconds = 60
min_samples = 30
max_metric_increase = 0.5
max_latency_ratio = 100
latency_slack_seconds = 5
[deployment.strategies.shadow]
interval_seconds = 60
min_samples = 30
max_metric_increase = 0.5
max_latency_ratio = 100
latency_slack_seconds = 5
"""
MODELS_CONFIG = """
[[models]]
name = "price"
features = ["x1", "x2", "x3"]
"""
MODEL_CONFIG = DEPLOYMENT_CONFIG + MODELS_CONFIG


class Clock:
    """A settable clock for the Warden: tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_SAVED: dict[tuple[float, int], str] = {}


def _saved_linear(coef: np.ndarray, seed: int) -> str:
    """Fit a LinearRegression to y = x @ coef and save it with mlflow.sklearn, once."""
    key = (float(coef[0]), seed)
    if key not in _SAVED:
        import mlflow.sklearn
        import pandas as pd
        from sklearn.linear_model import LinearRegression

        rng = np.random.default_rng(seed)
        x = rng.normal(size=(200, 3))
        y = x @ coef + rng.normal(scale=0.05, size=200)
        frame = pd.DataFrame(x, columns=list(FEATURES))
        path = Path(tempfile.mkdtemp(prefix="mlwarden-rollout-model-")) / "model"
        mlflow.sklearn.save_model(
            LinearRegression().fit(frame, y), str(path), pip_requirements=["scikit-learn"],
            input_example=frame[:2],
        )  # fmt: skip
        _SAVED[key] = str(path)
    return _SAVED[key]


def _log_linear(warden: Warden, coef: np.ndarray, seed: int) -> str:
    """A run holding the saved model's files under ``model/``; its ``runs:/`` URI."""
    local = _saved_linear(coef, seed)
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, local, "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


async def register_models(warden: Warden) -> tuple[str, str, str]:
    """1.0.0 (good, in production), 1.1.0 (good candidate), 2.0.0 (bad candidate)."""
    registry = warden.registry
    out = []
    for coef, seed in ((TRUE_COEF, 1), (TRUE_COEF, 2), (TRUE_COEF * -1.0, 3)):
        uri = await asyncio.to_thread(_log_linear, warden, coef, seed)
        record = await registry.register("price", model_uri=uri)
        out.append(record["version"])
    await registry.transition("price", out[0], "staging", actor="test")
    await registry.transition("price", out[0], "production", actor="test")
    return out[0], out[1], out[2]


async def send_traffic(client: Any, n: int, prefix: str, seed: int) -> list[dict[str, Any]]:
    """``n`` predictions through the gateway, then their true labels on the ingest path."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    records = [
        {"id": f"{prefix}-{i}", "features": dict(zip(FEATURES, map(float, row), strict=True))}
        for i, row in enumerate(x)
    ]
    resp = await client.post("/api/models/price/predict", json={"records": records})
    body = await resp.json()
    assert resp.status == 200, body
    # Irreducible noise in the labels: two good models then have nearly equal MSE.
    y = x @ TRUE_COEF + rng.normal(scale=0.5, size=n)
    labels = [{"id": r["id"], "label": float(v)} for r, v in zip(records, y, strict=True)]
    resp = await client.post("/api/models/price/labels", json={"labels": labels})
    assert resp.status < 300, await resp.text()
    return body["predictions"]


def shares(predictions: list[dict[str, Any]]) -> dict[str, float]:
    versions = [p["version"] for p in predictions]
    return {v: versions.count(v) / len(versions) for v in set(versions)}


class _Failing:
    """A pyfunc model that loads but fails every prediction (a broken candidate)."""

    def __init__(self) -> None:
        import mlflow.pyfunc

        class FailingModel(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                raise RuntimeError("feature store timeout")

        self.cls = FailingModel


def _log_failing(warden: Warden) -> str:
    import mlflow.pyfunc

    local = Path(tempfile.mkdtemp(prefix="mlwarden-failing-")) / "model"
    mlflow.pyfunc.save_model(str(local), python_model=_Failing().cls(), pip_requirements=["mlflow"])
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


def _log_unloadable(warden: Warden) -> str:
    """A run whose ``model/`` has an MLmodel naming a loader module that does not exist."""
    local = Path(tempfile.mkdtemp(prefix="mlwarden-unloadable-")) / "model"
    local.mkdir()
    (local / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: no_such_loader_module\n"
        "    python_version: 3.11.7\n"
    )
    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


async def register_broken(warden: Warden, kind: str) -> str:
    """Register a candidate that fails to predict (``failing``) or to load (``unloadable``)."""
    log = _log_failing if kind == "failing" else _log_unloadable
    uri = await asyncio.to_thread(log, warden)
    record = await warden.registry.register("price", model_uri=uri)
    return record["version"]
