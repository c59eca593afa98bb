"""The apprise notifier end to end: a real SMTP server (aiosmtpd) and a real HTTP receiver.

apprise sends ``mailto://`` to the local SMTP server and ``json://`` to a local aiohttp
receiver. Slack and PagerDuty cannot be reached, so their requests are redirected at
the HTTP layer (requests' transport adapter) to the same local receiver, and the
payloads are asserted there.
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests.adapters
from aiohttp import web
from aiosmtpd.controller import Controller

from mlwarden.daemon.alerts.rules import fingerprint
from mlwarden.daemon.warden import Warden
from mlwarden.errors import PluginError
from mlwarden.plugins.notifiers.apprise import AppriseNotifier, DeliveryFailed
from mlwarden.types import Event, Notification, Severity
from tests.helpers import free_port

GRAFANA = "https://grafana.example.com/d/mlwarden-model/model"


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def texts(self) -> list[tuple[str, str]]:
        out = []
        for m in self.messages:
            body = m.get_body(preferencelist=("plain",))
            out.append((str(m["Subject"]), body.get_content() if body else ""))
        return out


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.port = port
    yield mailbox
    controller.stop()


class Receiver:
    """A real HTTP server on loopback that records JSON posts; can go down and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, await request.json()))
        if request.path.startswith("/hooks.slack.com/"):
            return web.Response(text="ok")  # what Slack's webhook answers
        return web.json_response({"status": "success"}, status=202)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def at(self, prefix: str) -> list[dict]:
        return [body for path, body in self.requests if path.startswith(prefix)]


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.up()
    yield r
    await r.down()


@pytest.fixture
def saas_to(monkeypatch):
    """Redirect requests to Slack and PagerDuty to a local receiver: ``/<host><path>``."""
    real_send = requests.adapters.HTTPAdapter.send

    def install(port: int) -> None:
        def send(self, request, **kwargs):
            parts = urlsplit(request.url)
            if parts.hostname in ("hooks.slack.com", "events.pagerduty.com"):
                request.url = f"http://127.0.0.1:{port}/{parts.hostname}{parts.path}"
            return real_send(self, request, **kwargs)

        monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)

    return install


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def alerting(make_config):
    started: list[Warden] = []

    async def make(notifiers: str, clock: Clock) -> Warden:
        text = f"""
[alerts]
group_wait_seconds = 30
repeat_interval_seconds = 3600
tick_seconds = 3600
retry_initial_seconds = 10
retry_max_seconds = 120
grafana_url = "{GRAFANA}"
{notifiers}
"""
        w = Warden(make_config(text), clock=clock)
        await w.start()
        started.append(w)
        return w

    yield make
    for w in started:
        await w.stop()


def mail_and_json(smtp: Mailbox, receiver: Receiver) -> str:
    return f"""
[[notifiers]]
name = "oncall"
plugin = "apprise"
urls = [
  "mailto://127.0.0.1:{smtp.port}?mode=insecure&from=mlwarden@example.com&to=oncall@example.com",
  "json://127.0.0.1:{receiver.port}/hook",
]
"""


def drift(kind: str = "drift_detected", model: str = "btc-usdt") -> Event:
    return Event(
        kind=kind,
        model=model,
        version="1.3.0",
        severity=Severity.WARNING,
        data={
            "drift_score": 0.42,
            "threshold": 0.1,
            "recommendation": "RETRAIN_SOON",
            "drifted_features": ["vol_24h", "ret_1h"],
        },
    )


