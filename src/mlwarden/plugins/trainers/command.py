"""The ``command`` trainer: runs a configured argv that trains, logs to MLflow and reports."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...hookspecs import hookimpl
from ...types import TrainingJob, TrainingResult
from .process import (
    ResourceLimits,
    TrainingFailed,
    job_environment,
    read_training_output,
    run_process_group,
)

__all__ = ["CommandTrainer"]

logger = logging.getLogger(__name__)


class CommandTrainer:
    """Run ``command`` (an argv list, no shell) as the job's process tree.

    The command sees ``MLFLOW_TRACKING_URI``, ``MLWARDEN_MODEL``, ``MLWARDEN_JOB_ID``,
    ``MLWARDEN_OUTPUT`` (plus ``MLWARDEN_ATTEMPT`` and ``MLWARDEN_REASON``) in its
    environment, runs within the job's resource limits (``job.options["limits"]``,
    see ``limits.py``), logs its model to MLflow, and writes
    ``{"model_uri": ..., "metrics": {...}}`` to the file named by ``MLWARDEN_OUTPUT``.
    Exit code 0 with a valid output file is success; anything else is a failure whose
    log tail ends up in the job record.

    Parameters
    ----------
    command:
        The argv, e.g. ``["python", "train.py", "--epochs", "3"]``.
    env:
        Extra environment variables for the command.
    cwd:
        Working directory (default: the daemon's).
    """

    name = "command"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {"command": ["python", "train.py"]},
        {"command": ["true"], "env": {"A": "1"}},
    )

    def __init__(
        self,
        *,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str = "",
    ) -> None:
        if isinstance(command, str) or not command:
            raise ValueError("option 'command' must be a non-empty array of strings (an argv)")
        if not all(isinstance(part, str) for part in command):
            raise ValueError("option 'command' must contain only strings")
        if env is not None and (
            not isinstance(env, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise ValueError("option 'env' must map strings to strings")
        if not isinstance(cwd, str) or "\0" in cwd or (cwd and not Path(cwd).is_dir()):
            raise ValueError(f"option 'cwd': {cwd!r} is not a directory")
        self.command = list(command)
        self.env = dict(env or {})
        self.cwd = cwd

    def argv(self, job: TrainingJob) -> list[str]:
        """The argv to run for ``job``."""
        return self.command

    async def train(self, job: TrainingJob) -> TrainingResult:
        """Run the command for ``job``; raise TrainingFailed unless it produced a model."""
        Path(job.output_path).unlink(missing_ok=True)
        code = await run_process_group(
            self.argv(job),
            env=job_environment(job, self.env),
            log_path=job.log_path,
            timeout_seconds=job.timeout_seconds,
            kill_grace_seconds=float(job.options.get("kill_grace_seconds", 10.0)),
            cwd=self.cwd or None,
            limits=ResourceLimits.from_options(job.options.get("limits")),
            unit=f"mlwarden-job-{job.id}-{job.attempt}",
        )
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise TrainingFailed(f"trainer {self.name!r} {how}")
        return read_training_output(job.output_path)


@hookimpl
def mlwarden_trainers() -> list[type]:
    return [CommandTrainer]
