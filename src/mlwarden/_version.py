"""mlwarden's version: a leaf module, so reading it imports nothing else of mlwarden."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
