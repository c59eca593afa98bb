"""One daemon per SQLite store: an OS file lock beside the database.

SQLite serialises writers within one database file but mlwarden's services assume they
are the only daemon (one owner of checks, queues, the outbox, the audit chain), so a
second daemon on the same SQLite store is refused at start. The lock is
``fcntl.flock`` on ``<database>.lock``, held by an open file for the daemon's life:
released at stop, and by the kernel when the process dies (even on ``kill -9``), so a
stale lock file never blocks a restart. The file names the holder's pid and host.

Only :meth:`Warden.start` takes it. CLI commands that open the store while a daemon
runs (``mlwarden audit verify``) read it without the lock; SQLite's WAL lets them.
Several daemons share a PostgreSQL store instead (docs/operations.md "PostgreSQL").
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ...errors import ConfigError

__all__ = ["DaemonLock"]


class DaemonLock:
    """The exclusive lock of ``<database>.lock``; ``acquire`` refuses if another holds it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the path and the holder's pid."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                f"another mlwarden daemon ({holder}) is running on the SQLite store "
                f"{self.database} (lock {self.path}): SQLite allows one daemon per base "
                "path; stop it first, or run several daemons on one PostgreSQL store "
                "([store] url = postgresql+asyncpg://..., docs/operations.md)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    fields = dict(part.partition("=")[::2] for part in text.split())
    if "pid" not in fields:
        return "pid unknown"
    host = fields.get("host", "")
    return f"pid {fields['pid']}" + (f" on {host}" if host and host != socket.gethostname() else "")
