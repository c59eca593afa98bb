"""A plugin whose ``mlwarden_event`` always raises: the daemon must count it and go on."""

from __future__ import annotations

from mlwarden import hookimpl
from mlwarden.types import Event


@hookimpl
def mlwarden_event(event: Event) -> None:
    raise RuntimeError(f"raising_event refuses event {event.kind!r}")
