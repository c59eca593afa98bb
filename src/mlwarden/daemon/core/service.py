"""The base of the daemon's services (monitor, registry, jobs, rollouts, alerts, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..api import Route
    from ..warden import Warden
    from .config import Config
    from .store import Schema

__all__ = ["Service"]


class Service:
    """One concern of the daemon, owned by the Warden.

    ``start`` runs in order at daemon start (after the store and MLflow are ready),
    ``stop`` in reverse order; ``reload`` receives a new, already validated config
    and may raise to refuse it (the old config then stays). A service that defines a
    ``mlwarden_event`` method marked with ``hookimpl`` is registered with the plugin
    manager while it runs, so it hears events through the same hook as plugins.
    Background tasks go through ``warden.spawn`` so that they are cancelled and
    awaited on shutdown.
    """

    name: ClassVar[str] = ""
    schema: ClassVar[Schema | None] = None

    def __init__(self, warden: Warden) -> None:
        self.warden = warden

    async def start(self) -> None:
        """Start the service; background loops go through ``warden.spawn``."""

    async def stop(self) -> None:
        """Stop the service and release what it holds."""

    async def reload(self, config: Config) -> None:
        """Adopt a new configuration (``warden.config`` is already the new one)."""

    def routes(self) -> list[Route]:
        """HTTP routes this service serves, each with the role it needs."""
        return []

    async def health(self) -> dict[str, Any]:
        """A component entry of ``/api/system/health``; ``status`` is ok or degraded."""
        return {"status": "ok"}
