"""A notifier plugin (``collector``) that keeps what it receives in memory, and a drift method.

Used to check that plugin classes from a dotted-path module are registered, listed,
instantiated with keyword-only options and called.
"""

from __future__ import annotations

from mlwarden import hookimpl
from mlwarden.types import Notification

#: Every notification any CollectorNotifier received, in order.
RECEIVED: list[tuple[str, Notification]] = []


class CollectorNotifier:
    """Appends each notification to ``RECEIVED`` with its ``label``."""

    name = "collector"

    def __init__(self, *, label: str = "default") -> None:
        if not isinstance(label, str) or not label:
            raise ValueError("option 'label' must be a non-empty string")
        self.label = label

    async def send(self, notification: Notification) -> None:
        RECEIVED.append((self.label, notification))


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [CollectorNotifier]
