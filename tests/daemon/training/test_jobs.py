"""The training job queue with real trainer subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from mlwarden import hookimpl

FAKE = Path(__file__).resolve().parents[2] / "fake_trainers"
REPO = Path(__file__).resolve().parents[3]
PY = sys.executable


class EventLog:
    """A plugin that keeps every event it hears."""

    def __init__(self) -> None:
        self.events: list = []

    @hookimpl
    def mlwarden_event(self, event) -> None:
        self.events.append(event)

    def kinds(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]


def listen(warden) -> EventLog:
    log = EventLog()
    warden.pm.register(log, name="test-event-log")
    return log


def command_model(name: str, argv: list[str]) -> str:
    return (
        f'[[models]]\nname = "{name}"\n[models.trainer]\nplugin = "command"\n'
        f"command = {json.dumps(argv)}\n"
    )


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def wait_state(jobs, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict:
    async def done():
        job = await jobs.get(job_id)
        return job if job["state"] in states else None

    return await wait_for(done, timeout)


def process_dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.both_backends
async def test_five_jobs_with_a_limit_of_two_never_run_more_than_two(make_warden, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    models = "".join(
        command_model(f"m{i}", [PY, str(FAKE / "record.py"), str(records), "0.5"]) for i in range(5)
    )
    w = await make_warden(
        "[training]\nmax_concurrent_jobs = 2\nmax_retries = 0\nmin_training_data_points = 0\n"
        + models
    )
    jobs = w.jobs
    submitted = [await jobs.submit(f"m{i}", reason="test") for i in range(5)]
    for job in submitted:
        await wait_state(jobs, job["id"], ("succeeded", "failed"))
    spans = [json.loads(p.read_text()) for p in records.glob("*.json")]
    assert len(spans) == 5
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak == 2  # the limit is reached, never exceeded


async def test_timeout_kills_the_child_and_its_grandchild(make_warden, tmp_path):
    pid_file = tmp_path / "pids"
    w = await make_warden(
        "[training]\njob_timeout_hours = 0.0005\nkill_grace_seconds = 1.0\nmax_retries = 2\n"
        "min_training_data_points = 0\n"
        + command_model("sleepy", [PY, str(FAKE / "sleep_tree.py"), str(pid_file)])
    )
    events = listen(w)
    jobs = w.jobs
    job = await jobs.submit("sleepy", reason="timeout test")
    await wait_for(lambda: asyncio.sleep(0, pid_file.exists()), 30)
    child, grandchild = map(int, pid_file.read_text().split())
    assert not process_dead(child) and not process_dead(grandchild)
    done = await wait_state(jobs, job["id"], ("timed_out", "failed"), 30)
    assert done["state"] == "timed_out"
    assert done["attempt"] == 1  # a timeout is not retried
    assert "training forever" in done["log_tail"]
    await wait_for(lambda: asyncio.sleep(0, process_dead(child) and process_dead(grandchild)), 5)
    failed = await wait_for(lambda: asyncio.sleep(0, events.kinds("training_failed")), 5)
    assert len(failed) == 1 and failed[0].data["state"] == "timed_out"


async def test_failing_trainer_is_retried_then_fails_with_its_log_tail(make_warden, tmp_path):
    attempts = tmp_path / "attempts"
    w = await make_warden(
        "[training]\nmax_retries = 2\nretry_backoff_seconds = 0.1\nmin_training_data_points = 0\n"
        + command_model("broken", [PY, str(FAKE / "failing.py"), str(attempts)])
    )
    events = listen(w)
    jobs = w.jobs
    job = await jobs.submit("broken", reason="retry test")
    done = await wait_state(jobs, job["id"], ("failed",), 60)
    assert attempts.read_text().split() == ["1", "2", "3"]
    assert done["attempt"] == 3
    assert "exited with code 3" in done["error"]
    assert "ValueError: boom" in done["log_tail"]
    assert "=== mlwarden: attempt 3" in done["log_tail"]
    failed = await wait_for(lambda: asyncio.sleep(0, events.kinds("training_failed")), 5)
    assert len(failed) == 1
    assert failed[0].severity == "critical"
    assert "ValueError: boom" in failed[0].data["log_tail"]
    assert len(events.kinds("training_started")) == 3
    metric = w.metrics.registry.get_sample_value
    assert metric("mlwarden_training_jobs_total", {"outcome": "failed"}) == 1
    assert metric("mlwarden_training_jobs_current", {"state": "failed"}) == 1
    assert metric("mlwarden_training_jobs_current", {"state": "queued"}) == 0
    assert metric("mlwarden_training_job_duration_seconds_count", {}) == 3


@pytest.mark.both_backends
async def test_one_active_job_per_model_and_cancel_kills_the_running_one(make_warden, tmp_path):
    pid_file = tmp_path / "pids"
    w = await make_warden(
        "[training]\nmin_training_data_points = 0\n"
        + command_model("sleepy", [PY, str(FAKE / "sleep_tree.py"), str(pid_file)])
    )
    jobs = w.jobs
    first = await jobs.submit("sleepy", reason="one")
    second = await jobs.submit("sleepy", reason="two")
    assert second["id"] == first["id"]
    await wait_for(lambda: asyncio.sleep(0, pid_file.exists()), 30)
    child, grandchild = map(int, pid_file.read_text().split())
    cancelled = await jobs.cancel(first["id"])
    assert cancelled["state"] == "cancelled"
    assert process_dead(child)
    await wait_for(lambda: asyncio.sleep(0, process_dead(grandchild)), 15)
    third = await jobs.submit("sleepy", reason="three")
    # Queued, or already taken by the runner (which the submit wakes).
    assert third["id"] != first["id"] and third["state"] in ("queued", "running")


async def test_min_training_data_points_uses_ingest_count(make_warden, tmp_path):
    w = await make_warden(
        "[training]\nmin_training_data_points = 5\nmax_retries = 2\n"
        + command_model("thin", [PY, "-c", "raise SystemExit(0)"])
    )
    if "ingest" not in w.services:
        pytest.skip("the ingest service has not landed")
    jobs = w.jobs
    job = await jobs.submit("thin", reason="no data")
    done = await wait_state(jobs, job["id"], ("failed",), 30)
    assert "0 recorded predictions" in done["error"]
    assert "min_training_data_points is 5" in done["error"]
    assert done["attempt"] == 1  # not retried: more attempts cannot make data


async def test_successful_job_registers_a_version_in_validation(make_warden, monkeypatch):
    trainer = f'plugin = "command"\ncommand = {json.dumps([PY, str(FAKE / "sklearn_model.py")])}\n'
    w = await make_warden(
        "[training]\nmin_training_data_points = 0\nmax_retries = 0\n"
        f'[[models]]\nname = "tiny"\n[models.trainer]\n{trainer}'
    )
    # MLflow's registry store resolves a `models:/m-…` source through the *global*
    # tracking URI, which the daemon does not set yet (reported; daemon/core/tracking.py).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", w.config.tracking_uri)
    events = listen(w)
    jobs = w.jobs
    job = await jobs.submit("tiny", reason="success test")
    done = await wait_state(jobs, job["id"], ("succeeded", "failed"), 280)
    assert done["state"] == "succeeded", (done["error"], done["log_tail"])
    assert done["model_uri"].startswith("models:/m-")
    assert done["metrics"]["mse"] < 0.05
    record = await w.registry.get("tiny", done["version"])
    assert record["status"] == "validation"
    assert record["lineage"]["training_job"] == job["id"]
    succeeded = await wait_for(lambda: asyncio.sleep(0, events.kinds("training_succeeded")), 5)
    assert succeeded[0].data["version"] == done["version"]


async def test_python_trainer_calls_the_function_in_a_child(make_warden):
    models = "".join(
        f'[[models]]\nname = "{name}"\n[models.trainer]\nplugin = "python"\n'
        f'function = "tests.fake_trainers.light:{func}"\n'
        f"pythonpath = [{json.dumps(str(REPO))}]\n{extra}"
        for name, func, extra in [
            ("reporter", "report", 'kwargs = { model_uri = "m-0000doesnotexist" }\n'),
            ("exploder", "explode", ""),
        ]
    )
    w = await make_warden("[training]\nmin_training_data_points = 0\nmax_retries = 0\n" + models)
    jobs = w.jobs
    reported = await jobs.submit("reporter", reason="python trainer")
    exploded = await jobs.submit("exploder", reason="python trainer")
    done = await wait_state(jobs, reported["id"], ("succeeded", "failed"), 60)
    # The function ran in the child, its dict reached the daemon and the registry, which
    # refused the made-up model: the job fails and its error names the URI.
    assert done["model_uri"] is None and "m-0000doesnotexist" in done["error"]
    assert f"training reporter in job {reported['id']}" in done["log_tail"]
    done = await wait_state(jobs, exploded["id"], ("failed",), 60)
    assert "RuntimeError: explode: no data today" in done["log_tail"]
    assert "exited with code 1" in done["error"]


def test_kill_9_during_a_job_interrupts_and_requeues_it_once(daemon_factory, tmp_path):
    pid_file = tmp_path / "pids"
    config = "[training]\nmin_training_data_points = 0\n" + command_model(
        "sleepy", [PY, str(FAKE / "sleep_tree.py"), str(pid_file)]
    )
    d = daemon_factory(config).start()
    status, job = d.call("POST", "/api/models/sleepy/retrain", {"reason": "crash test"})
    assert status == 202, job
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    child, grandchild = map(int, pid_file.read_text().split())
    pid_file.unlink()
    d.kill()
    assert not process_dead(child)  # an orphan now: the restart must deal with it
    d.start()
    status, body = d.call("GET", "/api/jobs?model=sleepy")
    assert status == 200
    by_id = {j["id"]: j for j in body["jobs"]}
    assert len(by_id) == 2, body
    old = by_id[job["id"]]
    assert old["state"] == "interrupted"
    new = by_id[old["requeued_as"]]
    assert new["requeued_from"] == job["id"]
    assert new["state"] in ("queued", "running")
    # The orphaned trainer was killed before the job was requeued: never two at once.
    assert process_dead(child) and process_dead(grandchild)
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.05)
    status, body = d.call("GET", "/api/jobs?model=sleepy&state=running")
    assert [j["id"] for j in body["jobs"]] == [new["id"]]
    status, cancelled = d.call("POST", f"/api/jobs/{new['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"
    assert d.stop() == 0


@pytest.mark.both_backends
async def test_graceful_stop_interrupts_and_requeues(make_config, tmp_path):
    from mlwarden.daemon.warden import Warden

    pid_file = tmp_path / "pids"
    config = make_config(
        "[training]\nmin_training_data_points = 0\nkill_grace_seconds = 1\n"
        + command_model("sleepy", [PY, str(FAKE / "sleep_tree.py"), str(pid_file)])
    )
    w = Warden(config)
    await w.start()
    job = await w.jobs.submit("sleepy", reason="stop test")
    await wait_for(lambda: asyncio.sleep(0, pid_file.exists()), 30)
    child, grandchild = map(int, pid_file.read_text().split())
    await w.stop()
    assert process_dead(child)
    await wait_for(lambda: asyncio.sleep(0, process_dead(grandchild)), 5)
    w2 = Warden(config)
    await w2.start()
    try:
        old = await w2.jobs.get(job["id"])
        assert old["state"] == "interrupted" and old["requeued_as"]
        new = await w2.jobs.get(old["requeued_as"])
        assert new["state"] in ("queued", "running")
        assert len(await w2.jobs.list(model="sleepy")) == 2
    finally:
        await w2.stop()
    assert os.path.exists(config.base_path / "jobs" / job["id"] / "train.log")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite: one daemon
async def test_a_second_warden_on_the_same_base_path_runs_no_jobs(make_config, tmp_path):
    from mlwarden.daemon.warden import Warden

    records = tmp_path / "records"
    records.mkdir()
    config = make_config(
        "[training]\nmin_training_data_points = 0\nmax_retries = 0\n"
        + command_model("m", [PY, str(FAKE / "record.py"), str(records), "0.1"])
    )
    async with Warden(config) as first, Warden(config) as second:
        health = await second.jobs.health()
        assert health["status"] == "degraded" and "runner.lock" in health["standby"]
        job = await second.jobs.submit("m", reason="queued by the standby")
        done = await wait_state(first.jobs, job["id"], ("succeeded", "failed"), 60)
        assert done["state"] == "failed"  # record.py writes no output file
        assert len(list(records.glob("*.json"))) == 1  # ran once, by the lock holder
        assert second.jobs._running == {}


@pytest.mark.both_backends
async def test_a_job_cancelled_before_its_task_first_ran_ends_cancelled(make_config, monkeypatch):
    """The runner starts a job (row ``running``, task created) while a cancel is looking
    the job up: the cancel reaches the task before its first step, so the task's own
    cleanup never runs; the job must still end ``cancelled``, not stay ``running``."""
    from mlwarden.daemon.training.queue import take_runner_lock
    from mlwarden.daemon.warden import Warden

    config = make_config(
        "[training]\nmin_training_data_points = 0\n"
        + command_model("m", [PY, "-c", "raise SystemExit(1)"])
    )
    jobs_dir = config.base_path / "jobs"
    jobs_dir.mkdir(parents=True)
    lock = take_runner_lock(jobs_dir / "runner.lock")  # this Warden stands by: no runner
    try:
        async with Warden(config) as w:
            job = await w.jobs.submit("m", reason="cancelled at once")
            running = {"state": "running", "attempt": 1, "started_at": w.clock()}
            assert await w.jobs._update(job["id"], running, expect="queued")
            look_up = w.jobs.get

            async def get_while_the_runner_starts_it(job_id: str):
                record = await look_up(job_id)
                monkeypatch.undo()  # once: the lookup of the cancel
                w.jobs._running[job_id] = w.spawn(w.jobs._run(job_id), name="job")  # dispatch
                return record

            monkeypatch.setattr(w.jobs, "get", get_while_the_runner_starts_it)
            cancelled = await w.jobs.cancel(job["id"])
            assert cancelled["state"] == "cancelled"
            assert w.jobs._running == {}
    finally:
        lock.close()
