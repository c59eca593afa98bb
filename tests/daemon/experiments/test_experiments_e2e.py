"""End to end on a real ``mlwarden run``: two real models behind the gateway, an A/B test
started, evaluated and concluded through the HTTP API, and its winner promoted."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FEATURES = ("x1", "x2", "x3")
TRUE_COEF = np.array([1.0, -2.0, 0.5])

CONFIG = """
[ab_testing]
min_duration_hours = 0
min_samples = 100
auto_promote = true
promote_strategy = "blue_green"
evaluation_interval_seconds = 3600
[deployment]
tick_seconds = 3600
[deployment.strategies.blue_green]
interval_seconds = 3600
min_samples = 30
[[models]]
name = "m"
features = ["x1", "x2", "x3"]
"""


def log_linear_models(base_path: Path) -> list[str]:
    """Fit A (wrong coefficients) and B (right ones), log both to the daemon's MLflow store
    before it starts (so the daemon stays its only writer once running); their URIs."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    uri = f"sqlite:///{base_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment(
        "seed-models", artifact_location=(base_path / "seed-artifacts").as_uri()
    )
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 3)), columns=list(FEATURES))
    uris = []
    for coef in (TRUE_COEF * 0.5, TRUE_COEF):
        model = LinearRegression().fit(x, x.to_numpy() @ coef)
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(
                model, name="model", pip_requirements=["scikit-learn"], input_example=x[:2]
            )
        uris.append(info.model_uri)
    return uris


def send_traffic(daemon, n: int, start: int) -> dict[str, int]:
    """``n`` requests through the gateway, then their labels; served counts per version."""
    rng = np.random.default_rng(start)
    served: dict[str, int] = {}
    for first in range(start, start + n, 100):
        x = rng.normal(size=(100, 3))
        records = [
            {"id": f"r{first + i}", "features": dict(zip(FEATURES, row.tolist(), strict=True))}
            for i, row in enumerate(x)
        ]
        status, body = daemon.call("POST", "/api/models/m/predict", {"records": records})
        assert status == 200, body
        for answer in body["predictions"]:
            served[answer["version"]] = served.get(answer["version"], 0) + 1
        y = x @ TRUE_COEF + rng.normal(scale=0.1, size=100)
        labels = [{"id": f"r{first + i}", "label": float(v)} for i, v in enumerate(y)]
        status, body = daemon.call("POST", "/api/models/m/labels", {"labels": labels})
        assert status < 300, body
    return served


def test_experiment_on_a_real_daemon_promotes_its_winner(daemon_factory):
    daemon = daemon_factory(CONFIG)
    # Explicit, as in production: MLflow's registry resolves ``models:/m-…`` sources
    # through the process-wide tracking URI.
    daemon.env["MLFLOW_TRACKING_URI"] = f"sqlite:///{daemon.base_path / 'mlflow.db'}"
    uri_a, uri_b = log_linear_models(daemon.base_path)
    daemon.start()
    for version, uri in (("1.0.0", uri_a), ("1.1.0", uri_b)):
        status, body = daemon.call(
            "POST", "/api/models/m/versions", {"model_uri": uri, "version": version}
        )
        assert status == 201, body

    status, experiment = daemon.call(
        "POST",
        "/api/experiments",
        {"model_a": "m@1.0.0", "model_b": "m@1.1.0", "name": "e2e", "duration_hours": 1},
    )
    assert status == 201, experiment
    exp_id = experiment["id"]
    status, deployment = daemon.call("GET", "/api/models/m/deployment")
    assert deployment["traffic"] == {"1.0.0": 0.5, "1.1.0": 0.5}, deployment

    # Too few samples: evaluated, but no winner; the gauges show the running experiment.
    served = send_traffic(daemon, 100, 0)
    assert set(served) == {"1.0.0", "1.1.0"}
    status, early = daemon.call("POST", f"/api/experiments/{exp_id}/evaluate")
    assert status == 200, early
    assert early["status"] == "running" and early["result"]["recommendation"] == "CONTINUE"
    status, metrics = daemon.call("GET", "/metrics")
    assert f'mlwarden_experiment_samples{{model="m",variant="B"}} {float(served["1.1.0"])}' in (
        metrics
    )

    send_traffic(daemon, 500, 100)
    status, done = daemon.call("POST", f"/api/experiments/{exp_id}/evaluate")
    assert status == 200, done
    result = done["result"]
    assert done["status"] == "concluded", result
    assert result["recommendation"] == "PROMOTE_B" and done["winner"] == "1.1.0"
    assert result["samples"]["A"] + result["samples"]["B"] == 600
    assert not result["srm"]["mismatch"] and result["p_value"] <= 0.05
    assert done["promotion"]["status"] == "started", done["promotion"]

    # The winner now serves: the blue-green rollout switched all traffic to 1.1.0.
    status, deployment = daemon.call("GET", "/api/models/m/deployment")
    assert deployment["rollout"]["candidate"] == "1.1.0", deployment
    assert deployment["traffic"] == {"1.1.0": 1.0}, deployment
    assert send_traffic(daemon, 100, 1000) == {"1.1.0": 100}

    status, history = daemon.call("GET", "/api/experiments/history")
    assert [(e["id"], e["status"]) for e in history["experiments"]] == [(exp_id, "concluded")]
    assert daemon.stop() == 0
