"""Notifiers: the configured notifier plugins, and delivery of events to them.

Until the alert engine decides what becomes an alert, every event at or above a
notifier's ``min_severity`` (and for one of its ``models``, when listed) is sent to it.
With no ``[[notifiers]]`` configured, one ``log`` notifier receives everything.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import hookimpl
from ..errors import PluginError
from ..types import Event, Notification, Severity
from .config import Config, NotifierConfig
from .service import Service

__all__ = ["NotificationService", "build_notifiers"]

logger = logging.getLogger(__name__)

DEFAULT_NOTIFIERS = (NotifierConfig(name="log", plugin="log"),)


def build_notifiers(warden: Any, config: Config) -> dict[str, tuple[NotifierConfig, Any]]:
    """Instantiate every configured notifier; PluginError names the one that is wrong."""
    out: dict[str, tuple[NotifierConfig, Any]] = {}
    for nc in config.notifiers or DEFAULT_NOTIFIERS:
        cls = warden.plugins.get("notifier", nc.plugin)
        options = dict(nc.options)
        if nc.urls:
            options["urls"] = list(nc.urls)
        if nc.config_file:
            options["config_file"] = nc.config_file
        try:
            out[nc.name] = (nc, cls(**options))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"notifier {nc.name!r} (plugin {nc.plugin!r}): {exc}") from exc
    return out


def notification_for(event: Event, public_url: str = "") -> Notification:
    title = event.message or event.kind.replace("_", " ")
    subject = " ".join(p for p in (event.model, event.version and f"v{event.version}") if p)
    details = ", ".join(f"{k}={v}" for k, v in event.data.items() if not isinstance(v, dict))
    return Notification(
        title=f"{subject}: {title}" if subject else title,
        body=details or title,
        severity=event.severity,
        model=event.model,
        version=event.version,
        labels={"kind": event.kind},
        data=event.data,
        url=public_url or None,
    )


class NotificationService(Service):
    """Holds the notifier instances and sends them what they subscribed to."""

    name = "notifiers"

    def __init__(self, warden: Any) -> None:
        super().__init__(warden)
        self.notifiers = build_notifiers(warden, warden.config)

    async def reload(self, config: Config) -> None:
        self.notifiers = build_notifiers(self.warden, config)

    def wants(self, nc: NotifierConfig, severity: Severity, model: str | None) -> bool:
        if severity.rank < Severity(nc.min_severity).rank:
            return False
        return not nc.models or model in nc.models

    async def deliver(self, name: str, notification: Notification) -> None:
        """Send one notification; raise on failure after counting it."""
        _, notifier = self.notifiers[name]
        try:
            await notifier.send(notification)
        except Exception:
            self.warden.metrics.notifications.labels(name, "failed").inc()
            raise
        self.warden.metrics.notifications.labels(name, "sent").inc()

    @hookimpl
    async def mlwarden_event(self, event: Event) -> None:
        notification = notification_for(event, self.warden.config.daemon.public_url)
        for name, (nc, _) in self.notifiers.items():
            if self.wants(nc, event.severity, event.model):
                try:
                    await self.deliver(name, notification)
                except Exception as exc:
                    logger.error("notifier %s failed: %s", name, exc)

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "notifiers": {n: nc.plugin for n, (nc, _) in self.notifiers.items()},
        }
