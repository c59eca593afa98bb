"""Running a trainer's work as a process tree that a timeout or a cancel kills whole.

Every trainer process starts in a new session, so it leads its own process group and
everything it starts (a shell's children, a data loader's workers) stays in that group
unless it deliberately leaves. Killing the job kills the group: SIGTERM, a grace
period, then SIGKILL. The group is also swept when the trainer exits normally, so no
stray child outlives its job.

``TrainingFailed`` and ``TrainingTimedOut`` are defined in ``mlwarden.errors``; they stay
importable from here for trainers written against earlier releases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import TrainingFailed, TrainingTimedOut
from ...types import TrainingJob, TrainingResult
from .limits import ResourceLimits, limit_reason, systemd_scope_usable, wrap_for_limits

__all__ = [
    "ResourceLimits",
    "TrainingFailed",
    "TrainingTimedOut",
    "job_environment",
    "kill_process_group",
    "read_training_output",
    "run_process_group",
]

logger = logging.getLogger(__name__)


def job_environment(job: TrainingJob, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The trainer's environment: the daemon's, ``extra``, and the job's MLWARDEN_* keys."""
    env = dict(os.environ)
    experiment = job.options.get("experiment")
    if experiment and "MLFLOW_EXPERIMENT_NAME" not in env:
        # The daemon's experiment has its artifact location under the base path.
        env["MLFLOW_EXPERIMENT_NAME"] = str(experiment)
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    env.update(
        {
            "MLFLOW_TRACKING_URI": job.tracking_uri,
            "MLWARDEN_MODEL": job.model,
            "MLWARDEN_JOB_ID": job.id,
            "MLWARDEN_OUTPUT": job.output_path,
            "MLWARDEN_ATTEMPT": str(job.attempt),
            "MLWARDEN_REASON": job.reason,
        }
    )
    return env


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    if pgid == os.getpgrp():  # never our own group
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def kill_process_group(pgid: int, grace_seconds: float) -> None:
    """SIGTERM the group, wait up to ``grace_seconds`` for it to empty, then SIGKILL it."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _group_alive(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # Unconditional: a zombie keeps the group "alive" but SIGKILL is harmless to it.
    _signal_group(pgid, signal.SIGKILL)


async def run_process_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: str,
    timeout_seconds: float,
    kill_grace_seconds: float = 10.0,
    cwd: str | None = None,
    limits: ResourceLimits | None = None,
    unit: str = "",
) -> int:
    """Run ``argv`` in a new session with stdout and stderr appended to ``log_path``.

    Returns the exit code. On timeout the process group is killed and
    TrainingTimedOut raised; on cancellation the group is killed and the cancellation
    propagates. With ``limits`` the tree runs in a systemd scope (named ``unit``) or
    under rlimits (``limits.py``), and a limit's kill raises TrainingFailed whose
    message starts with ``memory limit`` or ``cpu limit``. Never blocks the event loop.
    """
    limits = limits or ResourceLimits()
    scope = await systemd_scope_usable() if limits.any else None
    run_argv, preexec = wrap_for_limits(
        argv, limits, scope, unit or f"mlwarden-trainer-{os.getpid()}-{time.monotonic_ns()}"
    )
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log_start = log.seek(0, os.SEEK_END)
        try:
            proc = await asyncio.create_subprocess_exec(
                *run_argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd or None,
                start_new_session=True,
                preexec_fn=preexec,
            )
        except OSError as exc:
            raise TrainingFailed(f"cannot start trainer command {argv[0]!r}: {exc}") from exc
    pgid = proc.pid
    try:
        async with asyncio.timeout(timeout_seconds):
            code = await proc.wait()
    except TimeoutError:
        await kill_process_group(pgid, kill_grace_seconds)
        await proc.wait()
        raise TrainingTimedOut(
            f"trainer exceeded the job timeout of {timeout_seconds:g}s "
            "(training.job_timeout_hours); its process group was killed"
        ) from None
    except BaseException:
        # Cancelled (job cancel, daemon stop): the tree must not outlive the job.
        try:
            await asyncio.shield(kill_process_group(pgid, kill_grace_seconds))
        finally:
            _signal_group(pgid, signal.SIGKILL)
        raise
    _signal_group(pgid, signal.SIGKILL)  # sweep children left behind by a finished trainer
    if code != 0 and limits.any:
        text = await asyncio.to_thread(_read_from, log_path, log_start)
        reason = limit_reason(code, limits, scoped=scope is not None, log_text=text)
        if reason is not None:
            raise TrainingFailed(_limit_message(reason, code, limits, scoped=scope is not None))
    return code


def _read_from(path: str, offset: int, most: int = 1 << 20) -> str:
    """What the trainer wrote to its log from ``offset`` on (at most its last MiB)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(offset, size - most))
        return fh.read().decode("utf-8", "replace")


def _limit_message(reason: str, code: int, limits: ResourceLimits, *, scoped: bool) -> str:
    how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if reason == "memory limit":
        where = "its systemd scope's MemoryMax" if scoped else "RLIMIT_AS"
        return (
            f"memory limit: the trainer {how} after exceeding its memory limit of "
            f"{limits.memory_limit_mb:g} MiB (memory_limit_mb, enforced as {where})"
        )
    return (
        f"cpu limit: the trainer {how} after using its CPU time limit of "
        f"{limits.cpu_limit_seconds:g} s (cpu_limit_seconds, enforced as RLIMIT_CPU)"
    )


def read_training_output(path: str) -> TrainingResult:
    """Parse the trainer's ``MLWARDEN_OUTPUT`` file; TrainingFailed says what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingFailed(
            f"trainer exited 0 but wrote no output file {path} (MLWARDEN_OUTPUT); expected "
            '{"model_uri": ..., "metrics": {...}}'
        ) from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingFailed(f"trainer output {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TrainingFailed(f"trainer output {path}: expected a JSON object")
    uri = data.get("model_uri")
    if not isinstance(uri, str) or not uri:
        raise TrainingFailed(f"trainer output {path}: 'model_uri' must be a non-empty string")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict):
        raise TrainingFailed(f"trainer output {path}: 'metrics' must be an object")
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise TrainingFailed(
                f"trainer output {path}: metric {key!r} must be a finite number, got {value!r}"
            )
        clean[str(key)] = float(value)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise TrainingFailed(f"trainer output {path}: 'params' must be an object")
    run_id = data.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise TrainingFailed(f"trainer output {path}: 'run_id' must be a string")
    data_points = data.get("data_points")
    if data_points is not None:
        if isinstance(data_points, bool) or not isinstance(data_points, int) or data_points < 0:
            raise TrainingFailed(f"trainer output {path}: 'data_points' must be an integer >= 0")
        params = {**params, "data_points": data_points}
    return TrainingResult(model_uri=uri, metrics=clean, params=params, run_id=run_id)
