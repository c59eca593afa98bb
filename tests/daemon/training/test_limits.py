"""Trainer resource limits with real trainer subprocesses (setrlimit; systemd when present)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from mlwarden.errors import ConfigError
from mlwarden.plugins.trainers.limits import (
    ResourceLimits,
    limit_reason,
    systemd_scope_usable,
    wrap_for_limits,
)

from .test_jobs import FAKE, command_model, listen, wait_for, wait_state

PY = sys.executable


async def test_a_job_past_its_memory_limit_fails_is_retried_and_others_are_unaffected(
    make_warden, make_client, tmp_path
):
    hog = command_model("hog", [PY, str(FAKE / "hog.py"), "memory", "3000"])
    hog += "memory_limit_mb = 400\n"
    light = (
        '[[models]]\nname = "light"\n[models.trainer]\nplugin = "python"\n'
        'function = "light:report"\n'
        f"pythonpath = [{json.dumps(str(FAKE))}]\n"
        'kwargs = { model_uri = "models:/m-none" }\n'
    )
    w = await make_warden(
        "[training]\nmax_concurrent_jobs = 2\nmax_retries = 1\nretry_backoff_seconds = 0.1\n"
        "min_training_data_points = 0\n" + hog + light
    )
    events = listen(w)
    hog_job = await w.jobs.submit("hog", reason="limit test")
    light_job = await w.jobs.submit("light", reason="neighbour")
    done = await wait_state(w.jobs, hog_job["id"], ("failed", "succeeded"), 60)
    assert done["state"] == "failed", done
    assert done["error"].startswith("memory limit:"), done["error"]
    assert "400 MiB" in done["error"]
    assert done["attempt"] == 2  # retried per policy (max_retries = 1)
    assert "MemoryError" in done["log_tail"] and "allocated" not in done["log_tail"]
    # The neighbour fails too (its model URI does not exist), possibly first: pick hog's.
    failed = await wait_for(
        lambda: asyncio.sleep(0, [e for e in events.kinds("training_failed") if e.model == "hog"]),
        5,
    )
    assert failed[0].data["error"].startswith("memory limit:")
    # The neighbour ran without a limit: its trainer got as far as registering.
    other = await wait_state(w.jobs, light_job["id"], ("failed", "succeeded"), 60)
    assert "limit" not in (other["error"] or "")
    assert "training light in job" in other["log_tail"]
    # The daemon itself is fine.
    assert (await w.jobs.health())["status"] == "ok"


async def test_a_job_past_its_cpu_time_limit_fails_with_the_reason(make_warden):
    hog = command_model("spinner", [PY, str(FAKE / "hog.py"), "cpu", "30"])
    w = await make_warden(
        "[training]\nmax_retries = 0\nmin_training_data_points = 0\ncpu_limit_seconds = 1\n" + hog
    )
    job = await w.jobs.submit("spinner", reason="cpu test")
    done = await wait_state(w.jobs, job["id"], ("failed", "succeeded"), 60)
    assert done["state"] == "failed"
    assert done["error"].startswith("cpu limit:"), done["error"]
    assert "spun" not in done["log_tail"]


def test_limit_keys_are_checked_in_the_config(make_config):
    with pytest.raises(ConfigError) as caught:
        make_config(
            "[training]\nmemory_limit_mb = -1\n"
            + command_model("m", ["true"])
            + 'cpu_quota_percent = "lots"\n'
        )
    problems = str(caught.value)
    assert "training.memory_limit_mb" in problems
    assert "models[0].trainer.cpu_quota_percent" in problems


def test_a_model_s_trainer_limits_override_the_training_defaults(make_config):
    from mlwarden.daemon.training.steps import trainer_limits

    config = make_config(
        "[training]\nmemory_limit_mb = 100\ncpu_limit_seconds = 60\n"
        + command_model("m", ["true"])
        + "memory_limit_mb = 250\n"
    )
    assert trainer_limits(config, "m") == ResourceLimits(250.0, 60.0, 0.0)


async def test_systemd_scope_needs_a_unit_environment_and_a_working_systemd_run(tmp_path):
    run_dir = tmp_path / "run-systemd"
    run_dir.mkdir()
    calls = tmp_path / "calls"
    fake = tmp_path / "systemd-run"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    fake.chmod(0o755)
    broken = tmp_path / "broken-systemd-run"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    plain = await systemd_scope_usable({}, run_dir=run_dir, systemd_run=str(fake))
    assert plain is None  # not a systemd unit
    unit_env = {"INVOCATION_ID": "abc"}
    assert (
        await systemd_scope_usable(unit_env, run_dir=tmp_path / "no", systemd_run=str(fake)) is None
    )
    prefix = await systemd_scope_usable(unit_env, run_dir=run_dir, systemd_run=str(fake))
    assert prefix is not None and prefix[0] == str(fake) and "--scope" in prefix
    assert "MemoryMax=infinity" in calls.read_text()  # the trial scope ran
    assert (
        await systemd_scope_usable(
            {"NOTIFY_SOCKET": "/run/x"}, run_dir=run_dir, systemd_run=str(broken)
        )
        is None
    )


def test_limits_become_scope_properties_under_systemd_and_rlimits_elsewhere():
    limits = ResourceLimits(memory_limit_mb=512, cpu_limit_seconds=10, cpu_quota_percent=50)
    argv, preexec = wrap_for_limits(["train"], limits, ["systemd-run", "--scope"], "u1")
    assert argv[:3] == ["systemd-run", "--scope", "--unit=u1"]
    assert f"MemoryMax={512 * 1024 * 1024}" in argv and "CPUQuota=50%" in argv
    assert argv[-2:] == ["--", "train"]
    assert preexec is not None  # the CPU time stays an rlimit
    argv, preexec = wrap_for_limits(["train"], limits, None, "u1")
    assert argv == ["train"] and preexec is not None
    assert wrap_for_limits(["train"], ResourceLimits(), None, "u1") == (["train"], None)


def test_limit_reason_reads_the_exit_and_the_log():
    mem = ResourceLimits(memory_limit_mb=100)
    cpu = ResourceLimits(cpu_limit_seconds=5)
    assert limit_reason(1, mem, scoped=False, log_text="...\nMemoryError\n") == "memory limit"
    assert limit_reason(1, mem, scoped=False, log_text="ValueError: boom") is None
    assert limit_reason(-signal.SIGKILL, mem, scoped=True, log_text="") == "memory limit"
    assert limit_reason(3, mem, scoped=True, log_text="MemoryError") is None
    assert limit_reason(-signal.SIGXCPU, cpu, scoped=False, log_text="") == "cpu limit"
    assert limit_reason(-signal.SIGXCPU, mem, scoped=False, log_text="") is None
    assert limit_reason(0, mem, scoped=False, log_text="MemoryError") is None
