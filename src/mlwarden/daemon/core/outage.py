"""The store out of reach: telling such errors apart, and logging an outage once.

A PostgreSQL server that stops, restarts or drops off the network makes every store
call fail with a connection error (``ConnectionRefusedError`` at connect, asyncpg's
``ConnectionDoesNotExistError`` or an admin shutdown on a connection in use, a pool
timeout). None of that is a bug of the daemon: the API answers it with 503 and
``Retry-After`` (``api/middleware.py``), background loops skip their tick and try
again at the next one, and the cluster's leases lapse (``cluster.py``). The pool
(``pool_pre_ping``) replaces broken connections when the server is back.

:class:`Outage` logs one warning when the first such error is seen and one line when
a connection succeeds again, instead of a traceback at every tick of every loop.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Iterator

import sqlalchemy as sa

__all__ = ["RETRY_AFTER_SECONDS", "Outage", "log_failure", "unavailable"]

logger = logging.getLogger(__name__)

#: What the API's 503 asks a client to wait before it sends again (``Retry-After``).
RETRY_AFTER_SECONDS = 5

#: Modules an OSError must come through to be the store's (not, say, MLflow's).
_DRIVERS = ("sqlalchemy.", "asyncpg.", "aiosqlite.")

#: asyncpg's errors that mean "the server is not there now" (by class name, so that a
#: SQLite-only install needs no asyncpg): connection lost or refused, admin or crash
#: shutdown, "the database system is starting up", too many connections.
_SERVER_GONE = {
    "PostgresConnectionError",
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "ClientCannotConnectError",
    "AdminShutdownError",
    "CrashShutdownError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) > 20:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo += [current.__cause__, current.__context__]
        if isinstance(orig, BaseException):
            todo.append(orig)


def _through_driver(exc: BaseException) -> bool:
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(_DRIVERS)
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached now (not a bug, not bad input)."""
    for error in _chain(exc):
        if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, sa.exc.TimeoutError):  # no pooled connection in time
            return True
        if any(cls.__name__ in _SERVER_GONE for cls in type(error).__mro__):
            return True
        if isinstance(error, OSError) and _through_driver(error):
            return True
    return False


def _reason(exc: BaseException) -> str:
    root = getattr(exc, "orig", None) or exc
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0] if text else ''}".rstrip(": ")


class Outage:
    """Whether the store is out of reach now, as the daemon last saw it."""

    def __init__(self, url: str) -> None:
        self.url = url
        #: Monotonic time the current outage was first seen; None while reachable.
        self.since: float | None = None
        #: The error that began the current outage (or ended the last one).
        self.reason = ""
        #: Monotonic time the last outage ended (None if there was none).
        self.ended_at: float | None = None

    @property
    def down(self) -> bool:
        return self.since is not None

    def reachable_for(self) -> float:
        """Seconds the store has been reachable since the last outage (inf: never down)."""
        if self.since is not None:
            return 0.0
        return math.inf if self.ended_at is None else time.monotonic() - self.ended_at

    def began(self, exc: BaseException) -> None:
        """A store call failed with an error :func:`unavailable` accepts."""
        if self.since is not None:
            return
        self.since = time.monotonic()
        self.reason = _reason(exc)
        logger.warning(
            "store %s unreachable (%s): the API answers 503 (Retry-After: %d s) and "
            "background work waits until it is back",
            self.url,
            self.reason,
            RETRY_AFTER_SECONDS,
        )

    def ended(self) -> None:
        """A connection to the store succeeded."""
        if self.since is None:
            return
        lasted, self.since = time.monotonic() - self.since, None
        self.ended_at = time.monotonic()
        logger.warning("store %s reachable again after %.1f s", self.url, lasted)


def log_failure(
    log: logging.Logger, outage: Outage, exc: BaseException, message: str, *args: object
) -> bool:
    """Log a failure of background work; True if it was the store being out of reach.

    An unreachable store is logged once per outage (:meth:`Outage.began`), the tick
    itself at debug level; anything else with its traceback, as before.
    """
    if unavailable(exc):
        outage.began(exc)
        log.debug(message + ": the store is unreachable (%s)", *args, _reason(exc))
        return True
    log.error(message, *args, exc_info=exc)
    return False
