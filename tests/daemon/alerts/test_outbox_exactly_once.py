"""Exactly once with a real SMTP server (aiosmtpd): slow sends and apprise's throttling.

apprise holds each email destination to one send per 5.5 s, sleeping in a worker thread
before it connects, and a send running in a thread cannot be stopped. A send that
outlives the outbox's timeout therefore still delivers later; the outbox must learn its
outcome before it retries, and its timeout must cover the throttling. The real
``mlwarden run`` process across kill -9 is in test_alerts_daemon.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiosmtpd.controller import Controller

from mlwarden.types import Event, Severity
from tests.helpers import free_port
from tests.plugins.notifiers.test_apprise import Mailbox, Receiver


class SlowMailbox(Mailbox):
    """Accepts each message only after ``delay`` seconds (a slow mail relay)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class Smtp:
    """A real SMTP server on a fixed loopback port that can be down and come back."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.port = free_port()
        self.controller: Controller | None = None

    def up(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def servers():
    started: list[Smtp] = []

    def make(mailbox: Mailbox) -> Smtp:
        smtp = Smtp(mailbox)
        started.append(smtp)
        return smtp

    yield make
    for smtp in started:
        smtp.down()


def config(smtp: Smtp, receiver: Receiver, send_timeout: float) -> str:
    return f"""
[alerts]
group_wait_seconds = 0
tick_seconds = 0.1
retry_initial_seconds = 0.2
retry_max_seconds = 0.4
send_timeout_seconds = {send_timeout}
[[alerts.rules]]
name = "Boom"
fire_on = ["boom"]
severity = "critical"
[[notifiers]]
name = "oncall"
plugin = "apprise"
urls = [
  "mailto://127.0.0.1:{smtp.port}?mode=insecure&from=mlwarden@example.com&to=oncall@example.com",
  "json://127.0.0.1:{receiver.port}/hook",
]
"""


async def rows(warden) -> list[dict]:
    return await warden.alerts.outbox.entries()


async def until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def all_sent(warden) -> bool:
    entries = await rows(warden)
    return bool(entries) and all(e["status"] == "sent" for e in entries)


def counted(warden, outcome: str) -> float:
    return warden.metrics.notifications.labels("oncall", outcome)._value.get()


async def test_throttled_retry_after_an_outage_sends_each_destination_once(make_warden, servers):
    # Both receivers down: the first attempt to each fails at once and stamps apprise's
    # throttle; the receivers come back; the retry of the email waits ~5 s for apprise's
    # throttle, far past a 1 s send timeout, and must not be sent twice for it.
    smtp = servers(Mailbox())
    receiver = Receiver()
    warden = await make_warden(config(smtp, receiver, send_timeout=1.0))
    try:
        await warden.emit(Event(kind="boom", model="m", severity=Severity.CRITICAL))

        async def both_failed() -> bool:
            entries = await rows(warden)
            return len(entries) == 2 and all(e["attempts"] >= 1 for e in entries)

        await until(both_failed, what="a failed attempt to both destinations")
        smtp.up()
        await receiver.up()

        async def delivered() -> bool:
            return bool(smtp.mailbox.messages) and bool(receiver.at("/hook"))

        await until(delivered, what="the email and the JSON post")
        # The throttled send ends ~5.5 s after the first attempt; give a send that was
        # wrongly started twice the time to arrive.
        await asyncio.sleep(6.0)
        assert len(smtp.mailbox.messages) == 1, [m["Date"] for m in smtp.mailbox.messages]
        assert len(receiver.at("/hook")) == 1
        await until(lambda: all_sent(warden), timeout=5, what="both rows sent")
        assert smtp.mailbox.texts()[0][0] == "[FIRING] Boom on m (critical)"
        assert counted(warden, "sent") == 2
        assert all(e["status"] == "sent" for e in await rows(warden))
    finally:
        await receiver.down()


async def test_a_send_outliving_its_timeout_is_awaited_not_retried(make_warden, servers):
    # The relay takes 2.5 s to accept a message, the timeout is 0.5 s: the send goes on
    # in apprise's thread and delivers; the row waits for that outcome and is marked
    # sent, never retried meanwhile.
    smtp = servers(SlowMailbox(delay=2.5))
    smtp.up()
    receiver = Receiver()
    await receiver.up()
    warden = await make_warden(config(smtp, receiver, send_timeout=0.5))
    try:
        await warden.emit(Event(kind="boom", model="m", severity=Severity.CRITICAL))

        async def waiting() -> list[dict]:
            return [
                e
                for e in await rows(warden)
                if e["status"] == "pending" and "still sending" in e["last_error"]
            ]

        [row] = await until(waiting, what="the email row waiting for its send")
        assert row["attempts"] == 1 and row["last_error"].startswith("timed out after 0.5s")
        await until(lambda: all_sent(warden), what="both rows sent")
        await asyncio.sleep(3.0)  # a retry would be accepted 2.5 s after it started
        assert len(smtp.mailbox.messages) == 1
        email_row = next(e for e in await rows(warden) if e["id"] == row["id"])
        assert email_row["attempts"] == 1 and email_row["status"] == "sent"
        assert counted(warden, "sent") == 2 and counted(warden, "failed") == 0
    finally:
        await receiver.down()


async def test_stop_waits_for_a_running_send_and_records_it(make_warden, servers):
    smtp = servers(SlowMailbox(delay=1.5))
    smtp.up()
    receiver = Receiver()
    await receiver.up()
    warden = await make_warden(config(smtp, receiver, send_timeout=0.3))
    try:
        await warden.emit(Event(kind="boom", model="m", severity=Severity.CRITICAL))

        async def running() -> bool:
            return bool(warden.alerts.outbox.running)

        await until(running, what="a send outliving its timeout")
        await warden.alerts.stop()  # what Warden.stop does, within the shutdown timeout
        assert warden.alerts.outbox.running == {}
        assert len(smtp.mailbox.messages) == 1
        assert all(e["status"] == "sent" for e in await rows(warden))
    finally:
        await receiver.down()
