"""A logging filter that masks the configuration's secrets in every log record.

Third-party libraries log what they were given (apprise logs each URL it loads at
DEBUG); the filter replaces every notifier URL, its password and its long path or
query parts with ``***`` before any handler writes the record.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit

from .config import Config

__all__ = ["SecretRedactor", "install_redactor", "secrets_of"]

_MIN = 6  # shorter fragments would mask ordinary words


def secrets_of(config: Config) -> list[str]:
    """The strings of ``config`` that must never be logged, longest first."""
    found: set[str] = set()
    for notifier in config.notifiers:
        for url in notifier.urls:
            found.add(url)
            parts = urlsplit(url)
            if parts.password:
                found.add(parts.password)
            found.update(p for p in parts.path.split("/") if len(p) >= _MIN)
            found.update(v for _k, v in parse_qsl(parts.query) if len(v) >= _MIN)
    for uri in (config.database_url, config.daemon.database_url, config.mlflow.tracking_uri):
        parts = urlsplit(uri)
        password = parts.password if "@" in parts.netloc else None
        if password:
            found.add(password)
        found.update(v for k, v in parse_qsl(parts.query) if k.lower() == "password")
    return sorted((s for s in found if len(s) >= _MIN), key=len, reverse=True)


class SecretRedactor(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self.secrets:
                record.exc_text = record.exc_text.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_installed: SecretRedactor | None = None


def install_redactor(config: Config) -> SecretRedactor:
    """Mask ``config``'s secrets on every handler of the root logger (again on reload)."""
    global _installed
    if _installed is None:
        _installed = SecretRedactor([])
    _installed.secrets = secrets_of(config)
    for handler in logging.getLogger().handlers:
        if _installed not in handler.filters:
            handler.addFilter(_installed)
    return _installed
