"""An example mlwarden plugin: the ``jsonl_file`` notifier and the ``mean_shift`` drift method.

Registered through the entry-point group ``mlwarden`` (see pyproject.toml); uses only
the public plugin API: ``mlwarden.hookimpl`` and ``mlwarden.types``.
"""

from __future__ import annotations

from mlwarden import hookimpl

from .drift import MeanShift
from .notifier import JsonlFileNotifier

__all__ = ["JsonlFileNotifier", "MeanShift", "mlwarden_drift_methods", "mlwarden_notifiers"]
__version__ = "0.2.0"


@hookimpl
def mlwarden_notifiers() -> list[type]:
    return [JsonlFileNotifier]


@hookimpl
def mlwarden_drift_methods() -> list[type]:
    return [MeanShift]


@hookimpl
def mlwarden_deployment_strategies() -> list[type]:
    from .strategy import HalfwayStrategy

    return [HalfwayStrategy]
