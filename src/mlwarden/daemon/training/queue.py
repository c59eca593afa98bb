"""The job queue's rows: reads, guarded state changes, and the runner lock.

These are the store operations of :class:`~mlwarden.daemon.training.jobs.JobService`, kept
free of its in-memory state: every state change names the state it expects the row
to be in, so two writers (an operator's cancel racing the runner's finish, a second
daemon) never both win.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from ..core.leases import fence
from ..core.store import Store
from .records import (
    ACTIVE_STATES,
    STATES,
    JobColumns,
    JobRecord,
    JobState,
    job_record,
    jobs_table,
)

__all__ = [
    "active_job",
    "fetch_job",
    "interrupt_job",
    "list_jobs",
    "new_job",
    "queued_jobs",
    "running_jobs",
    "state_counts",
    "take_runner_lock",
    "update_job",
]


def take_runner_lock(path: Path) -> IO[str] | None:
    """Hold an exclusive flock on ``path`` (writing our pid in it), or None if taken."""
    fh = open(path, "a+")  # noqa: SIM115 (held while running)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def new_job(
    job_id: str,
    *,
    model: str,
    reason: str,
    trigger: str,
    attempt: int,
    max_attempts: int,
    now: float,
    jobs_dir: Path,
    requeued_from: str | None = None,
) -> JobColumns:
    """The row of a newly queued job, due now, logging under ``jobs_dir/<id>``."""
    values: JobColumns = {
        "id": job_id,
        "model": model,
        "state": "queued",
        "reason": reason,
        "trigger": trigger,
        "attempt": attempt,
        "max_attempts": max_attempts,
        "created_at": now,
        "updated_at": now,
        "not_before": now,
        "log_path": str(jobs_dir / job_id / "train.log"),
    }
    if requeued_from is not None:
        values["requeued_from"] = requeued_from
    return values


async def fetch_job(store: Store, job_id: str) -> JobRecord:
    """One job; NotFound if there is none with this id."""
    row = await store.row_by_id(jobs_table, job_id, missing=f"training job {job_id!r} not found")
    return job_record(row._mapping)


async def active_job(store: Store, model: str) -> JobRecord | None:
    """The model's queued or running job, if any (there is at most one)."""
    async with store.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(jobs_table).where(
                        jobs_table.c.model == model, jobs_table.c.state.in_(ACTIVE_STATES)
                    )
                )
            )
            .mappings()
            .first()
        )
    return job_record(row) if row is not None else None


async def list_jobs(
    store: Store, *, model: str | None, state: str | None, limit: int
) -> list[JobRecord]:
    """Jobs, newest first, optionally of one model and/or in one state."""
    query = sa.select(jobs_table).order_by(jobs_table.c.created_at.desc()).limit(limit)
    if model is not None:
        query = query.where(jobs_table.c.model == model)
    if state is not None:
        query = query.where(jobs_table.c.state == state)
    async with store.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [job_record(r) for r in rows]


async def queued_jobs(store: Store) -> list[RowMapping]:
    """The queued rows, oldest first."""
    async with store.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(jobs_table)
                    .where(jobs_table.c.state == "queued")
                    .order_by(jobs_table.c.created_at)
                )
            )
            .mappings()
            .all()
        )


async def running_jobs(store: Store) -> list[RowMapping]:
    """The rows in state ``running``."""
    async with store.connect() as conn:
        return list(
            (await conn.execute(sa.select(jobs_table).where(jobs_table.c.state == "running")))
            .mappings()
            .all()
        )


async def state_counts(store: Store) -> dict[str, int]:
    """The number of jobs in each state (every state present, zero included)."""
    async with store.connect() as conn:
        rows = await conn.execute(
            sa.select(jobs_table.c.state, sa.func.count()).group_by(jobs_table.c.state)
        )
        counts = {state: count for state, count in rows.all()}
    return {state: int(counts.get(state, 0)) for state in STATES}


async def update_job(
    store: Store, job_id: str, values: JobColumns, *, expect: JobState, now: float
) -> bool:
    """Change a job that is in state ``expect``; False if it is not (any more)."""
    changes: JobColumns = {**values, "updated_at": now}
    async with store.begin() as conn:
        await fence(conn)  # the runner's claim: only while it holds the queue's lease
        result = await conn.execute(
            jobs_table.update()
            .where(jobs_table.c.id == job_id, jobs_table.c.state == expect)
            .values(**changes)
        )
    return result.rowcount == 1


async def interrupt_job(
    store: Store,
    job: JobRecord,
    *,
    why: str,
    tail: str,
    now: float,
    new_id: str | None,
    jobs_dir: Path,
) -> bool:
    """Mark a running ``job`` interrupted and queue ``new_id`` continuing it, in one transaction.

    False (and nothing changed) if the job was no longer running.
    """
    async with store.begin() as conn:
        await fence(conn)
        result = await conn.execute(
            jobs_table.update()
            .where(jobs_table.c.id == job["id"], jobs_table.c.state == "running")
            .values(
                state="interrupted",
                finished_at=now,
                updated_at=now,
                error=why,
                log_tail=tail,
                requeued_as=new_id,
            )
        )
        if result.rowcount != 1:
            return False
        if new_id is not None:
            await conn.execute(
                jobs_table.insert(),
                new_job(
                    new_id,
                    model=job["model"],
                    reason=job["reason"],
                    trigger=job["trigger"],
                    attempt=max(job["attempt"] - 1, 0),
                    max_attempts=job["max_attempts"],
                    now=now,
                    jobs_dir=jobs_dir,
                    requeued_from=job["id"],
                ),
            )
    return True
