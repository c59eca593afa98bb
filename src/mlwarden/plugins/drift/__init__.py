"""Built-in drift methods, one module and one class each, and the defaults per feature kind.

Each module registers its class through ``mlwarden_drift_methods`` and is listed in
``mlwarden.plugins.DEFAULT_PLUGINS``; the monitor looks classes up by name with
``warden.plugins.get("drift_method", name)``. ``base.py`` holds the shared plumbing
(option checks, kind checks, data access) that third-party methods may reuse.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["DEFAULT_METHODS", "MODULES"]

#: Dotted paths of the built-in drift method modules (registered as DEFAULT_PLUGINS).
MODULES: tuple[str, ...] = (
    "mlwarden.plugins.drift.ks",
    "mlwarden.plugins.drift.psi",
    "mlwarden.plugins.drift.chi2",
    "mlwarden.plugins.drift.wasserstein",
    "mlwarden.plugins.drift.jensen_shannon",
    "mlwarden.plugins.drift.mmd",
    "mlwarden.plugins.drift.page_hinkley",
)

#: Methods run on a feature of each kind when the model's config names none: a test
#: on the bounded sample (or counts) plus an effect size that does not grow with the
#: window (docs/drift_methods.md says why both).
DEFAULT_METHODS = MappingProxyType(
    {
        "numeric": ("ks", "psi"),
        "categorical": ("chi2", "jensen_shannon"),
        "multivariate": ("mmd",),
    }
)
