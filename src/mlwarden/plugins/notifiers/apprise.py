"""The ``apprise`` notifier: email, Slack, PagerDuty and 100+ services through apprise.

Configured by apprise URLs (``urls = ["mailto://…", "slack://…", "pagerduty://…"]``)
or an apprise YAML/TEXT configuration file (``config_file = "/etc/mlwarden/apprise.yml"``,
optionally filtered by ``tag``). Each destination is a separate outbox target, so a
retry after one destination failed never repeats the others.

Throttling: apprise holds each destination to one send per ``request_rate_per_sec``
seconds (5.5 s for email), sleeping in its worker thread before it connects. This
notifier waits out that interval itself, on the event loop, before it hands the send
to apprise (so a send cancelled while it waits never starts), and reports it as
``send_delay`` so that the outbox's timeout covers it.

PagerDuty (apprise >= 2.1): each message is sent with ``action=map`` and the alert's
fingerprint as ``dedup`` key, so the firing notification triggers an incident and the
resolved notification (sent as apprise's ``success`` type) resolves that same incident.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import apprise

from ...hookspecs import hookimpl
from ...types import Notification, Severity

__all__ = ["AppriseNotifier", "DeliveryFailed"]

_NOTIFY_TYPES = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
}


class DeliveryFailed(RuntimeError):
    """apprise reported that a destination did not accept the notification."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else url[:12]


class AppriseNotifier:
    """Sends notifications through apprise; raises DeliveryFailed so the outbox retries.

    Options: ``urls`` (apprise URLs), ``config_file`` (an apprise YAML or TEXT file),
    ``tag`` (only the config file's entries with this tag), ``pagerduty_dedup``
    (default true: PagerDuty incidents keyed by the alert's fingerprint).
    """

    name = "apprise"

    def __init__(
        self,
        *,
        urls: list[str] | tuple[str, ...] = (),
        config_file: str = "",
        tag: str | list[str] = "",
        pagerduty_dedup: bool = True,
    ) -> None:
        if isinstance(urls, str) or not all(isinstance(u, str) for u in urls):
            raise ValueError("option 'urls' must be a list of apprise URL strings")
        if not urls and not config_file:
            raise ValueError("set 'urls' (apprise URLs) or 'config_file' (an apprise config)")
        self.asset = apprise.AppriseAsset(storage_mode="memory")
        self.pagerduty_dedup = pagerduty_dedup
        servers: list[Any] = []
        for i, url in enumerate(urls):
            server = apprise.Apprise.instantiate(url, asset=self.asset)
            if server is None:
                raise ValueError(
                    f"urls[{i}] ({_scheme(url)}://…) is not a valid apprise URL "
                    "(see https://appriseit.com/services/ for the URL of each service)"
                )
            servers.append(server)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ValueError(f"config_file {config_file!r}: no such file")
            config = apprise.AppriseConfig(asset=self.asset)
            if not config.add(str(path.resolve())):
                raise ValueError(f"config_file {config_file!r}: apprise could not read it")
            loaded = apprise.Apprise(asset=self.asset)
            loaded.add(config)
            found = list(loaded.find(tag=tag) if tag else (loaded[i] for i in range(len(loaded))))
            if not found:
                which = f" tagged {tag!r}" if tag else ""
                raise ValueError(f"config_file {config_file!r}: no valid apprise URL{which}")
            servers.extend(found)
        self._servers: dict[str, Any] = {}
        for server in servers:
            key = hashlib.sha256(server.url(privacy=False).encode()).hexdigest()[:16]
            self._servers.setdefault(key, server)
        self._locks = {key: asyncio.Lock() for key in self._servers}

    def targets(self) -> list[str]:
        """One stable key per destination (a hash of its URL, never the URL itself)."""
        return list(self._servers)

    def send_delay(self, target: str = "") -> float:
        """Seconds apprise's rate limit will hold the next send to ``target`` (or any) back."""
        keys = [target] if target else list(self._servers)
        servers = [self._servers[k] for k in keys if k in self._servers]
        return max((_throttle_left(server) for server in servers), default=0.0)

    def describe(self, target: str) -> str:
        """The destination ``target`` as scheme, host and key: never a path, user or query.

        Webhook URLs carry their secret in the path (Slack, generic JSON hooks) where
        apprise's privacy mode does not always mask it, so only the host is shown.
        """
        server = self._servers.get(target)
        if server is None:
            return target
        parts = urlsplit(server.url(privacy=True))
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}/… (destination {target})"

    async def send(self, notification: Notification, *, target: str | None = None) -> None:
        """Deliver to ``target`` (or every destination); raise DeliveryFailed on failure."""
        if target is None:
            keys = list(self._servers)
        elif target in self._servers:
            keys = [target]
        else:
            raise DeliveryFailed(f"destination {target} is no longer in this notifier's config")
        failed = []
        for key in keys:
            if not await self._send_one(key, notification):
                failed.append(self.describe(key))
        if failed:
            raise DeliveryFailed("apprise could not deliver to " + ", ".join(failed))

    async def _send_one(self, key: str, notification: Notification) -> bool:
        server = self._servers[key]
        if notification.status == "resolved":
            notify_type = apprise.NotifyType.SUCCESS
        else:
            notify_type = _NOTIFY_TYPES[Severity(notification.severity)]
        async with self._locks[key]:
            wait = _throttle_left(server)
            if wait > 0:
                # apprise would sleep this long in its thread: sleep here, cancellably.
                await asyncio.sleep(wait)
            if self.pagerduty_dedup and server.secure_protocol == "pagerduty":
                # The instance is reused, so set the per-alert key on it for this send only.
                server.action = "map"
                server.dedup = notification.fingerprint or None
                if notification.url:
                    server.click = notification.url
            sender = apprise.Apprise(asset=self.asset)
            sender.add(server)
            result = await sender.async_notify(
                body=notification.body,
                title=notification.title,
                notify_type=notify_type,
                body_format=apprise.NotifyFormat.TEXT,
            )
        return bool(result)


def _throttle_left(server: Any) -> float:
    """What is left of apprise's interval between two sends to ``server`` (URLBase.throttle).

    apprise stamps ``_last_io_datetime`` (local naive time) when a send passes its
    throttle and sleeps until ``request_rate_per_sec`` seconds have gone by since then.
    """
    rate = float(getattr(server, "request_rate_per_sec", 0) or 0)
    last = getattr(server, "_last_io_datetime", None)
    if rate <= 0 or not isinstance(last, datetime):
        return 0.0
    return max(0.0, rate - (datetime.now() - last).total_seconds())


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [AppriseNotifier]
