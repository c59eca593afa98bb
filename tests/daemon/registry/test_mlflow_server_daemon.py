"""``mlwarden run`` (a real process) on a shared ``mlflow server`` behind a token check.

A small reverse proxy (tests/mlflow_server.py, in the test's loop) sits in front of
the session's real ``mlflow server`` and answers 401 to any request without
``Authorization: Bearer TOKEN``: the daemon reaches MLflow only with
``MLFLOW_TRACKING_TOKEN`` in its environment, passed through to MLflow's client
unchanged (tracking, registry and the proxied artifacts alike).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.daemon.rollouts.helpers import _saved_linear
from tests.helpers import DaemonProcess
from tests.mlflow_server import ServerProxy

TOKEN = "s3cret-mlflow-token"


@pytest.fixture
async def guarded(mlflow_server):
    """A proxy to the MLflow server that wants ``Bearer TOKEN``."""
    proxy = await ServerProxy(mlflow_server.url, token=TOKEN).start()
    yield proxy
    await proxy.close()


def _log_model(tracking_uri: str, experiment: str) -> str:
    # Through a client only: mlflow.set_tracking_uri would also export
    # MLFLOW_TRACKING_URI to every later test's subprocesses.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, _saved_linear(np.array([1.0, -2.0, 0.5]), 8), "model")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/model"


async def test_mlwarden_run_on_a_server_that_wants_a_token(guarded, tmp_path: Path, monkeypatch):
    url, seen = guarded.url, guarded.seen
    model, experiment = f"guarded-{uuid.uuid4().hex[:8]}", f"exp-{uuid.uuid4().hex[:8]}"
    config = (
        f'[mlflow]\ntracking_uri = "{url}"\nexperiment = "{experiment}"\n'
        f'[[models]]\nname = "{model}"\nfeatures = ["x1", "x2", "x3"]\n'
    )
    # Without the token the daemon cannot set MLflow up: it exits, saying why.
    refused = DaemonProcess(tmp_path / "refused", config)
    with pytest.raises(AssertionError, match="daemon exited"):
        await asyncio.to_thread(refused.start, True, 120)
    assert (
        "key 'mlflow.tracking_uri': the MLflow server at " + url + " cannot be used: "
        "UNAUTHENTICATED"
    ) in refused.log()
    assert "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME" in refused.log()

    daemon = DaemonProcess(tmp_path / "daemon", config, env={"MLFLOW_TRACKING_TOKEN": TOKEN})
    await asyncio.to_thread(daemon.start, True, 120)
    try:
        status, ready = await asyncio.to_thread(daemon.call, "GET", "/readyz")
        assert status == 200 and ready["checks"]["mlflow"] == "ok", ready
        # A server owns its schema and artifacts: nothing of MLflow's on the daemon's disk.
        assert not (daemon.base_path / "mlflow.db").exists()
        assert not (daemon.base_path / "mlartifacts").exists()
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
        uri = await asyncio.to_thread(_log_model, url, experiment)
        status, record = await asyncio.to_thread(
            daemon.call, "POST", f"/api/models/{model}/versions", {"model_uri": uri}
        )
        assert status == 201, record
        status, body = await asyncio.to_thread(
            daemon.call, "POST", f"/api/models/{model}/promote", {"version": "1.0.0"}
        )
        assert status == 200, body
        status, body = await asyncio.to_thread(
            daemon.call,
            "POST",
            f"/api/models/{model}/predict",
            {"features": {"x1": 1.0, "x2": 0.0, "x3": 2.0}},
        )
        assert status == 200 and body["predictions"][0]["version"] == "1.0.0", body
        status, health = await asyncio.to_thread(daemon.call, "GET", "/api/system/health")
        assert health["components"]["mlflow"]["tracking_uri"] == url
        # The server gone: /readyz says so at once (one try, a short timeout), not after
        # MLflow's client has retried for minutes.
        await guarded.close()
        began = time.monotonic()
        status, ready = await asyncio.to_thread(daemon.call, "GET", "/readyz")
        assert status == 503 and ready["checks"]["mlflow"].startswith("down:"), ready
        assert time.monotonic() - began < 20
    finally:
        assert await asyncio.to_thread(daemon.stop) == 0
    # The artifacts went through the proxy too (upload and the gateway's download).
    artifact_calls = [p for p, s in seen if "/mlflow-artifacts/artifacts/" in p and s == 200]
    assert artifact_calls

    # `mlwarden check-config` shows the server's URI as configured.
    result = subprocess.run(
        [sys.executable, "-m", "mlwarden", "check-config", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mlflow"]["tracking_uri"] == url
    # Nothing here leaks the server's URI to later tests' subprocesses.
    assert "MLFLOW_TRACKING_URI" not in os.environ
