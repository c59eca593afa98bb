"""The steps of a training attempt around the trainer: data checks, registration, outcome."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ...errors import PluginError
from ...plugins.trainers.limits import LIMIT_KEYS, ResourceLimits
from ...types import Event, Severity, TrainingJob, TrainingResult
from ..core.config import Config
from ..core.context import PluginClasses
from ..ingest.interfaces import PredictionCounter
from ..registry.interfaces import VersionRegistrar
from .records import JobRecord, JobState

__all__ = [
    "NotRetryable",
    "Trainer",
    "check_reported_data",
    "check_training_data",
    "make_trainer",
    "outcome_event",
    "register_result",
    "settle_versions",
    "trainer_limits",
    "training_request",
]

logger = logging.getLogger(__name__)


class NotRetryable(Exception):
    """A failure that another attempt cannot fix (no data, bad config, registry)."""


class Trainer(Protocol):
    """A trainer plugin instance (``mlwarden_trainers``)."""

    async def train(self, job: TrainingJob) -> TrainingResult:
        """Run one attempt of ``job`` within its timeout; raise when it fails."""
        ...


def make_trainer(plugins: PluginClasses, model: str, options: Mapping[str, Any]) -> Trainer:
    """The model's trainer plugin built from its ``[models.trainer]`` options."""
    opts = {k: v for k, v in options.items() if k not in LIMIT_KEYS}
    plugin = opts.pop("plugin", "command")
    cls = plugins.get("trainer", plugin)
    try:
        return cls(**opts)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"model {model!r}: trainer {plugin!r}: {exc}") from exc


def training_request(config: Config, job: JobRecord, job_dir: Path) -> TrainingJob:
    """The trainer's request for this attempt of ``job``; opens its log with a banner."""
    training = config.training
    job_id, model, attempt = job["id"], job["model"], job["attempt"]
    job_dir.mkdir(parents=True, exist_ok=True)
    log_path = job["log_path"] or str(job_dir / "train.log")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"=== mlwarden: attempt {attempt} of job {job_id} ({model}) ===\n")
    return TrainingJob(
        id=job_id,
        model=model,
        reason=job["reason"],
        tracking_uri=config.tracking_uri,
        output_path=str(job_dir / "output.json"),
        log_path=log_path,
        timeout_seconds=training.job_timeout_hours * 3600.0,
        options={
            "kill_grace_seconds": training.kill_grace_seconds,
            "experiment": config.mlflow.experiment,
            "limits": trainer_limits(config, model).as_options(),
        },
        attempt=attempt,
    )


def trainer_limits(config: Config, model: str) -> ResourceLimits:
    """The limits of ``model``'s trainer: its ``[models.trainer]`` keys over ``[training]``'s."""
    model_config = config.model(model)
    own = model_config.trainer if model_config else {}
    return ResourceLimits(**{k: float(own.get(k, getattr(config.training, k))) for k in LIMIT_KEYS})


async def check_training_data(predictions: PredictionCounter, config: Config, model: str) -> None:
    """Refuse to train below ``training.min_training_data_points`` recorded predictions."""
    minimum = config.training.min_training_data_points
    if minimum <= 0:
        return
    count = await predictions.count_predictions(model)
    if count < minimum:
        raise NotRetryable(
            f"model {model!r} has {count} recorded predictions; "
            f"training.min_training_data_points is {minimum}"
        )


def check_reported_data(config: Config, result: TrainingResult) -> None:
    """Refuse a result the trainer says was trained on too few data points."""
    minimum = config.training.min_training_data_points
    points = result.params.get("data_points")
    if isinstance(points, int) and points < minimum:
        raise NotRetryable(
            f"trainer reports {points} training data points; "
            f"training.min_training_data_points is {minimum}"
        )


async def register_result(
    registry: VersionRegistrar, job_id: str, model: str, result: TrainingResult
) -> str:
    """Register the trained model as a new version; return the version.

    It is ``training`` until the job ends (``JobService._settle`` then moves it on).
    """
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
            status="training",
        )
    except Exception as exc:
        raise NotRetryable(f"registering {result.model_uri} failed: {exc}") from exc
    return record["version"]


def outcome_event(job: JobRecord, state: JobState, tail: str) -> Event:
    """The event announcing that ``job`` ended in ``state`` (``tail``: its log's end)."""
    job_id = job["id"]
    data: dict[str, object] = {
        "job_id": job_id,
        "reason": job["reason"],
        "attempt": job["attempt"],
    }
    if state == "succeeded":
        data.update(version=job["version"], model_uri=job["model_uri"], metrics=job["metrics"])
        kind, severity = "training_succeeded", Severity.INFO
        message = f"training job {job_id} succeeded: version {job['version']} in validation"
    elif state == "cancelled":
        data.update(state=state, error=job["error"])
        kind, severity = "training_cancelled", Severity.INFO
        message = f"training job {job_id} cancelled"
    else:
        data.update(state=state, error=job["error"], log_tail=tail)
        kind, severity = "training_failed", Severity.CRITICAL
        message = f"training job {job_id} {state.replace('_', ' ')}: {job['error']}"
    return Event(kind=kind, model=job["model"], severity=severity, message=message, data=data)


async def settle_versions(registry: VersionRegistrar, job: JobRecord, state: str) -> None:
    """Move the versions ``job`` registered on from ``training``, by its end ``state``:
    ``validation`` when it succeeded, ``failed`` otherwise. A failure is logged."""
    try:
        moved = await registry.settle_training(
            job["model"],
            job["id"],
            succeeded=state == "succeeded",
            reason=f"training job {job['id']} {state}",
        )
    except Exception:
        logger.exception("training job %s: moving its versions on failed", job["id"])
        return
    if moved:
        logger.info("training job %s %s: versions %s moved on", job["id"], state, moved)
