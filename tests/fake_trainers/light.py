"""Light functions for the ``python`` trainer (no MLflow import, so tests stay fast)."""

from __future__ import annotations

import os


def report(model_uri: str, mse: float = 0.5) -> dict:
    """Return a result naming ``model_uri``; the child runner writes it to MLWARDEN_OUTPUT."""
    print(f"training {os.environ['MLWARDEN_MODEL']} in job {os.environ['MLWARDEN_JOB_ID']}")
    return {"model_uri": model_uri, "metrics": {"mse": mse}}


def explode() -> dict:
    raise RuntimeError("explode: no data today")
