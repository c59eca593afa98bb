"""A plugin module that cannot be imported (its dependency does not exist)."""

from __future__ import annotations

import mlwarden_no_such_dependency  # noqa: F401
