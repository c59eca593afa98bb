"""The alert engine on a real Warden and store, with a controlled clock.

Notifications go to the ``flaky`` notifier (tests/fake_plugins/flaky_notifier.py),
which records what it receives and fails on demand.
"""

from __future__ import annotations

import itertools

import pytest

from mlwarden.daemon.alerts.rules import fingerprint
from mlwarden.daemon.warden import Warden
from mlwarden.types import Event, Severity
from tests.fake_plugins.flaky_notifier import DOWN, INBOXES

FLAKY = "tests.fake_plugins.flaky_notifier"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CONFIG = f"""
[daemon]
plugins = ["{FLAKY}"]
[alerts]
group_wait_seconds = 30
repeat_interval_seconds = 3600
tick_seconds = 3600
retry_initial_seconds = 10
retry_max_seconds = 300
outbox_max_age_seconds = 7200
grafana_url = "https://grafana.example.com/d/mlwarden-model/model"
[[notifiers]]
name = "ops"
plugin = "flaky"
options = {{ inbox = "ops" }}
"""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def alerting(make_config, clock):
    """Start a Warden with ``CONFIG`` plus extra TOML; yields a factory."""
    INBOXES.clear()
    DOWN.clear()
    started: list[Warden] = []

    async def make(extra: str = "") -> Warden:
        w = Warden(make_config(CONFIG + extra), clock=clock)
        await w.start()
        started.append(w)
        return w

    yield make
    for w in started:
        await w.stop()
    DOWN.clear()


def drift(model: str = "btc", kind: str = "drift_detected", **data) -> Event:
    data = {"drift_score": 0.42, "threshold": 0.1, "recommendation": "RETRAIN_SOON", **data}
    return Event(kind=kind, model=model, version="1.3.0", severity=Severity.WARNING, data=data)


