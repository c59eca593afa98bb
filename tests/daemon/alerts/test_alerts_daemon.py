"""A real ``mlwarden run`` process: a notification survives kill -9 and is sent once.

The event comes from tests/fake_plugins/startup_event.py (loaded through
``[daemon] plugins``), which emits ``fake_plugin_started`` at every start; a configured
rule turns it into an alert. The receivers are a real HTTP server and a real SMTP
server (aiosmtpd) on loopback.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.helpers import free_port
from tests.helpers import wait_until as wait_for

REPO = Path(__file__).resolve().parents[3]
#: The daemon imports this checkout's package and the test plugins.
PYTHONPATH = os.pathsep.join([str(REPO / "src"), str(REPO)])


class Receiver:
    """A threaded HTTP server recording JSON posts; started and stopped by the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.posts: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver(free_port())
    yield r
    r.stop()


def test_pending_notification_survives_kill_9_and_is_sent_once(daemon_factory, receiver):
    config = f"""
[daemon]
plugins = ["tests.fake_plugins.startup_event"]
[alerts]
group_wait_seconds = 0
tick_seconds = 0.2
retry_initial_seconds = 0.3
retry_max_seconds = 0.6
[[alerts.rules]]
name = "FakeStarted"
fire_on = ["fake_plugin_started"]
severity = "critical"
summary = "{{model}} v{{version}} started ({{source}})"
[[notifiers]]
name = "hook"
plugin = "apprise"
urls = ["json://127.0.0.1:{receiver.port}/hook"]
"""
    daemon = daemon_factory(config, env={"PYTHONPATH": PYTHONPATH})
    daemon.start()

    def attempted():
        status, body = daemon.call("GET", "/api/notifications?status=pending")
        assert status == 200, body
        return [n for n in body["notifications"] if n["attempts"] >= 1]

    [row] = wait_for(attempted, what="a failed delivery attempt")
    assert row["notifier"] == "hook" and row["notification"]["status"] == "firing"
    daemon.kill()  # written, not delivered: kill -9

    receiver.start()
    daemon.start()
    wait_for(lambda: receiver.posts, what="the notification after the restart")
    time.sleep(2.0)  # ten more ticks: nothing is sent twice
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["title"] == "[FIRING] FakeStarted on demo-model v1.0.0 (critical)"
    assert post["message"].startswith(
        "demo-model v1.0.0 started (tests.fake_plugins.startup_event)"
    )
    status, body = daemon.call("GET", "/api/notifications")
    assert status == 200
    assert [(n["id"], n["status"]) for n in body["notifications"]] == [(row["id"], "sent")]
    status, body = daemon.call("GET", "/api/alerts")
    assert status == 200
    [alert] = body["alerts"]
    assert alert["rule"] == "FakeStarted" and alert["events"] == 2  # one per start, deduped
    status, metrics = daemon.call("GET", "/metrics")
    assert status == 200
    assert 'mlwarden_alerts_firing{severity="critical"} 1.0' in metrics
    assert 'mlwarden_notifications_total{notifier="hook",outcome="sent"} 1.0' in metrics
    assert daemon.stop() == 0


class Mailbox:
    """aiosmtpd handler keeping the subject of every message it accepts."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.subjects.append(str(message["Subject"]))
        return "250 OK"


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    mailbox.port = free_port()
    mailbox.controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    yield mailbox
    if mailbox.controller._thread is not None:
        mailbox.controller.stop()


def test_email_and_json_across_an_outage_and_kill_9_are_each_sent_once(
    daemon_factory, receiver, smtp
):
    # The sequence of issue 23: both receivers down, an alert fires, kill -9, restart,
    # receivers back. apprise throttles the email destination to one send per 5.5 s;
    # with a 1 s send timeout, a throttled retry used to be given up on while apprise's
    # thread went on to deliver it, and the row was sent again.
    config = f"""
[daemon]
plugins = ["tests.fake_plugins.startup_event"]
[alerts]
group_wait_seconds = 0
tick_seconds = 0.2
retry_initial_seconds = 0.3
retry_max_seconds = 0.6
send_timeout_seconds = 1.0
[[alerts.rules]]
name = "FakeStarted"
fire_on = ["fake_plugin_started"]
severity = "critical"
summary = "{{model}} v{{version}} started ({{source}})"
[[notifiers]]
name = "oncall"
plugin = "apprise"
urls = [
  "mailto://127.0.0.1:{smtp.port}?mode=insecure&from=mlwarden@example.com&to=oncall@example.com",
  "json://127.0.0.1:{receiver.port}/hook",
]
"""
    daemon = daemon_factory(config, env={"PYTHONPATH": PYTHONPATH})
    daemon.start()

    def rows() -> list[dict]:
        status, body = daemon.call("GET", "/api/notifications")
        assert status == 200, body
        return body["notifications"]

    def failed_since(attempts: dict[int, int]):
        now = rows()
        both = len(now) == 2 and all(n["attempts"] > attempts.get(n["id"], 0) for n in now)
        return {n["id"]: n["attempts"] for n in now} if both else None

    before = wait_for(lambda: failed_since({}), what="a failed attempt to both destinations")
    daemon.kill()  # written, not delivered: kill -9
    daemon.start()
    # After the restart both fail once more (stamping apprise's throttle), then come back.
    wait_for(lambda: failed_since(before), what="failed attempts after the restart")
    smtp.controller.start()
    receiver.start()
    wait_for(lambda: smtp.subjects and receiver.posts, what="the email and the JSON post")
    time.sleep(6.5)  # past apprise's 5.5 s: a second send would have arrived
    assert smtp.subjects == ["[FIRING] FakeStarted on demo-model v1.0.0 (critical)"]
    assert len(receiver.posts) == 1
    wait_for(lambda: all(n["status"] == "sent" for n in rows()), what="both rows sent")
    status, metrics = daemon.call("GET", "/metrics")
    assert status == 200
    assert 'mlwarden_notifications_total{notifier="oncall",outcome="sent"} 2.0' in metrics
    assert daemon.stop() == 0
