"""The training job queue: persisted jobs, a bounded runner, retries, restarts.

A job is one request to retrain a model (from the API, the scheduler or a trigger).
At most one job per model is queued or running (the table enforces it); at most
``training.max_concurrent_jobs`` run at once; each attempt runs the model's trainer
plugin with a timeout of ``training.job_timeout_hours`` that kills the trainer's whole
process tree. A failed attempt is retried ``training.max_retries`` times with
exponential backoff (``retry_backoff_seconds * 2**(attempt-1)``). A job that was
running when the daemon stopped or died is marked ``interrupted`` and, when
``training.requeue_interrupted`` holds, requeued as a new job linked to it. A
successful job's model is registered through the registry service and enters
validation. Only the daemon holding ``<base>/jobs/runner.lock`` runs jobs, so two
daemons on one base path never run a job twice.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from ...errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from ..core.cluster import JOBS_WORK
from ..core.config import Config
from ..core.context import Context
from ..core.leases import Lease, holding
from ..core.service import Service
from ..core.store import Schema, create_tables
from ..ingest.interfaces import PredictionCounter
from ..registry.interfaces import VersionRecord, VersionRegistrar
from .attempt import run_attempt
from .queue import (
    active_job,
    fetch_job,
    interrupt_job,
    list_jobs,
    new_job,
    queued_jobs,
    running_jobs,
    state_counts,
    take_runner_lock,
    update_job,
)
from .records import (
    STATES,
    TERMINAL_STATES,
    JobColumns,
    JobRecord,
    JobState,
    job_record,
    jobs_table,
    kill_job_processes,
    log_tail,
)
from .steps import (
    make_trainer,
    outcome_event,
    settle_versions,
)

__all__ = ["JobService"]

logger = logging.getLogger(__name__)

#: How often the runner looks at the queue when nothing wakes it.
POLL_SECONDS = 2.0


class JobService(Service):
    """Owns the training job queue and the tasks that run it."""

    name = "jobs"
    schema = Schema("jobs", [create_tables(jobs_table)])

    def __init__(
        self, context: Context, *, predictions: PredictionCounter, registry: VersionRegistrar
    ) -> None:
        super().__init__(context)
        self.predictions = predictions
        self.registry = registry
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._wake = asyncio.Event()
        self._submit_lock = asyncio.Lock()
        #: Held while a version is registered for a running job and while the job
        #: ends, so a version is never left ``training`` behind a finished job.
        self._job_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self._lock_file: IO[str] | None = None
        self._stopping = False
        self.jobs_dir = Path(context.config.base_path) / "jobs"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._check_trainers(self.context.config)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._stopping = False
        self._lease: Lease | None = None
        if self._take_runner_lock():
            await self._runner_lease()
        await self._refresh_gauge()
        self.context.spawn(self._runner(), name="jobs-runner")

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    async def reload(self, config: Config) -> None:
        self._check_trainers(config)
        self._wake.set()

    async def health(self) -> dict[str, Any]:
        counts = await state_counts(self.context.store)
        status = "ok" if self._lock_file is not None else "degraded"
        out: dict[str, Any] = {"status": status, "jobs": counts, "running": sorted(self._running)}
        if self._lock_file is None:
            out["standby"] = (
                f"another mlwarden process holds {self.jobs_dir / 'runner.lock'}; "
                "this one queues jobs but does not run them"
            )
        return out

    def _check_trainers(self, config: Config) -> None:
        for model in config.models:
            if model.trainer:
                make_trainer(self.context.plugins, model.name, model.trainer)

    def _take_runner_lock(self) -> bool:
        if self._lock_file is None:
            self._lock_file = take_runner_lock(self.jobs_dir / "runner.lock")
        return self._lock_file is not None

    async def _runner_lease(self) -> Lease | None:
        """The cluster's runner lease, taken or renewed; taking it (at start, or over
        from a daemon that died) recovers the jobs that were left running."""
        held, lease = self._lease, await self.context.cluster.singleton(JOBS_WORK)
        self._lease = lease
        if lease is not None and lease != held:
            with holding(lease):
                await self._recover()
        return lease

    async def _recover(self) -> None:
        """Jobs left ``running`` by a daemon that died: kill leftovers, interrupt, requeue."""
        for row in await running_jobs(self.context.store):
            killed = await asyncio.to_thread(kill_job_processes, row["id"])
            why = f"the daemon (pid {row['owner_pid']}) stopped while the job was running"
            if killed:
                why += f"; killed leftover process group(s) {killed}"
            await self._interrupt(job_record(row), why)

    # -- public API ----------------------------------------------------------------------

    async def submit(self, model: str, *, reason: str, trigger: str = "manual") -> JobRecord:
        """Queue a training job for ``model``, or return the one already queued or running."""
        job, _created = await self.submit_job(model, reason=reason, trigger=trigger)
        return job

    async def submit_job(
        self, model: str, *, reason: str, trigger: str = "manual"
    ) -> tuple[JobRecord, bool]:
        """As ``submit``, also saying whether a new job was created."""
        config = self.context.config.model(model)
        if config is None:
            raise NotFound(f"model {model!r} is not configured (no [[models]] entry)")
        if not config.trainer:
            raise Conflict(f"model {model!r} has no trainer configured ([models.trainer])")
        async with self._submit_lock:
            existing = await active_job(self.context.store, model)
            if existing is not None:
                return existing, False
            now = self.context.clock()
            job_id = uuid.uuid4().hex
            values = new_job(
                job_id,
                model=model,
                reason=reason,
                trigger=trigger,
                attempt=0,
                max_attempts=self.context.config.training.max_retries + 1,
                now=now,
                jobs_dir=self.jobs_dir,
            )
            try:
                async with self.context.store.begin() as conn:
                    await conn.execute(jobs_table.insert(), values)
            except sa.exc.IntegrityError:
                # Another process queued one between our check and insert.
                existing = await active_job(self.context.store, model)
                if existing is not None:
                    return existing, False
                raise
        logger.info("queued training job %s for %s (%s: %s)", job_id, model, trigger, reason)
        await self._refresh_gauge()
        self._wake.set()
        return await self.get(job_id), True

    async def get(self, job_id: str) -> JobRecord:
        """One job; NotFound if there is none with this id."""
        return await fetch_job(self.context.store, job_id)

    async def list(
        self, *, model: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally of one model and/or in one state."""
        if state is not None and state not in STATES:
            raise InvalidInput(f"state must be one of {', '.join(STATES)}, got {state!r}")
        return await list_jobs(self.context.store, model=model, state=state, limit=limit)

    async def cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued or running job (a running one's process tree is killed)."""
        job = await self.get(job_id)
        if job["state"] in TERMINAL_STATES:
            raise Conflict(f"training job {job_id} is already {job['state']}")
        task = self._running.get(job_id)
        if task is not None:
            self._cancel_requested.add(job_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self._running.get(job_id) is task:
                # Cancelled before its first step: _run never ran, so nothing recorded it.
                try:
                    await self._cancelled(job_id, time.monotonic())
                finally:
                    self._running.pop(job_id, None)
                    self._cancel_requested.discard(job_id)
            return await self.get(job_id)
        updated = await self._update(
            job_id,
            {"state": "cancelled", "finished_at": self.context.clock(), "error": "cancelled"},
            expect="queued",
        )
        if not updated:  # it started meanwhile
            return await self.cancel(job_id)
        self.context.metrics.training_jobs_total.labels("cancelled").inc()
        await self._refresh_gauge()
        return await self.get(job_id)

    async def register_version(self, model: str, body: dict[str, Any]) -> VersionRecord:
        """Register a version (``POST .../versions``); ``training`` while the job named
        by its ``lineage.training_job`` runs for this model, else ``validation``."""
        lineage = body.get("lineage")
        job_id = lineage.get("training_job") if isinstance(lineage, dict) else None
        if not isinstance(job_id, str) or not job_id:
            return await self.registry.register_body(model, body)
        async with self._job_locks[job_id]:
            try:
                job = await self.get(job_id)
            except NotFound:
                job = None
            running = job is not None and job["state"] == "running" and job["model"] == model
            status = "training" if running else "validation"
            return await self.registry.register_body(model, body, status=status)

    # -- the runner ----------------------------------------------------------------------

    async def _runner(self) -> None:
        while not self._stopping:
            timeout = POLL_SECONDS
            try:
                timeout = await self._dispatch()
            except Exception as exc:
                self.context.failed(logger, exc, "training jobs", "training job runner failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _dispatch(self) -> float:
        """Start queued jobs that are due, up to the limit; return seconds until next look."""
        if self._lock_file is None:
            if not self._take_runner_lock():
                return POLL_SECONDS
            logger.info("took over the training job runner lock")
            self._lease = None  # recover under the lease, taken below
        lease = await self._runner_lease()
        if lease is None:  # another daemon of the cluster runs the queue
            return POLL_SECONDS
        with holding(lease):
            return await self._start_due()

    async def _start_due(self) -> float:
        """Claim the queued jobs that are due, up to the limit, and start them."""
        slots = self.context.config.training.max_concurrent_jobs - len(self._running)
        now = self.context.clock()
        wait = POLL_SECONDS
        for row in await queued_jobs(self.context.store):
            if row["not_before"] > now:
                wait = min(wait, row["not_before"] - now)
                continue
            if slots <= 0 or self._stopping:
                break
            attempt = row["attempt"] + 1
            started = await self._update(
                row["id"],
                {
                    "state": "running",
                    "attempt": attempt,
                    "started_at": now,
                    "finished_at": None,
                    "owner_pid": os.getpid(),
                },
                expect="queued",
            )
            if not started:
                continue
            slots -= 1
            task = self.context.spawn(self._run(row["id"]), name=f"training-job-{row['id']}")
            self._running[row["id"]] = task
        await self._refresh_gauge()
        return max(wait, 0.01)

    async def _run(self, job_id: str) -> None:
        begun = time.monotonic()
        try:
            await self._attempt(job_id, begun)
        except asyncio.CancelledError:
            # Cancelled by an operator or by the daemon stopping, at whatever point.
            await self._cancelled(job_id, begun)
        finally:
            self._running.pop(job_id, None)
            self._cancel_requested.discard(job_id)
            self._wake.set()

    async def _attempt(self, job_id: str, begun: float) -> None:
        job = await self.get(job_id)
        outcome = await run_attempt(
            self.context, self.predictions, self.registry, job, self.jobs_dir / job_id
        )
        if outcome.state == "retry":
            await self._retry(job_id, job["attempt"], begun, str(outcome.values["error"]))
        else:
            await self._finish(job_id, outcome.state, begun, outcome.values)

    # -- state changes -------------------------------------------------------------------

    async def _update(self, job_id: str, values: JobColumns, *, expect: JobState) -> bool:
        return await update_job(
            self.context.store, job_id, values, expect=expect, now=self.context.clock()
        )

    async def _tail(self, job_id: str) -> str:
        path = self.jobs_dir / job_id / "train.log"
        return await asyncio.to_thread(log_tail, path, self.context.config.training.log_tail_lines)

    async def _finish(self, job_id: str, state: JobState, begun: float, values: JobColumns) -> None:
        """End a running job in ``state`` with ``values`` (its result, or its error)."""
        now = self.context.clock()
        tail = await self._tail(job_id)
        async with self._job_locks[job_id]:
            # Its versions move on first: whoever sees the job ended sees them settled.
            job = await self.get(job_id)
            if job["state"] == "running":
                await settle_versions(self.registry, job, state)
            updated = await self._update(
                job_id,
                {"state": state, "finished_at": now, "log_tail": tail, **values},
                expect="running",
            )
        self._job_locks.pop(job_id, None)
        if not updated:  # already ended elsewhere (a cancel raced a finish)
            return
        self.context.metrics.training_jobs_total.labels(state).inc()
        self.context.metrics.training_job_duration.observe(time.monotonic() - begun)
        await self._refresh_gauge()
        job = await self.get(job_id)
        event = outcome_event(job, state, tail)
        await self.context.audit.record(
            actor="mlwarden",
            action=f"training job {state}",
            target=f"model={job['model']},job={job_id}",
            outcome=state,
            detail={k: v for k, v in event.data.items() if k != "log_tail"},
        )
        await self.context.emit(event)

    async def _retry(self, job_id: str, attempt: int, begun: float, error: str) -> None:
        training = self.context.config.training
        delay = training.retry_backoff_seconds * 2 ** (attempt - 1)
        tail = await self._tail(job_id)
        await self._update(
            job_id,
            {
                "state": "queued",
                "not_before": self.context.clock() + delay,
                "error": error,
                "log_tail": tail,
            },
            expect="running",
        )
        self.context.metrics.training_job_duration.observe(time.monotonic() - begun)
        logger.warning(
            "training job %s attempt %d failed (%s); retrying in %.1fs",
            job_id,
            attempt,
            error,
            delay,
        )
        await self._refresh_gauge()

    async def _cancelled(self, job_id: str, begun: float) -> None:
        if job_id in self._cancel_requested:
            await self._finish(job_id, "cancelled", begun, {"error": "cancelled by an operator"})
            return
        job = await self.get(job_id)
        await self._interrupt(job, "the daemon stopped while the job was running")

    async def _interrupt(self, job: JobRecord, why: str) -> None:
        """Mark a running job interrupted and, by policy, queue its continuation."""
        now = self.context.clock()
        requeue = self.context.config.training.requeue_interrupted
        new_id = uuid.uuid4().hex if requeue else None
        tail = await self._tail(job["id"])
        async with self._job_locks[job["id"]]:
            interrupted = await interrupt_job(
                self.context.store,
                job,
                why=why,
                tail=tail,
                now=now,
                new_id=new_id,
                jobs_dir=self.jobs_dir,
            )
            if interrupted:
                await settle_versions(self.registry, job, "interrupted")
        self._job_locks.pop(job["id"], None)
        if not interrupted:
            return
        self.context.metrics.training_jobs_total.labels("interrupted").inc()
        logger.warning(
            "training job %s interrupted (%s)%s",
            job["id"],
            why,
            f"; requeued as {new_id}" if new_id else "",
        )
        await self.context.audit.record(
            actor="mlwarden",
            action="training job interrupted",
            target=f"model={job['model']},job={job['id']}",
            outcome="interrupted",
            detail={"why": why, "requeued_as": new_id},
        )
        await self._refresh_gauge()

    async def _refresh_gauge(self) -> None:
        for state, count in (await state_counts(self.context.store)).items():
            self.context.metrics.training_jobs.labels(state).set(count)
