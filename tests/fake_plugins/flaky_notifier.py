"""A notifier plugin (``flaky``) that records what it receives and fails on demand.

Each instance writes to the inbox named by its ``inbox`` option; while that name is in
``DOWN`` every send raises, as a notifier whose service is unreachable does. With
``destinations`` set it offers one outbox target per destination, like apprise.
"""

from __future__ import annotations

from mlwarden import hookimpl
from mlwarden.types import Notification

#: inbox name -> the notifications delivered to it, in order (with their target).
INBOXES: dict[str, list[tuple[str, Notification]]] = {}
#: inbox names (or "inbox:target") whose sends fail.
DOWN: set[str] = set()


class FlakyNotifier:
    """Records each notification in ``INBOXES[inbox]``; raises while the inbox is down."""

    name = "flaky"

    def __init__(self, *, inbox: str, destinations: list[str] | None = None) -> None:
        if not isinstance(inbox, str) or not inbox:
            raise ValueError("option 'inbox' must be a non-empty string")
        self.inbox = inbox
        self.destinations = list(destinations or [])
        INBOXES.setdefault(inbox, [])

    def targets(self) -> list[str]:
        return self.destinations or [""]

    async def send(self, notification: Notification, *, target: str = "") -> None:
        if self.inbox in DOWN or f"{self.inbox}:{target}" in DOWN:
            raise ConnectionError(f"inbox {self.inbox}{':' + target if target else ''} is down")
        INBOXES[self.inbox].append((target, notification))


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [FlakyNotifier]
