"""The persisted training job: its table, states, record shape, and process bookkeeping.

The table has a partial unique index on ``model`` over the active states, so the
database itself refuses a second queued-or-running job for a model, whoever asks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path
from typing import Literal, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

__all__ = [
    "ACTIVE_STATES",
    "STATES",
    "TERMINAL_STATES",
    "JobColumns",
    "JobRecord",
    "JobState",
    "job_record",
    "jobs_table",
    "kill_job_processes",
    "log_tail",
]

logger = logging.getLogger(__name__)

JobState = Literal[
    "queued", "running", "succeeded", "failed", "timed_out", "cancelled", "interrupted"
]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
TERMINAL_STATES: tuple[JobState, ...] = (
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "interrupted",
)
STATES = ACTIVE_STATES + TERMINAL_STATES

metadata = sa.MetaData()

jobs_table = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(255), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("trigger", sa.String(64), nullable=False, default="manual"),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("owner_pid", sa.Integer),
    sa.Column("requeued_from", sa.String(32)),
    sa.Column("requeued_as", sa.String(32)),
    sa.Column("model_uri", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("metrics", sa.Text),
    sa.Column("version", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("log_path", sa.Text),
    sa.Column("log_tail", sa.Text),
    sa.Index(
        "uq_training_jobs_active_model",
        "model",
        unique=True,
        sqlite_where=sa.text("state IN ('queued', 'running')"),
        postgresql_where=sa.text("state IN ('queued', 'running')"),
    ),
)


class JobColumns(TypedDict, total=False):
    """Column values of a ``training_jobs`` row, to insert or to change (``metrics`` as
    JSON text)."""

    id: str
    model: str
    state: JobState
    reason: str
    trigger: str
    attempt: int
    max_attempts: int
    created_at: float
    updated_at: float
    not_before: float
    started_at: float | None
    finished_at: float | None
    owner_pid: int | None
    requeued_from: str | None
    requeued_as: str | None
    model_uri: str | None
    run_id: str | None
    metrics: str | None
    version: str | None
    error: str | None
    log_path: str | None
    log_tail: str | None


class JobRecord(TypedDict):
    """A training job as the API (``GET /api/jobs/{id}``) and the jobs service show it."""

    id: str
    model: str
    state: JobState
    reason: str
    #: ``manual`` or the name of the trigger that asked for it.
    trigger: str
    attempt: int
    max_attempts: int
    created_at: float
    updated_at: float
    #: When the job may run next (a retry waits out its backoff).
    not_before: float
    started_at: float | None
    finished_at: float | None
    duration_seconds: float | None
    requeued_from: str | None
    requeued_as: str | None
    model_uri: str | None
    run_id: str | None
    metrics: dict[str, float]
    version: str | None
    error: str | None
    log_path: str | None
    log_tail: str


def job_record(row: RowMapping) -> JobRecord:
    """A job as the API and the jobs service return it."""
    started, finished = row["started_at"], row["finished_at"]
    return {
        "id": row["id"],
        "model": row["model"],
        "state": row["state"],
        "reason": row["reason"],
        "trigger": row["trigger"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "not_before": row["not_before"],
        "started_at": started,
        "finished_at": finished,
        "duration_seconds": (finished - started) if started and finished else None,
        "requeued_from": row["requeued_from"],
        "requeued_as": row["requeued_as"],
        "model_uri": row["model_uri"],
        "run_id": row["run_id"],
        "metrics": json.loads(row["metrics"]) if row["metrics"] else {},
        "version": row["version"],
        "error": row["error"],
        "log_path": row["log_path"],
        "log_tail": row["log_tail"] or "",
    }


def log_tail(path: str | os.PathLike[str], lines: int, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file (at most ``max_bytes`` read); "" if none."""
    if lines <= 0:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def kill_job_processes(job_id: str, proc: Path = Path("/proc")) -> list[int]:
    """SIGKILL the process groups of processes still carrying ``MLWARDEN_JOB_ID=job_id``.

    After a crash of the daemon its trainers live on as orphans (they run in their own
    sessions). Before a job is requeued, whatever is left of it is killed, so the job
    never runs twice at once. Processes are recognised by their environment, which is
    fixed at exec, so a reused PID is never mistaken for the trainer. Returns the
    process-group ids signalled (empty where ``/proc`` is not available).
    """
    needle = f"MLWARDEN_JOB_ID={job_id}".encode()
    groups: set[int] = set()
    if not proc.is_dir():
        return []
    own = os.getpgrp()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle not in environ.split(b"\0"):
            continue
        try:
            pgid = os.getpgid(int(entry.name))
        except ProcessLookupError:
            continue
        if pgid != own:
            groups.add(pgid)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        logger.warning("killed process group %d left over from training job %s", pgid, job_id)
    return sorted(groups)
