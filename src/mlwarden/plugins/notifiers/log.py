"""The ``log`` notifier: writes each notification to the daemon's log."""

from __future__ import annotations

import logging

from ...hookspecs import hookimpl
from ...types import Notification, Severity

logger = logging.getLogger("mlwarden.notifications")

_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING}


class LogNotifier:
    """Logs notifications through the ``mlwarden.notifications`` logger.

    Always available, needs no configuration: the notifier of last resort, and the one
    the embedded defaults use.
    """

    name = "log"

    def __init__(self, *, level: str | None = None) -> None:
        self.level = logging.getLevelName(level.upper()) if level else None

    async def send(self, notification: Notification) -> None:
        level = self.level or _LEVELS.get(notification.severity, logging.ERROR)
        title = notification.title
        # Alert titles already say "[FIRING] ... (severity)"; one line per notification.
        if not title.startswith("["):
            title = f"[{notification.status.upper()}] {notification.severity}: {title}"
        logger.log(level, "%s", title, extra={"notification": notification})
        if notification.body:
            logger.debug("%s", notification.body, extra={"notification": notification})


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [LogNotifier]
