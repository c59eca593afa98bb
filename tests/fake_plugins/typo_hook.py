"""A plugin implementing a hook that does not exist: ``check_pending`` must name it."""

from __future__ import annotations

from mlwarden import hookimpl


@hookimpl
def mlwarden_evnt(event: object) -> None:
    return None
