"""Helpers of test_cluster_failover_e2e.py: the configs, the cluster's view, the data.

Blocking calls to the daemons run in threads (``call``), so that the test's event loop
keeps serving the alert receiver (a real aiohttp server) meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.error
from typing import Any

import numpy as np

from tests.daemon.monitoring.test_drift_e2e import FEATURES, frame
from tests.helpers import DaemonProcess

TTL = 2.0
HEARTBEAT = 0.5
INTERVAL = 1.0
#: The cluster-wide singletons the first daemon takes before the others start.
SINGLETONS = ("scheduler", "training-jobs", "rollouts", "alerts", "outbox")


def cluster_config(
    *,
    postgres_url: str | None,
    mlflow_url: str | None,
    experiment: str,
    reference: str,
    drift_model: str,
    canary_model: str | None,
    receiver_port: int,
) -> str:
    """A cluster daemon's config; ``postgres_url`` and ``canary_model`` None: the lone
    SQLite daemon's (the drift model alone, no notifier)."""
    text = f'[daemon]\ndatabase_url = "{postgres_url}"\n' if postgres_url else ""
    if mlflow_url:
        text += f'[mlflow]\ntracking_uri = "{mlflow_url}"\nexperiment = "{experiment}"\n'
    trainer = json.dumps([sys.executable, "-c", "raise SystemExit(3)"])
    text += (
        f"[cluster]\nlease_ttl_seconds = {TTL}\nheartbeat_seconds = {HEARTBEAT}\n"
        f"[monitoring]\ninterval_seconds = {INTERVAL}\nbucket_seconds = 2\n"
        "[training]\nscheduler_interval_seconds = 0.5\nmax_retries = 0\n"
        "[deployment]\ngateway = false\ntick_seconds = 0.5\n"
        "[deployment.strategies.canary]\nsteps = [10, 50, 100]\ninterval_seconds = 1\n"
        "min_samples = 5\n"
        "[alerts]\nbuiltin_rules = false\ngroup_wait_seconds = 0\ntick_seconds = 0.2\n"
        "retry_initial_seconds = 0.2\nretry_max_seconds = 0.5\n"
        '[[alerts.rules]]\nname = "RolloutStep"\nfire_on = ["rollout_step"]\n'
        'group_by = ["step"]\nseverity = "info"\n'
        '[[alerts.rules]]\nname = "CronFired"\nfire_on = ["trigger_fired"]\n'
        'group_by = ["job_id"]\nseverity = "info"\n'
        '[[alerts.rules]]\nname = "Drift"\nfire_on = ["drift_detected"]\nseverity = "warning"\n'
    )
    if canary_model is not None:  # the lone daemon tells nobody
        text += (
            '[[notifiers]]\nname = "hook"\nplugin = "apprise"\n'
            f'urls = ["json://127.0.0.1:{receiver_port}/hook"]\n'
        )
    text += (
        f'[[models]]\nname = "{drift_model}"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "psi", "chi2"]\n'
    )
    if canary_model is None:
        return text
    return text + (
        'schedule = "* * * * *"\n'
        f'[models.trainer]\nplugin = "command"\ncommand = {trainer}\n'
        f'[[models]]\nname = "{canary_model}"\nfeatures = ["x1", "x2", "x3"]\n'
        'schedule = "* * * * *"\n'
        f'[models.trainer]\nplugin = "command"\ncommand = {trainer}\n'
    )


async def call(daemon: DaemonProcess, method: str, path: str, body: Any = None, **kw: Any):
    """``daemon.call`` in a thread: (status, answer)."""
    return await asyncio.to_thread(daemon.call, method, path, body, **kw)


async def ok(daemon: DaemonProcess, method: str, path: str, body: Any = None, **kw: Any):
    """The answer of a call that must succeed (2xx)."""
    status, answer = await call(daemon, method, path, body, **kw)
    assert 200 <= status < 300, (method, path, status, answer)
    return answer


async def leases(daemon: DaemonProcess) -> dict[tuple[str, str], tuple[str, int]]:
    """(kind, key) -> (owner, token) of every unexpired lease, as ``daemon`` reads them."""
    view = await ok(daemon, "GET", "/api/system/cluster")
    return {
        (x["kind"], x["key"]): (x["owner"], x["token"]) for x in view["leases"] if not x["expired"]
    }


async def send_batch(
    daemons: list[DaemonProcess], first: int, model: str, body: dict, batch_id: str
) -> tuple[str, int]:
    """Send ``body`` to ``daemons[first]``, else to the next one that answers, with one
    batch id (a client retrying elsewhere after a refused connection). Returns the
    answering daemon's instance and how many daemons refused the connection."""
    headers = {"Mlwarden-Batch-Id": batch_id}
    refused = 0
    for k in range(len(daemons)):
        daemon = daemons[(first + k) % len(daemons)]
        try:
            status, answer = await call(
                daemon, "POST", f"/api/models/{model}/predictions", body, headers=headers
            )
        except (urllib.error.URLError, ConnectionError):
            refused += 1
            continue
        assert status == 201, answer
        return daemon.env["MLWARDEN_INSTANCE"], refused
    raise AssertionError("no daemon took the batch")


def drift_batch(k: int, ts: float) -> dict:
    """Batch ``k`` of the drift model: 300 + 50 k rows, every other one shifted, with
    explicit times and versions (so the lone daemon measures the very same data)."""
    data = frame(300 + 50 * k, seed=100 + k, shift=0.8 * (k % 2))
    n = len(data)
    return {
        "columns": {
            "id": [f"b{k}-{i}" for i in range(n)],
            "ts": [ts + i * 1e-3 for i in range(n)],
            "version": ["1.0.0" if i % 3 else "2.0.0" for i in range(n)],
            "features": {name: data[name].tolist() for name in (*FEATURES, "kind")},
            "prediction": data["prediction"].tolist(),
        }
    }


def drift_labels(k: int, body: dict) -> dict:
    """Labels for every other prediction of batch ``k`` (prediction + noise)."""
    rng = np.random.default_rng(500 + k)
    ids, predictions = body["columns"]["id"], body["columns"]["prediction"]
    return {
        "labels": [
            {"id": ids[i], "label": float(predictions[i] + rng.normal(scale=0.5))}
            for i in range(0, len(ids), 2)
        ]
    }


def canary_batch(tag: str, version: str, n: int) -> dict:
    """``n`` predictions of the canary model by ``version``, stamped now by the daemon."""
    rng = np.random.default_rng(abs(hash((tag, version))) % 2**32)
    x = rng.normal(size=(n, 3))
    return {
        "columns": {
            "id": [f"{tag}-{version}-{i}" for i in range(n)],
            "version": [version] * n,
            "latency_ms": [5.0] * n,
            "features": {f"x{j + 1}": x[:, j].tolist() for j in range(3)},
            "prediction": x.sum(axis=1).tolist(),
        }
    }


def statistics(report: dict) -> dict:
    """(feature, method) -> statistic of a drift report."""
    return {
        (feature, method): verdict["statistic"]
        for feature, drift in report["feature_drifts"].items()
        for method, verdict in drift["methods"].items()
    }
