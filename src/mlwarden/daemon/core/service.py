"""The base of the daemon's services (monitor, registry, jobs, rollouts, alerts, ...)."""

from __future__ import annotations

from typing import Any, ClassVar

from .config import Config
from .context import Context
from .store import Schema

__all__ = ["Service"]


class Service:
    """One concern of the daemon, built and owned by the composition root (the Warden).

    ``start`` runs in order at daemon start (after the store and MLflow are ready),
    ``stop`` in reverse order; ``reload`` receives a new, already validated config
    (``context.config`` is already the new one) and may raise to refuse it (the old
    config then stays). A service that defines a ``mlwarden_event`` method marked with
    ``hookimpl`` is registered with the plugin manager while it runs, so it hears
    events through the same hook as plugins. Background tasks go through
    ``context.spawn`` so that they are cancelled and awaited on shutdown. What a
    service needs of another service is a constructor argument typed by a Protocol;
    it knows no HTTP (the routes are in ``daemon/api/``).
    """

    name: ClassVar[str] = ""
    schema: ClassVar[Schema | None] = None

    def __init__(self, context: Context) -> None:
        self.context = context

    async def start(self) -> None:
        """Start the service; background loops go through ``context.spawn``."""

    async def stop(self) -> None:
        """Stop the service and release what it holds."""

    async def reload(self, config: Config) -> None:
        """Adopt a new configuration (``context.config`` is already the new one)."""

    async def health(self) -> dict[str, Any]:
        """A component entry of ``/api/system/health``; ``status`` is ok or degraded."""
        return {"status": "ok"}
