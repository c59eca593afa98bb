"""A real trainer: a tiny scikit-learn model logged to MLflow.

As a script (the ``command`` trainer) it trains and writes MLWARDEN_OUTPUT; as
``tests.fake_trainers.sklearn_model:train`` (the ``python`` trainer) it returns the
result and the runner writes it.
"""

from __future__ import annotations

import json
import os


def train(n: int = 200, seed: int = 0) -> dict:
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = x @ np.array([0.5, -0.25]) + rng.normal(scale=0.1, size=n)
    model = LinearRegression().fit(x, y)
    mse = float(mean_squared_error(y, model.predict(x)))
    with mlflow.start_run(run_name=f"job-{os.environ['MLWARDEN_JOB_ID']}") as run:
        mlflow.log_metric("mse", mse)
        info = mlflow.sklearn.log_model(model, name="model")
    return {
        "model_uri": info.model_uri,
        "run_id": run.info.run_id,
        "metrics": {"mse": mse},
        "data_points": n,
    }


if __name__ == "__main__":
    result = train()
    with open(os.environ["MLWARDEN_OUTPUT"], "w") as fh:
        json.dump(result, fh)