async def test_drift_email_and_json_repeat_resolve_and_silence(
    alerting, smtp, receiver, make_client
):
    clock = Clock()
    warden = await alerting(mail_and_json(smtp, receiver), clock)
    alerts = warden.alerts
    await warden.emit(drift())
    clock.now += 30
    await alerts.tick()
    # One email and one JSON notification.
    assert len(smtp.messages) == 1 and len(receiver.at("/hook")) == 1
    subject, body = smtp.texts()[0]
    assert subject == "[FIRING] ModelDataDrift on btc-usdt v1.3.0 (warning)"
    assert "Model: btc-usdt" in body and "Version: 1.3.0" in body
    assert "drift_score: 0.42" in body and "threshold: 0.1" in body
    assert "drifted_features: vol_24h, ret_1h" in body
    assert f"Dashboard: {GRAFANA}?var-model=btc-usdt" in body
    posted = receiver.at("/hook")[0]
    assert posted["title"] == subject and posted["type"] == "warning"
    # Repeats at the repeat interval, no more often.
    for _ in range(11):
        clock.now += 300
        await warden.emit(drift())
        await alerts.tick()
    assert len(smtp.messages) == 1 and len(receiver.at("/hook")) == 1
    clock.now += 300  # 3600 s after the first notification
    await alerts.tick()
    assert len(smtp.messages) == 2 and len(receiver.at("/hook")) == 2
    # The resolve arrives.
    await warden.emit(drift("drift_resolved"))
    await alerts.tick()
    assert len(smtp.messages) == 3
    assert smtp.texts()[2][0] == "[RESOLVED] ModelDataDrift on btc-usdt v1.3.0 (warning)"
    assert receiver.at("/hook")[2]["type"] == "success"
    # A silence suppresses.
    client = await make_client(warden)
    resp = await client.post(
        "/api/silences",
        json={"matchers": [{"name": "model", "value": "btc-usdt"}], "duration_seconds": 7200},
    )
    assert resp.status == 201
    await warden.emit(drift())
    for _ in range(4):
        clock.now += 600
        await alerts.tick()
    assert len(smtp.messages) == 3 and len(receiver.at("/hook")) == 3
    await warden.emit(drift(model="eth-usdt"))  # not silenced
    clock.now += 30
    await alerts.tick()
    assert len(smtp.messages) == 4
    assert "eth-usdt" in smtp.texts()[3][0]


async def test_receiver_down_everything_delivered_once_after_it_returns(
    alerting, smtp, receiver, make_client
):
    clock = Clock()
    warden = await alerting(mail_and_json(smtp, receiver), clock)
    alerts = warden.alerts
    await receiver.down()
    for model in ("m1", "m2"):
        await warden.emit(drift(model=model))
    clock.now += 30
    await alerts.tick()
    for minute in range(60):  # an hour down; m1 resolves meanwhile
        clock.now += 60
        if minute == 10:
            await warden.emit(drift("drift_resolved", model="m1"))
        await alerts.tick()
    assert len(smtp.messages) == 3  # email was up all along: m1, m2, m1 resolved, once each
    failed = warden.metrics.notifications.labels("oncall", "failed")._value.get()
    assert failed >= 10
    await receiver.up()
    clock.now += 120
    await alerts.tick()
    for _ in range(3):
        clock.now += 60
        await alerts.tick()
    titles = [p["title"] for p in receiver.at("/hook")]
    assert titles == [
        "[FIRING] ModelDataDrift on m1 v1.3.0 (warning)",
        "[FIRING] ModelDataDrift on m2 v1.3.0 (warning)",
        "[RESOLVED] ModelDataDrift on m1 v1.3.0 (warning)",
    ]
    assert len(smtp.messages) == 3
    client = await make_client(warden)
    resp = await client.get("/api/notifications?status=pending")
    assert resp.status == 200
    assert (await resp.json())["notifications"] == []


