"""The durable outbox: retries with backoff, each delivered once, max age, restarts."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import pytest

from mlwarden.daemon.alerts.outbox import Outbox
from mlwarden.types import Event, Severity
from tests.daemon.alerts import test_alerts as base
from tests.daemon.alerts.test_alerts import CONFIG, drift, inbox
from tests.fake_plugins.flaky_notifier import DOWN, INBOXES

# The same Warden-with-a-hand-moved-clock fixtures as the alert engine's tests.
alerting = base.alerting
clock = base.clock

TWO_DESTINATIONS = """
[[notifiers]]
name = "multi"
plugin = "flaky"
options = { inbox = "multi", destinations = ["mail", "chat"] }
"""


def test_backoff_is_exponential_with_jitter_and_capped():
    settings = SimpleNamespace(retry_initial_seconds=5.0, retry_max_seconds=300.0)
    outbox = Outbox(None, lambda: 0.0, None, dict, lambda: settings, rng=random.Random(7))
    for failures in range(1, 12):
        full = min(300.0, 5.0 * 2 ** (failures - 1))
        delays = [outbox._delay(failures) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # really jittered


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_notifier_down_for_an_hour_gets_everything_once_in_order(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    DOWN.add("ops")
    models = ["m1", "m2", "m3"]
    for model in models:
        await warden.emit(drift(model))
    clock.advance(30)
    await alerts.tick()
    # One hour down, ticking every minute; m2 resolves meanwhile; repeats come due but
    # add nothing while the first message of the same alert is still waiting.
    for minute in range(60):
        clock.advance(60)
        if minute == 20:
            await warden.emit(drift("m2", kind="drift_resolved"))
        await alerts.tick()
    assert inbox() == []
    failed = warden.metrics.notifications.labels("ops", "failed")._value.get()
    assert 5 <= failed <= 20  # backed off, not retried every tick
    pending = await alerts.outbox.entries("pending")
    DOWN.discard("ops")
    clock.advance(300)
    await alerts.tick()
    delivered = [(n.status, n.model) for _, n in INBOXES["ops"]]
    assert len(delivered) == len(pending) == 4
    assert delivered[:3] == [("firing", m) for m in models]
    assert delivered[3] == ("resolved", "m2")  # after its firing, never before
    for _ in range(5):
        clock.advance(60)
        await alerts.tick()
    assert len(INBOXES["ops"]) == 4
    assert await alerts.outbox.entries("pending") == []
    sent = warden.metrics.notifications.labels("ops", "sent")._value.get()
    assert sent == 4


async def test_a_failing_destination_never_repeats_the_others(alerting, clock):
    warden = await alerting(TWO_DESTINATIONS)
    alerts = warden.alerts
    DOWN.add("multi:chat")
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    for _ in range(10):
        clock.advance(120)
        await alerts.tick()
    assert [t for t, _ in INBOXES["multi"]] == ["mail"]
    DOWN.clear()
    clock.advance(300)
    await alerts.tick()
    assert sorted(t for t, _ in INBOXES["multi"]) == ["chat", "mail"]
    health = await alerts.health()
    assert health["failing_notifiers"] == [] and health["outbox"]["pending"] == 0


async def test_past_max_age_a_notification_is_dropped_counted_and_logged(alerting, clock, caplog):
    warden = await alerting()
    alerts = warden.alerts
    DOWN.add("ops")
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    with caplog.at_level(logging.ERROR, logger="mlwarden.daemon.alerts.outbox"):
        for _ in range(13):  # 2h10m > outbox_max_age_seconds = 7200
            clock.advance(600)
            await alerts.tick()
    assert warden.metrics.notifications.labels("ops", "dropped")._value.get() == 1
    assert any("dropping notification" in r.getMessage() for r in caplog.records)
    [row] = await alerts.outbox.entries("dropped")
    assert "outbox_max_age_seconds" in row["last_error"]
    DOWN.clear()
    clock.advance(600)
    await alerts.tick()
    # The dropped message is not sent; the alert, still firing, is sent anew instead.
    assert [(t, n.status) for t, n in INBOXES["ops"]] == [("", "firing")]
    assert INBOXES["ops"][0][1].fingerprint == row["fingerprint"]
    assert len(await alerts.outbox.entries("sent")) == 1


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_pending_notifications_are_sent_after_a_restart(alerting, clock):
    warden = await alerting()
    DOWN.add("ops")
    await warden.emit(Event("training_failed", "m", severity=Severity.CRITICAL))
    clock.advance(30)
    await warden.alerts.tick()
    await warden.stop()  # the flush fails too: still pending
    DOWN.clear()
    again = await alerting()
    clock.advance(600)
    await again.alerts.tick()
    assert inbox() == [("firing", "m")]
    await again.alerts.tick()
    assert inbox() == [("firing", "m")]


async def test_notifier_removed_by_reload_drops_its_rows(alerting, clock, make_config):
    warden = await alerting(TWO_DESTINATIONS)
    alerts = warden.alerts
    DOWN.add("multi")
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    await warden.reload(make_config(CONFIG))
    clock.advance(600)
    await alerts.tick()
    dropped = await alerts.outbox.entries("dropped")
    assert {r["notifier"] for r in dropped} == {"multi"} and len(dropped) == 2
    assert "no longer configured" in dropped[0]["last_error"]


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_destination_removed_by_reload_drops_only_its_rows(alerting, clock, make_config):
    warden = await alerting(TWO_DESTINATIONS)
    alerts = warden.alerts
    DOWN.add("multi")
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    fewer = TWO_DESTINATIONS.replace('["mail", "chat"]', '["mail"]')
    await warden.reload(make_config(CONFIG + fewer))
    DOWN.clear()
    clock.advance(600)
    await alerts.tick()
    assert [t for t, _ in INBOXES["multi"]] == ["mail"]
    [dropped] = await alerts.outbox.entries("dropped")
    assert dropped["target"] == "chat" and "no longer configured" in dropped["last_error"]


@pytest.mark.both_backends  # the store's tables on PostgreSQL too
async def test_sent_rows_and_resolved_alerts_are_pruned_after_retention(alerting, clock):
    warden = await alerting()
    alerts = warden.alerts
    await warden.emit(drift())
    clock.advance(30)
    await alerts.tick()
    await warden.emit(drift(kind="drift_resolved"))
    await alerts.tick()
    assert len(await alerts.outbox.entries("sent")) == 2
    clock.advance(31 * 86400)  # past the default 30 days
    await alerts.tick()
    assert await alerts.outbox.entries() == []
    assert await alerts.alerts(state="all") == []


async def test_a_bad_reload_keeps_the_working_notifiers(alerting, clock, make_config):
    from mlwarden.errors import PluginError

    warden = await alerting()
    bad = '[[notifiers]]\nname = "x"\nplugin = "apprise"\nurls = ["nonsense://"]\n'
    with pytest.raises(PluginError, match="notifier 'x'"):
        await warden.reload(make_config(CONFIG + bad))
    await warden.emit(drift())
    clock.advance(30)
    await warden.alerts.tick()
    assert inbox() == [("firing", "btc")]
