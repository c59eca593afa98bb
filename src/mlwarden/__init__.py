"""mlwarden: a plugin-based daemon that keeps machine-learning models healthy in production."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .hookspecs import hookimpl

__all__ = ["Warden", "__version__", "hookimpl"]

if TYPE_CHECKING:
    from .daemon.warden import Warden


def __getattr__(name: str) -> Any:
    # Warden pulls in the daemon (aiohttp, SQLAlchemy); plugins importing `hookimpl`
    # should not pay for that.
    if name == "Warden":
        from .daemon.warden import Warden

        return Warden
    raise AttributeError(f"module 'mlwarden' has no attribute {name!r}")
