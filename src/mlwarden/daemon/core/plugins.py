"""The plugin manager: built-ins, entry points and configured modules, and their classes.

Built-ins (``mlwarden.plugins.DEFAULT_PLUGINS``) are registered with the same
``pm.register`` as third-party modules, which come from the entry-point group
``mlwarden`` and from dotted module paths in the configuration. :class:`PluginCatalog`
collects the plugin classes of every kind once, by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

import pluggy

from ... import hookspecs
from ..._version import __version__
from ...errors import PluginError
from ...plugins import DEFAULT_PLUGINS

__all__ = [
    "KINDS",
    "PluginCatalog",
    "PluginInfo",
    "make_plugin_manager",
]

logger = logging.getLogger(__name__)


#: Registration hook for each kind of plugin class.
KINDS: dict[str, str] = {
    "drift_method": "mlwarden_drift_methods",
    "performance_estimator": "mlwarden_performance_estimators",
    "strategy": "mlwarden_deployment_strategies",
    "trigger": "mlwarden_triggers",
    "notifier": "mlwarden_notifiers",
    "trainer": "mlwarden_trainers",
    "traffic_backend": "mlwarden_traffic_backends",
}

ENTRY_POINT_GROUP = "mlwarden"


@dataclass(frozen=True)
class PluginInfo:
    """One plugin class as ``mlwarden plugins`` and ``/api/system/health`` show it."""

    name: str
    kind: str
    plugin: str
    version: str
    origin: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "plugin": self.plugin,
            "version": self.version,
            "origin": self.origin,
        }


def make_plugin_manager(
    extra: Iterable[str] = (),
    disable: Iterable[str] = (),
    *,
    autoload: bool | None = None,
) -> pluggy.PluginManager:
    """Build a plugin manager: built-ins, entry points, then ``extra`` dotted modules.

    ``disable`` names plugin modules or entry points to skip (plugin *classes* named
    there are dropped by PluginCatalog). ``MLWARDEN_DISABLE_PLUGIN_AUTOLOAD`` set to a
    non-empty value skips the entry points. Raises PluginError naming the plugin on an
    import error.
    """
    if autoload is None:
        autoload = not os.environ.get("MLWARDEN_DISABLE_PLUGIN_AUTOLOAD")
    disable = set(disable)
    pm = pluggy.PluginManager("mlwarden")
    pm.add_hookspecs(hookspecs)
    pm.origins = {}  # type: ignore[attr-defined]
    for name in disable:
        pm.set_blocked(name)
    for dotted in DEFAULT_PLUGINS:
        if dotted in disable:
            continue
        _register(pm, _import(dotted), dotted, "builtin", __version__)
    if autoload:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in disable or pm.is_blocked(ep.name) or pm.has_plugin(ep.name):
                continue
            try:
                module = ep.load()
            except Exception as exc:
                raise PluginError(f'Error importing plugin "{ep.name}": {exc}') from exc
            dist = ep.dist
            origin = f"entry point {ep.value} ({dist.name})" if dist else f"entry point {ep.value}"
            _register(pm, module, ep.name, origin, dist.version if dist else "")
    for dotted in extra:
        if dotted in disable or pm.has_plugin(dotted):
            continue
        _register(pm, _import(dotted), dotted, "config", _module_version(dotted))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f'Plugin "{name}" is invalid: {exc}') from exc
    return pm


def _import(dotted: str) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except Exception as exc:
        raise PluginError(f'Error importing plugin "{dotted}": {exc}') from exc


def _module_version(dotted: str) -> str:
    top = dotted.split(".")[0]
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _register(
    pm: pluggy.PluginManager, module: ModuleType, name: str, origin: str, version: str
) -> None:
    try:
        pm.register(module, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise PluginError(f'Error registering plugin "{name}": {exc}') from exc
    pm.origins[name] = (origin, version)  # type: ignore[attr-defined]


class PluginCatalog:
    """The plugin classes of every kind, by name, collected once from a plugin manager.

    A duplicate ``name`` within a kind raises PluginError naming both plugins.
    """

    def __init__(self, pm: pluggy.PluginManager, disable: Iterable[str] = ()) -> None:
        self.pm = pm
        disabled = set(disable)
        self._classes: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
        self._infos: list[PluginInfo] = []
        origins: dict[str, tuple[str, str]] = getattr(pm, "origins", {})
        for kind, hook_name in KINDS.items():
            hook = getattr(pm.hook, hook_name)
            owners: dict[str, str] = {}
            # Registration order: built-ins first, so a newcomer reusing a name is blamed.
            for impl in hook.get_hookimpls():
                try:
                    classes = impl.function() or []
                except Exception as exc:
                    raise PluginError(
                        f'Plugin "{impl.plugin_name}" failed in {hook_name}: {exc}'
                    ) from exc
                for cls in classes:
                    name = getattr(cls, "name", None)
                    if not isinstance(name, str) or not name:
                        raise PluginError(
                            f'Plugin "{impl.plugin_name}": {kind} class {cls!r} has no `name`'
                        )
                    if name in disabled:
                        continue
                    if name in owners:
                        raise PluginError(
                            f'Plugin "{impl.plugin_name}": duplicate {kind} name {name!r}, '
                            f'already provided by plugin "{owners[name]}"'
                        )
                    owners[name] = impl.plugin_name
                    self._classes[kind][name] = cls
                    origin, version = origins.get(impl.plugin_name, ("unknown", ""))
                    self._infos.append(PluginInfo(name, kind, impl.plugin_name, version, origin))

    def get(self, kind: str, name: str) -> type:
        """The class of ``kind`` called ``name``; PluginError says which names exist."""
        try:
            return self._classes[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._classes.get(kind, {}))) or "none"
            raise PluginError(f"unknown {kind} plugin {name!r} (available: {known})") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._classes[kind])

    def classes(self, kind: str) -> dict[str, type]:
        return dict(self._classes[kind])

    def infos(self) -> list[PluginInfo]:
        return sorted(self._infos, key=lambda i: (i.kind, i.name))
