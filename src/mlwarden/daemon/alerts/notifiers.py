"""Notifiers: building the configured notifier plugins, routing alerts to them, messages.

With no ``[[notifiers]]`` configured, one ``log`` notifier receives every alert. A
notifier receives an alert when the alert's severity is at least its ``min_severity``,
its model is one of its ``models`` (when listed) and every one of its ``labels``
equals the alert's label of that name.

A notifier class may offer ``targets() -> list[str]`` (stable keys of its destinations,
for example one per apprise URL) and ``send(notification, *, target=key)``: the outbox
then keeps one row per destination, so a retry never repeats a destination that
already received the message. It may also offer ``send_delay(target) -> float``: how
long its library will hold the next send to ``target`` back (a rate limit), which the
outbox adds to the send timeout.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

from ...errors import PluginError
from ...types import Notification, Severity
from ..core.config import Config, NotifierConfig
from ..core.context import PluginClasses
from .records import Alert

__all__ = [
    "DEFAULT_NOTIFIERS",
    "MultiTargetNotifier",
    "Notifier",
    "NotifierPlugin",
    "build_notifiers",
    "dashboard_url",
    "format_notification",
    "routes_to",
]

logger = logging.getLogger(__name__)

DEFAULT_NOTIFIERS = (NotifierConfig(name="log", plugin="log"),)

#: Event data keys shown first in a message, in this order (measured value, threshold).
_LEADING_KEYS = (
    "metric",
    "value",
    "drift_score",
    "baseline",
    "fall",
    "threshold",
    "recommendation",
    "error",
)
_MAX_DETAIL_LINES = 25
_MAX_VALUE_CHARS = 500


class NotifierPlugin(Protocol):
    """A notifier plugin instance (``mlwarden_notifiers``); it raises when a send fails."""

    async def send(self, notification: Notification) -> None:
        """Deliver ``notification``."""
        ...


@runtime_checkable
class MultiTargetNotifier(Protocol):
    """A notifier plugin with several destinations, each retried on its own."""

    def targets(self) -> list[str]:
        """Stable keys of its destinations."""
        ...

    async def send(self, notification: Notification, *, target: str = "") -> None:
        """Deliver ``notification`` to the destination ``target``."""
        ...


class Notifier:
    """One configured notifier: its config, its plugin instance and its destinations."""

    def __init__(self, config: NotifierConfig, instance: NotifierPlugin) -> None:
        self.config = config
        self.instance = instance

    @property
    def name(self) -> str:
        return self.config.name

    def targets(self) -> list[str]:
        targets = getattr(self.instance, "targets", None)
        return list(targets()) if callable(targets) else [""]

    def send_delay(self, target: str = "") -> float:
        """Seconds the plugin's library will hold the next send to ``target`` back.

        A notifier class may offer ``send_delay(target) -> float`` (apprise throttles
        each destination); the outbox adds it to ``alerts.send_timeout_seconds``.
        """
        delay = getattr(self.instance, "send_delay", None)
        if not callable(delay):
            return 0.0
        try:
            value = float(delay(target) if target else delay())
        except Exception:
            logger.exception("notifier %s: send_delay failed", self.name)
            return 0.0
        return value if value > 0 else 0.0

    async def send(self, notification: Notification, *, target: str = "") -> None:
        # A target is one of the instance's targets(): only a MultiTargetNotifier has any.
        if target and isinstance(self.instance, MultiTargetNotifier):
            await self.instance.send(notification, target=target)
        else:
            await self.instance.send(notification)


def build_notifiers(plugins: PluginClasses, config: Config) -> dict[str, Notifier]:
    """Instantiate every configured notifier; PluginError names the one that is wrong."""
    out: dict[str, Notifier] = {}
    for nc in config.notifiers or DEFAULT_NOTIFIERS:
        cls = plugins.get("notifier", nc.plugin)
        options = dict(nc.options)
        if nc.urls:
            options["urls"] = list(nc.urls)
        if nc.config_file:
            options["config_file"] = nc.config_file
        try:
            out[nc.name] = Notifier(nc, cls(**options))
        except (TypeError, ValueError, OSError) as exc:
            raise PluginError(f"notifier {nc.name!r} (plugin {nc.plugin!r}): {exc}") from exc
    return out


def routes_to(nc: NotifierConfig, severity: Severity, labels: dict[str, str]) -> bool:
    """Whether an alert with ``severity`` and ``labels`` goes to the notifier ``nc``."""
    if severity.rank < Severity(nc.min_severity).rank:
        return False
    if nc.models and labels.get("model", "") not in nc.models:
        return False
    return all(labels.get(k) == v for k, v in nc.labels.items())


def dashboard_url(config: Config, model: str | None) -> str | None:
    """The Grafana dashboard link for ``model`` (``alerts.grafana_url``), else the API."""
    base = config.alerts.grafana_url
    if base:
        if not model:
            return base
        sep = "&" if "?" in base else "?"
        return f"{base}{sep}{urlencode({'var-model': model})}"
    if config.daemon.public_url:
        return config.daemon.public_url.rstrip("/") + "/api/alerts"
    return None


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _value(value: object, key: str = "") -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = ", ".join(map(_value, value)) if isinstance(value, list | tuple) else str(value)
    if len(text) > _MAX_VALUE_CHARS:
        # A log tail is read from its end; anything else from its start.
        if key.endswith("tail"):
            return "…" + text[-_MAX_VALUE_CHARS:]
        return text[:_MAX_VALUE_CHARS] + "…"
    return text


def _details(data: dict[str, Any]) -> list[tuple[str, object]]:
    """Measured values first, nested tables flattened one level (``analysis.mse``)."""
    keys = [k for k in _LEADING_KEYS if k in data]
    keys += [k for k in data if k not in keys]
    out: list[tuple[str, object]] = []
    for key in keys:
        value = data[key]
        if isinstance(value, dict):
            out.extend(
                (f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, dict | list)
            )
        else:
            out.append((key, value))
    return out[:_MAX_DETAIL_LINES]


def format_notification(alert: Alert, status: str, config: Config) -> Notification:
    """The message people read for ``alert`` (a row of the alerts table, as a dict).

    The title says status, alert, model and version; the body starts with the summary
    and lists the model, version, severity, times, the measured values and thresholds
    from the event, and the dashboard link.
    """
    labels: dict[str, str] = alert["labels"]
    model = alert.get("model") or None
    version = alert.get("version") or None
    severity = Severity(alert["severity"])
    subject = " ".join(p for p in (model, version and f"v{version}") if p)
    title = f"[{status.upper()}] {labels['alertname']}"
    if subject:
        title += f" on {subject}"
    title += f" ({severity})"
    url = dashboard_url(config, model)
    lines = [alert["summary"], ""]
    if model:
        lines.append(f"Model: {model}")
    if version:
        lines.append(f"Version: {version}")
    lines.append(f"Severity: {severity}")
    ends_at = alert.get("ends_at")
    if status == "resolved" and ends_at:
        lines.append(f"Resolved at: {_utc(ends_at)} (firing since {_utc(alert['starts_at'])})")
    else:
        lines.append(f"Firing since: {_utc(alert['starts_at'])}")
    data = alert.get("data") or {}
    for key, value in _details(data):
        lines.append(f"{key}: {_value(value, key)}")
    extra = {k: v for k, v in labels.items() if k not in ("alertname", "model")}
    if extra:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(extra.items())))
    if url:
        lines.append(f"Dashboard: {url}")
    lines.append(f"Alert: {alert['fingerprint']}")
    return Notification(
        title=title,
        body="\n".join(lines),
        severity=severity,
        status="resolved" if status == "resolved" else "firing",
        fingerprint=alert["fingerprint"],
        model=model,
        version=version,
        labels=dict(labels),
        data=data,
        url=url,
    )
