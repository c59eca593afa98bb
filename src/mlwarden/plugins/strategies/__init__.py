"""Built-in deployment strategies (blue_green, canary, rolling, shadow) and their base.

The contract every strategy implements lives in :mod:`mlwarden.types.rollouts`
(importable from ``mlwarden.types``); the built-ins' shared base class is
:class:`~mlwarden.plugins.strategies.base.Strategy`, also importable from here.

``Analysis``, ``Check``, ``RolloutView``, ``Step`` and ``Thresholds`` were defined here
before; importing them from this package still works for one release and warns with a
``DeprecationWarning`` naming ``mlwarden.types``.
"""

from __future__ import annotations

import warnings
from typing import Any

from ...types import rollouts as _rollouts
from .base import Strategy

__all__ = ["Strategy"]

_MOVED = frozenset({"Action", "Analysis", "Check", "RolloutView", "Step", "Thresholds", "Verdict"})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"mlwarden.plugins.strategies.{name} is deprecated and will be removed in the "
            f"next release; import it from mlwarden.types ({name} is defined in "
            "mlwarden.types.rollouts)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_rollouts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
