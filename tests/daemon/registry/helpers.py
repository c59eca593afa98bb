"""Helpers for the registry tests: models logged to the warden's real MLflow store."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def log_model_files(
    warden: Any,
    *,
    framework: str = "sklearn",
    inputs: tuple[str, ...] = ("x1", "x2"),
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
) -> str:
    """A run with a small MLmodel at ``model/`` (fast: no pickling); its run id."""
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    client = warden.tracking.client
    run = client.create_run(warden.tracking.experiment_id)
    run_id = run.info.run_id
    for key, value in (params or {}).items():
        client.log_param(run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    signature = ModelSignature(inputs=Schema([ColSpec("double", name) for name in inputs]))
    model = Model(signature=signature)
    model.add_flavor(framework, note="test")
    model.add_flavor("python_function", loader_module="test")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(str(Path(tmp) / "MLmodel"))
        (Path(tmp) / "weights.json").write_text(json.dumps({"w": [1, 2]}))
        client.log_artifacts(run_id, tmp, "model")
    client.set_terminated(run_id)
    return run_id


def log_sklearn_model(warden: Any, *, alpha: float, seed: int = 0) -> tuple[str, str, float]:
    """Fit and log a Ridge regression with mlflow.sklearn; (run id, model id, holdout mse)."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_squared_error

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=200)
    model = Ridge(alpha=alpha).fit(x[:150], y[:150])
    mse = float(mean_squared_error(y[150:], model.predict(x[150:])))
    mlflow.set_tracking_uri(warden.tracking.uri)
    with mlflow.start_run(experiment_id=warden.tracking.experiment_id) as run:
        mlflow.log_param("alpha", alpha)
        mlflow.log_metric("mse", mse)
        info = mlflow.sklearn.log_model(
            model, name="model", pip_requirements=["scikit-learn"], input_example=x[:2]
        )
    return run.info.run_id, info.model_id, mse
