"""The training job's records: their types match the table."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mlwarden.daemon.training.queue import new_job
from mlwarden.daemon.training.records import STATES, JobColumns, JobRecord, job_record, jobs_table
from mlwarden.daemon.training.scheduler import TriggerState, trigger_state


def columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_the_record_types_name_every_column():
    assert set(JobColumns.__annotations__) == set(columns(jobs_table))
    shown = set(columns(jobs_table)) - {"owner_pid"} | {"duration_seconds"}
    assert set(JobRecord.__annotations__) == shown
    assert set(TriggerState.__annotations__) == set(columns(trigger_state))
    assert STATES == ("queued", "running", "succeeded", "failed", "timed_out", "cancelled",
                      "interrupted")  # fmt: skip


def test_a_queued_job_reads_back_as_its_record():
    engine = sa.create_engine("sqlite://")
    values = new_job("j1", model="m", reason="drift", trigger="drift", attempt=0,
                     max_attempts=3, now=10.0, jobs_dir=Path("/jobs"))  # fmt: skip
    with engine.begin() as conn:
        jobs_table.create(conn)
        conn.execute(jobs_table.insert(), values)
        conn.execute(jobs_table.update().values(started_at=11.0, finished_at=14.5,
                                                metrics='{"mse": 0.5}'))  # fmt: skip
        row = conn.execute(sa.select(jobs_table)).mappings().one()
    job = job_record(row)
    assert list(job) == [
        "id", "model", "state", "reason", "trigger", "attempt", "max_attempts",
        "created_at", "updated_at", "not_before", "started_at", "finished_at",
        "duration_seconds", "requeued_from", "requeued_as", "model_uri", "run_id",
        "metrics", "version", "error", "log_path", "log_tail",
    ]  # fmt: skip
    assert job["duration_seconds"] == 3.5 and job["metrics"] == {"mse": 0.5}
    assert job["log_path"] == "/jobs/j1/train.log" and job["log_tail"] == ""
