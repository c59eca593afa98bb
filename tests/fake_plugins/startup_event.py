"""A plugin that emits one real event when the daemon starts (drives notifiers in tests)."""

from __future__ import annotations

from typing import Any

from mlwarden import hookimpl
from mlwarden.types import Event, Severity

EVENT_KIND = "fake_plugin_started"


@hookimpl
async def mlwarden_startup(warden: Any) -> None:
    await warden.emit(
        Event(
            kind=EVENT_KIND,
            model="demo-model",
            version="1.0.0",
            severity=Severity.WARNING,
            message="fake plugin started",
            data={"source": "tests.fake_plugins.startup_event"},
        )
    )