def inbox(name: str = "ops") -> list[tuple[str, str]]:
    return [(n.status, n.model or "") for _, n in INBOXES.get(name, [])]


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_drift_fires_after_group_wait_and_dedups(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    await warden.emit(drift())
    await alerts.tick()
    assert inbox() == []  # group wait: not yet
    clock.advance(10)
    await warden.emit(drift(drift_score=0.5))  # same alert: folded in
    clock.advance(20)
    await alerts.tick()
    assert inbox() == [("firing", "btc")]
    notification = INBOXES["ops"][0][1]
    assert notification.fingerprint == fingerprint({"alertname": "ModelDataDrift", "model": "btc"})
    assert notification.title == "[FIRING] ModelDataDrift on btc v1.3.0 (warning)"
    assert "drift_score: 0.5" in notification.body and "threshold: 0.1" in notification.body
    assert notification.url == ("https://grafana.example.com/d/mlwarden-model/model?var-model=btc")
    [alert] = await alerts.alerts()
    assert (alert["events"], alert["status"], alert["severity"]) == (2, "firing", "warning")
    assert warden.metrics.alerts_firing.labels("warning")._value.get() == 1


async def test_repeats_at_the_repeat_interval_and_no_more_often(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    sent_at = [clock.now]
    # Tick every 5 minutes for 3.5 hours while the drift keeps being reported.
    for _ in range(42):
        clock.advance(300)
        await warden.emit(drift())
        await alerts.tick()
        if len(inbox()) > len(sent_at):
            sent_at.append(clock.now)
    assert inbox() == [("firing", "btc")] * 4
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(3600 <= g < 3600 + 300 for g in gaps), gaps


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_resolve_notifies_once_and_a_new_episode_fires_again(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    await warden.emit(drift(kind="drift_resolved"))
    await alerts.tick()
    await alerts.tick()
    assert inbox() == [("firing", "btc"), ("resolved", "btc")]
    resolved = INBOXES["ops"][1][1]
    assert resolved.title.startswith("[RESOLVED] ModelDataDrift on btc")
    assert resolved.fingerprint == INBOXES["ops"][0][1].fingerprint
    assert warden.metrics.alerts_firing.labels("warning")._value.get() == 0
    assert await alerts.alerts() == []
    [old] = await alerts.alerts(state="resolved")
    assert old["ends_at"] == clock.now
    # A second resolve for an alert that is not firing changes nothing.
    await warden.emit(drift(kind="drift_resolved"))
    await alerts.tick()
    assert len(inbox()) == 2
    # Drift again: a new alert, with its own group wait.
    await warden.emit(drift())
    await alerts.tick()
    assert len(inbox()) == 2
    clock.advance(30)
    await alerts.tick()
    assert inbox()[-1] == ("firing", "btc")


async def test_alert_resolved_within_group_wait_notifies_nobody(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    await warden.emit(drift())
    clock.advance(5)
    await warden.emit(drift(kind="drift_resolved"))
    clock.advance(60)
    await alerts.tick()
    assert inbox() == []


async def test_builtin_rules_resolve_their_own_alerts(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    events = [
        Event("performance_degraded", "m", data={"metric": "mse", "value": 0.3, "threshold": 0.2}),
        Event(
            "training_failed",
            "m",
            data={"job_id": "j1", "attempt": 2, "state": "failed", "error": "exit 1"},
        ),
        Event("rollout_rolled_back", "m", "2.0.0", data={"strategy": "canary", "reason": "mse"}),
    ]
    for event in events:
        await warden.emit(event)
    clock.advance(30)
    await alerts.tick()
    firing = {n.labels["alertname"]: n for _, n in INBOXES["ops"]}
    assert set(firing) == {"ModelPerformanceDegraded", "ModelTrainingFailed", "ModelRolloutFailed"}
    assert firing["ModelTrainingFailed"].severity == Severity.CRITICAL
    assert "training job j1 of m failed (attempt 2): exit 1" in firing["ModelTrainingFailed"].body
    assert warden.metrics.alerts_firing.labels("critical")._value.get() == 2
    # A success for another model resolves nothing; each resolution closes its own alert.
    await warden.emit(Event("training_succeeded", "other"))
    await warden.emit(Event("performance_recovered", "m", data={"metric": "mae"}))  # other metric
    for kind in ("performance_recovered", "training_succeeded", "rollout_promoted"):
        await warden.emit(Event(kind, "m", "2.0.0", data={"metric": "mse"}))
    await alerts.tick()
    resolved = [n.labels["alertname"] for _, n in INBOXES["ops"] if n.status == "resolved"]
    assert sorted(resolved) == sorted(firing)
    assert warden.metrics.alerts_firing.labels("critical")._value.get() == 0


async def test_routing_by_severity_model_and_labels(alerting, clock):
    extra = """
[[alerts.rules]]
name = "ModelDataDrift"
labels = { team = "quant" }
[[notifiers]]
name = "pager"
plugin = "flaky"
min_severity = "critical"
options = { inbox = "pager" }
[[notifiers]]
name = "btc-team"
plugin = "flaky"
models = ["btc"]
options = { inbox = "btc-team" }
[[notifiers]]
name = "quant"
plugin = "flaky"
labels = { team = "quant" }
send_resolved = false
options = { inbox = "quant" }
"""
    warden = await alerting(extra)
    alerts = warden.alerts
    await warden.emit(drift("btc"))
    await warden.emit(drift("eth"))
    await warden.emit(Event("training_failed", "eth", data={"reason": "oom"}))
    clock.advance(30)
    await alerts.tick()
    assert sorted(inbox("ops")) == [("firing", "btc"), ("firing", "eth"), ("firing", "eth")]
    assert inbox("pager") == [("firing", "eth")]
    assert inbox("btc-team") == [("firing", "btc")]
    assert sorted(inbox("quant")) == [("firing", "btc"), ("firing", "eth")]
    await warden.emit(drift("btc", kind="drift_resolved"))
    await alerts.tick()
    assert inbox("btc-team")[-1] == ("resolved", "btc")
    assert ("resolved", "btc") not in inbox("quant")  # send_resolved = false


async def test_configured_rule_with_match_group_by_and_summary(alerting, clock):
    extra = """
[[alerts.rules]]
name = "RetrainNow"
fire_on = ["drift_detected"]
resolve_on = ["drift_resolved"]
match = { recommendation = "RETRAIN_IMMEDIATELY" }
group_by = ["feature"]
severity = "critical"
summary = "{model}: feature {feature} drifted ({drift_score} > {threshold}) {missing}"
[[alerts.rules]]
name = "ModelDataDrift"
enabled = false
"""
    warden = await alerting(extra)
    alerts = warden.alerts
    await warden.emit(drift(recommendation="RETRAIN_SOON", feature="a"))
    await warden.emit(drift(recommendation="RETRAIN_IMMEDIATELY", feature="a"))
    await warden.emit(drift(recommendation="RETRAIN_IMMEDIATELY", feature="b"))
    clock.advance(30)
    await alerts.tick()
    sent = sorted((n.labels["feature"], n.severity) for _, n in INBOXES["ops"])
    assert sent == [("a", "critical"), ("b", "critical")]
    body = INBOXES["ops"][0][1].body
    assert body.splitlines()[0].startswith("btc: feature ")
    assert "(0.42 > 0.1) {missing}" in body


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_silence_suppresses_until_it_expires(alerting, clock, make_client):
    warden = await alerting()
    client = await make_client(warden)
    alerts = warden.alerts
    resp = await client.post(
        "/api/silences",
        json={
            "matchers": [{"name": "model", "value": "bt.*", "is_regex": True}],
            "duration_seconds": 600,
            "comment": "maintenance",
        },
    )
    assert resp.status == 201, await resp.text()
    silence = await resp.json()
    assert silence["state"] == "active" and silence["created_by"] == "anonymous"
    await warden.emit(drift("btc"))
    await warden.emit(drift("eth"))
    clock.advance(30)
    await alerts.tick()
    assert inbox() == [("firing", "eth")]
    body = await (await client.get("/api/alerts?model=btc")).json()
    assert body["alerts"][0]["silenced_by"] == [silence["id"]]
    clock.advance(300)
    await alerts.tick()
    assert inbox() == [("firing", "eth")]
    resp = await client.delete(f"/api/silences/{silence['id']}")
    assert resp.status == 200
    assert (await resp.json())["state"] == "expired"
    await alerts.tick()
    assert inbox() == [("firing", "eth"), ("firing", "btc")]


async def test_silence_expires_by_itself(alerting, clock, make_client):
    warden = await alerting()
    client = await make_client(warden)
    alerts = warden.alerts
    resp = await client.post(
        "/api/silences",
        json={
            "matchers": [{"name": "alertname", "value": "ModelDataDrift"}],
            "ends_at": clock.now + 100,
        },
    )
    assert resp.status == 201
    await warden.emit(drift())
    clock.advance(60)
    await alerts.tick()
    assert inbox() == []
    clock.advance(60)
    await alerts.tick()
    assert inbox() == [("firing", "btc")]


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_alerts_survive_a_restart(alerting, clock):
    warden = await alerting()
    await warden.emit(drift())
    clock.advance(30)
    await warden.alerts.tick()
    await warden.stop()
    again = await alerting()
    await again.emit(drift())  # still the same alert: no new notification
    clock.advance(60)
    await again.alerts.tick()
    assert inbox() == [("firing", "btc")]
    assert again.metrics.alerts_firing.labels("warning")._value.get() == 1
    await again.emit(drift(kind="drift_resolved"))
    await again.alerts.tick()
    assert inbox() == [("firing", "btc"), ("resolved", "btc")]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # several daemons
async def test_two_daemons_firing_one_alert_at_once_make_one_alert(alerting):
    import asyncio

    first, second = await alerting(), await alerting()
    await asyncio.gather(*(w.emit(drift()) for _ in range(10) for w in (first, second)))
    firing = [a for a in await second.alerts.alerts() if a["status"] == "firing"]
    assert [a["events"] for a in firing] == [20]
