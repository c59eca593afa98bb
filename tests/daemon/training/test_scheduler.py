"""The scheduler: triggers to jobs, cooldowns, schedules across restarts."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime

import pytest

from mlwarden.daemon.warden import Warden
from mlwarden.errors import PluginError
from mlwarden.types import Event

from .test_jobs import listen, wait_for

PY = sys.executable
SLEEP = [PY, "-c", "import time; time.sleep(30)"]


def model(name: str, extra: str = "") -> str:
    return (
        f'[[models]]\nname = "{name}"\n{extra}'
        f'[models.trainer]\nplugin = "command"\ncommand = {json.dumps(SLEEP)}\n'
    )


def drift_event(name: str, recommendation: str = "RETRAIN_SOON") -> Event:
    return Event(
        kind="drift_detected",
        model=name,
        data={"drift_score": 0.6, "threshold": 0.1, "recommendation": recommendation},
    )


TRAINING = "[training]\nmin_training_data_points = 0\nkill_grace_seconds = 1\n"


async def test_a_storm_of_50_drift_events_makes_one_job(make_warden):
    w = await make_warden(TRAINING + model("btc", 'triggers = ["drift"]\n'))
    events = listen(w)
    await asyncio.gather(*(w.emit(drift_event("btc")) for _ in range(50)))
    jobs = await w.jobs.list(model="btc")
    assert len(jobs) == 1
    assert jobs[0]["trigger"] == "drift" and "RETRAIN_SOON" in jobs[0]["reason"]
    fired = w.metrics.registry.get_sample_value(
        "mlwarden_triggers_fired_total", {"model": "btc", "trigger": "drift"}
    )
    assert fired == 1
    assert len(events.kinds("trigger_fired")) == 1
    await w.jobs.cancel(jobs[0]["id"])


async def test_drift_thresholds_and_other_models(make_warden):
    w = await make_warden(
        TRAINING
        + model(
            "btc",
            'triggers = ["drift"]\n'
            '[models.trigger_options.drift]\nmin_recommendation = "RETRAIN_IMMEDIATELY"\n',
        )
        + model("eth")
    )
    await w.emit(drift_event("btc", "RETRAIN_SOON"))
    await w.emit(drift_event("eth", "RETRAIN_IMMEDIATELY"))  # eth has no drift trigger
    assert await w.jobs.list() == []
    await w.emit(drift_event("btc", "RETRAIN_IMMEDIATELY"))
    (job,) = await w.jobs.list()
    assert job["model"] == "btc"
    await w.jobs.cancel(job["id"])


async def test_performance_trigger_fires_on_degradation(make_warden):
    w = await make_warden(TRAINING + model("btc", 'triggers = ["performance"]\n'))
    await w.emit(Event(kind="drift_detected", model="btc", data={"recommendation": "RETRAIN_SOON"}))
    assert await w.jobs.list() == []
    await w.emit(
        Event(
            kind="performance_degraded",
            model="btc",
            data={"metric": "mse", "value": 0.3, "baseline": 0.1, "threshold": 0.15},
        )
    )
    (job,) = await w.jobs.list()
    assert job["trigger"] == "performance" and "mse" in job["reason"]
    await w.jobs.cancel(job["id"])


async def test_cooldown_survives_a_restart(make_config):
    config = make_config(
        TRAINING
        + model(
            "btc", 'triggers = ["drift"]\n[models.trigger_options.drift]\ncooldown_seconds = 3600\n'
        )
    )
    async with Warden(config) as w:
        await w.emit(drift_event("btc"))
        (job,) = await w.jobs.list()
        await w.jobs.cancel(job["id"])
    async with Warden(config) as w:
        await w.emit(drift_event("btc"))
        assert len(await w.jobs.list()) == 1  # still in cooldown


async def test_schedule_runs_missed_slots_once_and_remembers_across_restarts(make_config):
    now = [datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()]
    config = make_config(
        TRAINING + "scheduler_interval_seconds = 3600\n" + model("btc", 'schedule = "@daily"\n')
    )

    async def scheduled(w) -> list[dict]:
        return [j for j in await w.jobs.list() if j["trigger"] == "schedule"]

    async with Warden(config, clock=lambda: now[0]) as w:
        assert await w.scheduler.tick() == []  # armed now; first slot tomorrow
        assert w.scheduler.next_runs()["btc"] == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    # Down for three and a half days: Jan 2, 3, 4 and 5 at midnight were missed.
    now[0] = datetime(2026, 1, 5, 0, 30, tzinfo=UTC).timestamp()
    async with Warden(config, clock=lambda: now[0]) as w:
        await wait_for(lambda: scheduled(w), 10)  # the start-up tick runs it
        await w.scheduler.tick()
        (job,) = await scheduled(w)
        assert "3 more slot(s) missed" in job["reason"]
        await w.jobs.cancel(job["id"])
        now[0] += 3600
        assert await w.scheduler.tick() == []
    now[0] = datetime(2026, 1, 6, 0, 0, 1, tzinfo=UTC).timestamp()
    async with Warden(config, clock=lambda: now[0]) as w:

        async def two():
            return len(await scheduled(w)) == 2

        await wait_for(two, 10)
        jobs = await scheduled(w)
        assert len(jobs) == 2 and "missed" not in jobs[0]["reason"]
        await w.jobs.cancel(jobs[0]["id"])


async def test_unknown_trigger_or_bad_options_stop_start_naming_the_model(make_config):
    with pytest.raises(PluginError, match=r"unknown trigger plugin 'moon'"):
        Warden(make_config(TRAINING + model("btc", 'triggers = ["moon"]\n')))
    bad = 'triggers = ["drift"]\n[models.trigger_options.drift]\nmin_recommendation = "SOON"\n'
    with pytest.raises(PluginError, match=r"model 'btc': trigger 'drift': option"):
        Warden(make_config(TRAINING + model("btc", bad)))


async def test_a_tick_under_a_lost_lease_fires_nothing(make_config):
    """A former scheduler holder that wakes up after a takeover makes no job."""
    from mlwarden.daemon.core.leases import LeaseLost, holding

    now = [datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()]
    config = make_config(
        TRAINING + "scheduler_interval_seconds = 3600\n" + model("btc", 'schedule = "@daily"\n')
    )
    async with Warden(config, clock=lambda: now[0]) as w:
        stale = await w.cluster.singleton("scheduler")
        await w.cluster.release("scheduler", [""])
        fresh = await w.cluster.singleton("scheduler")
        assert stale is not None and fresh is not None and fresh.token == stale.token + 1
        now[0] = datetime(2026, 1, 2, 0, 30, tzinfo=UTC).timestamp()  # a slot is due
        with holding(stale), pytest.raises(LeaseLost):
            await w.scheduler.tick()
        assert await w.jobs.list() == []
        with holding(fresh):
            (job,) = await w.scheduler.tick()
        assert job["trigger"] == "schedule"
        await w.jobs.cancel(job["id"])


async def test_a_cooldown_holds_across_daemons_of_a_cluster(make_config, postgres_url):
    """The model's events move to another daemon (it took the model over): a trigger
    that fired on the first daemon is still in its cooldown on the second."""
    text = TRAINING + model(
        "btc", 'triggers = ["drift"]\n[models.trigger_options.drift]\ncooldown_seconds = 3600\n'
    )
    one = make_config(text, **{"store.url": postgres_url, "cluster.instance": "one"})
    two = make_config(text, **{"store.url": postgres_url, "cluster.instance": "two"})
    async with Warden(one) as first, Warden(two) as second:
        await first.emit(drift_event("btc"))
        (job,) = await first.jobs.list()
        await first.jobs.cancel(job["id"])
        await second.emit(drift_event("btc"))
        assert len(await second.jobs.list()) == 1  # no second job: still in cooldown
