"""Scheduled reports (``[[reports]]``): when each is due, and where its files go.

A run writes the report files into a fresh directory named after the run's time under
the report's ``directory`` (keeping the ``keep`` newest runs), and sends them as
attachments through the named apprise notifiers (email, Slack, ...).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import apprise
from croniter import croniter

from ..core.config import NotifierConfig, ReportConfig

__all__ = ["deliver", "next_due", "prune", "run_directory"]


_NAMED = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
          "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}  # fmt: skip


def next_due(report: ReportConfig, after: float) -> float:
    """The first time after ``after`` that ``report``'s cron names (UTC)."""
    expr = _NAMED.get(report.cron, report.cron)
    start = datetime.fromtimestamp(after, UTC)
    return float(croniter(expr, start).get_next(float))


def run_directory(report: ReportConfig, ts: float) -> Path:
    """Where the run of ``report`` at ``ts`` writes its files (not created)."""
    stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(report.directory).expanduser() / f"{report.name}-{stamp}"


def prune(report: ReportConfig) -> list[Path]:
    """Remove all but the ``keep`` newest run directories of ``report``; those removed."""
    if not report.directory or report.keep <= 0:
        return []
    root = Path(report.directory).expanduser()
    runs = sorted(p for p in root.glob(f"{report.name}-*") if p.is_dir())
    removed = runs[: max(len(runs) - report.keep, 0)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def deliver(
    notifiers: Sequence[NotifierConfig], title: str, body: str, files: Sequence[Path]
) -> list[str]:
    """Send ``files`` as attachments through each apprise notifier; the names that
    failed (blocking: call it in a thread)."""
    failed = []
    for notifier in notifiers:
        asset = apprise.AppriseAsset(storage_mode="memory")
        sender = apprise.Apprise(asset=asset)
        for url in notifier.urls:
            sender.add(url)
        if notifier.config_file:
            config = apprise.AppriseConfig(asset=asset)
            config.add(notifier.config_file)
            sender.add(config)
        attach = apprise.AppriseAttachment(asset=asset)
        for path in files:
            attach.add(str(path))
        if not sender.notify(title=title, body=body, attach=attach):
            failed.append(notifier.name)
    return failed
