"""The built-in plugins, registered exactly like third-party ones.

``DEFAULT_PLUGINS`` lists their modules; the daemon's plugin manager
(:mod:`mlwarden.daemon.core.plugins`) registers them with the same ``pm.register`` as
the modules of the entry-point group ``mlwarden`` and of ``daemon.plugins``. A built-in
plugin imports only the public contract (``mlwarden.types``, ``mlwarden.errors``,
``mlwarden.stats``, ``mlwarden.hookspecs``), as a third party would.
"""

from __future__ import annotations

__all__ = ["DEFAULT_PLUGINS"]

DEFAULT_PLUGINS: tuple[str, ...] = (
    "mlwarden.plugins.notifiers.log",
    "mlwarden.plugins.notifiers.apprise",
    "mlwarden.plugins.drift.ks",
    "mlwarden.plugins.drift.psi",
    "mlwarden.plugins.drift.chi2",
    "mlwarden.plugins.drift.wasserstein",
    "mlwarden.plugins.drift.jensen_shannon",
    "mlwarden.plugins.drift.mmd",
    "mlwarden.plugins.drift.page_hinkley",
    "mlwarden.plugins.estimators.cbpe",
    "mlwarden.plugins.estimators.dle",
    "mlwarden.plugins.triggers.schedule",
    "mlwarden.plugins.triggers.drift",
    "mlwarden.plugins.triggers.performance",
    "mlwarden.plugins.triggers.regime",
    "mlwarden.plugins.trainers.command",
    "mlwarden.plugins.trainers.python",
    "mlwarden.plugins.strategies.canary",
    "mlwarden.plugins.strategies.blue_green",
    "mlwarden.plugins.strategies.rolling",
    "mlwarden.plugins.strategies.shadow",
    "mlwarden.plugins.traffic.mlflow_alias",
)
