"""Built-in performance estimators: one module and one class each.

Each module registers its class through ``mlwarden_performance_estimators`` and is
listed in ``mlwarden.plugins.DEFAULT_PLUGINS``; the monitor looks classes up by name
with ``warden.plugins.get("performance_estimator", name)``. ``base.py`` holds what they
share (option checks, data checks, the realized metrics, the band) and a third-party
estimator may subclass it.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["DEFAULT_ESTIMATORS", "MODULES"]

#: Dotted paths of the built-in estimator modules (registered as DEFAULT_PLUGINS).
MODULES: tuple[str, ...] = (
    "mlwarden.plugins.estimators.cbpe",
    "mlwarden.plugins.estimators.dle",
)

#: The estimator used for a model's task when its config names none.
DEFAULT_ESTIMATORS = MappingProxyType({"classification": "cbpe", "regression": "dle"})