async def test_slack_and_pagerduty_payloads_trigger_and_resolve_same_dedup_key(
    alerting, receiver, saas_to
):
    saas_to(receiver.port)
    clock = Clock()
    notifiers = """
[[notifiers]]
name = "pager"
plugin = "apprise"
min_severity = "critical"
urls = ["pagerduty://integrationkey@apikey/mlwarden"]
[[notifiers]]
name = "chat"
plugin = "apprise"
urls = ["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7/#ml-alerts"]
"""
    warden = await alerting(notifiers, clock)
    alerts = warden.alerts
    failed = Event(
        "training_failed",
        "btc-usdt",
        "1.4.0",
        Severity.CRITICAL,
        data={
            "job_id": "j-7",
            "attempt": 3,
            "state": "failed",
            "error": "exit code 1",
            "mse": 0.031,
            "max_mse": 0.02,
        },
    )
    await warden.emit(failed)
    await warden.emit(drift())  # warning: Slack only
    clock.now += 30
    await alerts.tick()
    await warden.emit(Event("training_succeeded", "btc-usdt", "1.4.1"))
    await alerts.tick()

    expected_key = fingerprint({"alertname": "ModelTrainingFailed", "model": "btc-usdt"})
    pd = receiver.at("/events.pagerduty.com/v2/enqueue")
    assert [p["event_action"] for p in pd] == ["trigger", "resolve"]
    assert pd[0]["dedup_key"] == pd[1]["dedup_key"] == expected_key
    assert pd[0]["routing_key"] == "integrationkey"
    assert pd[0]["payload"]["severity"] == "critical"
    assert (
        "training job j-7 of btc-usdt failed (attempt 3): exit code 1"
        in pd[0]["payload"]["summary"]
    )
    assert pd[0]["links"] == [{"href": f"{GRAFANA}?var-model=btc-usdt"}]

    slack = receiver.at("/hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7")
    texts = [json.dumps(p) for p in slack]
    assert len(slack) == 3  # training failed, drift, training resolved
    drift_text = next(t for t in texts if "ModelDataDrift" in t)
    for needle in (
        "btc-usdt",
        "1.3.0",
        "drift_score: 0.42",
        "threshold: 0.1",
        f"{GRAFANA}?var-model=btc-usdt",
    ):
        assert needle in drift_text, needle
    training = next(t for t in texts if "[FIRING] ModelTrainingFailed" in t)
    assert "mse: 0.031" in training and "max_mse: 0.02" in training and "1.4.0" in training
    assert any("[RESOLVED] ModelTrainingFailed" in t for t in texts)


async def test_apprise_yaml_config_file_and_tag(tmp_path: Path, receiver):
    config = tmp_path / "apprise.yml"
    config.write_text(
        "urls:\n"
        f"  - json://127.0.0.1:{receiver.port}/ops:\n"
        "    - tag: ops\n"
        f"  - json://127.0.0.1:{receiver.port}/devs:\n"
        "    - tag: devs\n"
    )
    notifier = AppriseNotifier(config_file=str(config), tag="ops")
    assert len(notifier.targets()) == 1
    await notifier.send(Notification(title="t", body="b"), target=notifier.targets()[0])
    assert [p for p, _ in receiver.requests] == ["/ops"]
    both = AppriseNotifier(config_file=str(config))
    await both.send(Notification(title="t", body="b"))
    assert sorted(p for p, _ in receiver.requests[1:]) == ["/devs", "/ops"]


async def test_failure_raises_so_the_outbox_retries():
    notifier = AppriseNotifier(urls=[f"json://127.0.0.1:{free_port()}/nobody"])
    with pytest.raises(DeliveryFailed, match=r"json://127\.0\.0\.1"):
        await notifier.send(Notification(title="t", body="b"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "set 'urls'"),
        ({"urls": "json://x"}, "must be a list"),
        (
            {"urls": ["nonsense://nowhere"]},
            r"urls\[0\] \(nonsense://…\) is not a valid apprise URL",
        ),
        ({"config_file": "/nonexistent/apprise.yml"}, "no such file"),
    ],
)
def test_bad_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        AppriseNotifier(**options)


async def test_bad_notifier_config_stops_the_warden_naming_it(make_config):
    config = make_config(
        '[[notifiers]]\nname = "oncall"\nplugin = "apprise"\nurls = ["bogus://x"]\n'
    )
    with pytest.raises(PluginError, match=r"notifier 'oncall' \(plugin 'apprise'\): urls\[0\]"):
        Warden(config)
