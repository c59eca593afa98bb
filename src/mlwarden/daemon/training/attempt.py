"""One attempt of a training job: the trainer run under its timeout, and its outcome.

The job service (jobs.py) claims the job, calls ``run_attempt`` and applies the
outcome to the job's row: finished (succeeded, failed, timed out) or queued again
for a retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import PluginError, TrainingFailed, TrainingTimedOut
from ...types import Event, TrainingResult
from ..core.context import Context
from ..ingest.interfaces import PredictionCounter
from ..registry.interfaces import VersionRegistrar
from .records import JobColumns, JobRecord
from .steps import (
    NotRetryable,
    check_reported_data,
    check_training_data,
    make_trainer,
    register_result,
    training_request,
)

__all__ = ["BACKSTOP_SECONDS", "Outcome", "run_attempt"]

logger = logging.getLogger(__name__)

#: Extra time granted past the job timeout before the runner cancels a trainer that
#: did not enforce the timeout itself.
BACKSTOP_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``retry`` queues the job again, the others end it."""

    state: Literal["succeeded", "failed", "timed_out", "retry"]
    #: The job's result columns (succeeded) or its ``error``.
    values: JobColumns


async def run_attempt(
    context: Context,
    predictions: PredictionCounter,
    registry: VersionRegistrar,
    job: JobRecord,
    job_dir: Path,
) -> Outcome:
    """Run this attempt of ``job``'s trainer and register what it trained."""
    job_id, model, attempt = job["id"], job["model"], job["attempt"]
    training = context.config.training
    timeout = training.job_timeout_hours * 3600.0
    try:
        await context.emit(
            Event(
                kind="training_started",
                model=model,
                message=f"training job {job_id} started (attempt {attempt})",
                data={"job_id": job_id, "reason": job["reason"], "attempt": attempt},
            )
        )
        model_config = context.config.model(model)
        if model_config is None or not model_config.trainer:
            raise NotRetryable(f"model {model!r} has no trainer configured any more")
        try:
            trainer = make_trainer(context.plugins, model, model_config.trainer)
        except PluginError as exc:
            raise NotRetryable(str(exc)) from exc
        await check_training_data(predictions, context.config, model)
        request = training_request(context.config, job, job_dir)
        try:
            async with asyncio.timeout(timeout + training.kill_grace_seconds + BACKSTOP_SECONDS):
                result = await trainer.train(request)
        except TimeoutError as exc:
            raise TrainingTimedOut(
                f"trainer did not finish within the job timeout of {timeout:g}s"
            ) from exc
        if not isinstance(result, TrainingResult):
            raise NotRetryable(f"trainer returned {type(result).__name__}, not TrainingResult")
        check_reported_data(context.config, result)
        version = await register_result(registry, job_id, model, result)
    except TrainingTimedOut as exc:
        return Outcome("timed_out", {"error": str(exc)})
    except Exception as exc:
        if not isinstance(exc, TrainingFailed | NotRetryable):
            logger.exception("training job %s: trainer raised", job_id)
        message = str(exc) or type(exc).__name__
        retry = not isinstance(exc, NotRetryable) and attempt < job["max_attempts"]
        return Outcome("retry" if retry else "failed", {"error": message})
    return Outcome(
        "succeeded",
        {
            "model_uri": result.model_uri,
            "run_id": result.run_id,
            "metrics": json.dumps(result.metrics),
            "version": version,
        },
    )
