"""The demo's trainer: fits a ridge regression on the most recent market data.

Used through the ``python`` trainer plugin as ``mlwarden.demo.trainer:train``; it runs
in a child process with ``MLFLOW_TRACKING_URI`` and ``MLWARDEN_MODEL`` set, logs the
model to MLflow and returns ``{"model_uri": ..., "metrics": {...}}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .market import FEATURES

__all__ = ["fit_and_log", "fit_ridge", "train"]

ALPHA = 1e-4


def fit_ridge(frame: pd.DataFrame, holdout: float = 0.25) -> Any:
    """The ridge regression fitted on the first part of ``frame`` (deterministic)."""
    from sklearn.linear_model import Ridge

    train = frame.iloc[: int(len(frame) * (1 - holdout))]
    return Ridge(alpha=ALPHA).fit(train[list(FEATURES)], train["target"])


def fit_and_log(
    frame: pd.DataFrame,
    *,
    tracking_uri: str,
    experiment: str = "mlwarden",
    run_name: str = "demo-train",
    holdout: float = 0.25,
) -> dict[str, Any]:
    """Fit on the first part of ``frame``, score on the rest, log the model; return its URI."""
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    split = int(len(frame) * (1 - holdout))
    train, test = frame.iloc[:split], frame.iloc[split:]
    X = train[list(FEATURES)]
    model = fit_ridge(frame, holdout)
    pred = model.predict(test[list(FEATURES)])
    mse = float(np.mean((pred - test["target"].to_numpy()) ** 2))
    mae = float(np.mean(np.abs(pred - test["target"].to_numpy())))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({"model": "Ridge", "alpha": ALPHA, "rows": len(frame)})
        mlflow.log_metrics({"mse": mse, "mae": mae})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            # Explicit requirements: inferring them imports the model in a subprocess.
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
    return {
        "model_uri": info.model_uri,
        "run_id": run.info.run_id,
        "metrics": {"mse": mse, "mae": mae},
        "params": {"model": "Ridge", "alpha": ALPHA, "rows": len(frame)},
    }


def train(data_path: str, rows: int = 1500) -> dict[str, Any]:
    """Train on the last ``rows`` rows of the demo's market log at ``data_path``."""
    import mlflow  # noqa: F401  (slow to import: read the freshest data after it)

    frame = pd.read_csv(Path(data_path)).tail(rows).reset_index(drop=True)
    if len(frame) < 100:
        raise RuntimeError(f"only {len(frame)} rows of market data in {data_path}; need 100")
    model = os.environ.get("MLWARDEN_MODEL", "demo")
    return fit_and_log(
        frame,
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        run_name=f"{model}-{os.environ.get('MLWARDEN_JOB_ID', 'manual')}",
    )
