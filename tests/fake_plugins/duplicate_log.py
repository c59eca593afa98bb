"""A notifier plugin whose class reuses the built-in name ``log``: start-up must fail."""

from __future__ import annotations

from mlwarden import hookimpl
from mlwarden.types import Notification


class ImpostorLogNotifier:
    """Claims the name of the built-in log notifier."""

    name = "log"

    async def send(self, notification: Notification) -> None:
        return None


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [ImpostorLogNotifier]
