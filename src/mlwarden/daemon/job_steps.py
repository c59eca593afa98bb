"""The steps of a training attempt around the trainer: data checks and registration."""

from __future__ import annotations

from typing import Any

from ..types import TrainingResult

__all__ = ["NotRetryable", "check_reported_data", "check_training_data", "register_result"]


class NotRetryable(Exception):
    """A failure that another attempt cannot fix (no data, bad config, registry)."""


async def check_training_data(warden: Any, model: str) -> None:
    """Refuse to train below ``training.min_training_data_points`` recorded predictions."""
    minimum = warden.config.training.min_training_data_points
    ingest = warden.services.get("ingest")
    if minimum <= 0 or ingest is None:
        return
    count = await ingest.count_predictions(model)
    if count < minimum:
        raise NotRetryable(
            f"model {model!r} has {count} recorded predictions; "
            f"training.min_training_data_points is {minimum}"
        )


def check_reported_data(warden: Any, result: TrainingResult) -> None:
    """Refuse a result the trainer says was trained on too few data points."""
    minimum = warden.config.training.min_training_data_points
    points = result.params.get("data_points")
    if isinstance(points, int) and points < minimum:
        raise NotRetryable(
            f"trainer reports {points} training data points; "
            f"training.min_training_data_points is {minimum}"
        )


async def register_result(
    warden: Any, job_id: str, model: str, result: TrainingResult
) -> str | None:
    """Register the trained model as a new version in validation; return the version."""
    registry = warden.services.get("registry")
    if registry is None:
        raise NotRetryable(
            f"no registry service to register {result.model_uri}; the model stays in MLflow"
        )
    params = {k: v for k, v in result.params.items() if k != "data_points"} or None
    lineage = {"training_job": job_id}
    if result.run_id:
        lineage["run_id"] = result.run_id
    try:
        record = await registry.register(
            model,
            model_uri=result.model_uri,
            metrics=result.metrics or None,
            params=params,
            lineage=lineage,
            author="mlwarden",
        )
    except Exception as exc:
        raise NotRetryable(f"registering {result.model_uri} failed: {exc}") from exc
    return str(record.get("version")) if record.get("version") is not None else None
