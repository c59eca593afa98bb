"""A scheduled report lands in its directory and in a real SMTP mailbox as attachments."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json

import pytest
from aiosmtpd.controller import Controller

from mlwarden.daemon.warden import Warden
from tests.daemon.reports.helpers import model_config
from tests.helpers import free_port


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    mailbox.port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    yield mailbox
    controller.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_scheduled_report_lands_in_directory_and_mailbox(make_config, tmp_path, smtp):
    out = tmp_path / "reports"
    config = make_config(
        model_config(tmp_path) + '[[notifiers]]\nname = "mail"\nplugin = "apprise"\n'
        f'urls = ["mailto://127.0.0.1:{smtp.port}?mode=insecure&from=mlwarden@example.com'
        '&to=risk@example.com"]\n'
        '[[reports]]\nname = "weekly"\ncron = "0 6 * * 1"\nkind = "model"\nmodels = ["m"]\n'
        f'formats = ["html", "json"]\ndirectory = "{out}"\nkeep = 2\nnotifiers = ["mail"]\n'
        '[[reports]]\nname = "audit"\ncron = "@daily"\nkind = "compliance"\n'
        f'directory = "{out}"\n'
    )
    clock = Clock(1_790_000_000.0)  # Monday 2026-09-21 14:13 UTC
    warden = Warden(config, clock=clock)
    warden.reports.tick_seconds = 0.05
    await warden.start()
    try:
        await asyncio.sleep(0.3)
        assert not out.exists()  # not due yet
        clock.now += 7 * 86400  # past the next Monday 06:00 and several midnights
        for _ in range(200):
            runs = await warden.reports.runs()
            if {r["report"] for r in runs} == {"weekly", "audit"}:
                break
            await asyncio.sleep(0.05)
        assert {r["report"]: r["outcome"] for r in runs} == {"weekly": "ok", "audit": "ok"}, runs
        weekly = next(r for r in runs if r["report"] == "weekly")
        assert weekly["sent_to"] == ["mail"]
        [folder] = list(out.glob("weekly-*"))
        assert sorted(p.name for p in folder.iterdir()) == ["model-m.html", "model-m.json"]
        assert json.loads((folder / "model-m.json").read_text())["model"] == "m"
        assert "Model report: m" in (folder / "model-m.html").read_text()
        assert list(out.glob("audit-*/compliance.html"))

        for _ in range(100):
            if smtp.messages:
                break
            await asyncio.sleep(0.05)
        [message] = smtp.messages
        assert "weekly" in str(message["Subject"])
        attached = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        assert set(attached) == {"model-m.html", "model-m.json"}
        html = attached["model-m.html"]
        assert "Model report: m" in (html if isinstance(html, str) else html.decode())

        text = warden.metrics.registry.get_sample_value(
            "mlwarden_scheduled_reports_total", {"report": "weekly", "outcome": "ok"}
        )
        assert text == 1.0
        # keep = 2: a third run removes the oldest folder
        for _ in range(2):
            clock.now += 1
            await warden.reports.run_report("weekly")
        assert len(list(out.glob("weekly-*"))) == 2
    finally:
        await warden.stop()


def test_report_config_problems(make_config):
    from mlwarden.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_config(
            '[[notifiers]]\nname = "log"\nplugin = "log"\n'
            '[[reports]]\nname = "r"\ncron = "every day"\nmodels = ["ghost"]\n'
            'notifiers = ["log", "nope"]\n'
        )
    text = str(caught.value)
    for words in (
        "key 'reports[0].cron'",
        "key 'reports[0].models[0]': 'ghost' is not a configured model",
        "key 'reports[0].notifiers[0]': notifier 'log' uses plugin 'log'",
        "key 'reports[0].notifiers[1]': no [[notifiers]] named 'nope'",
    ):
        assert words in text, text
