"""The configuration held against the installed plugins: names and their options.

``mlwarden check-config`` runs these checks after the configuration's own, so that a
typo in a plugin name or option is found before the daemon starts (where the service
using the plugin would refuse it, some of them only when the model is first checked).
Each problem names the key, what was wrong and what is available. Plugins are
instantiated with their options (as the daemon does) where that has no side effect:
drift methods, triggers, trainers, deployment strategies and estimators; notifiers and
traffic backends are checked by name only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import PluginError
from ...plugins.trainers.limits import LIMIT_KEYS
from .config import Config
from .context import PluginClasses

__all__ = ["plugin_problems"]


def plugin_problems(config: Config, plugins: PluginClasses) -> list[str]:
    """Every configured plugin name that is not installed, and every option it refuses."""
    problems = []
    for key, kind, name, options in _configured(config):
        known = plugins.names(kind)
        if name not in known:
            available = ", ".join(known) or "none"
            problems.append(f"key '{key}': unknown {kind} {name!r} (available: {available})")
        elif options is not None:
            try:
                plugins.get(kind, name)(**options)
            except (TypeError, ValueError, PluginError) as exc:
                problems.append(f"key '{key}': {kind} {name!r} refuses its options: {exc}")
    return problems


def _configured(config: Config) -> Iterator[tuple[str, str, str, Mapping[str, Any] | None]]:
    """(key, plugin kind, name, options to instantiate with or None) of each plugin."""
    for i, model in enumerate(config.models):
        at = f"models[{i}]"
        for j, name in enumerate(model.drift_methods):
            options = model.drift_options.get(name, {})
            yield f"{at}.drift_methods[{j}]", "drift_method", name, options
        triggers = list(model.triggers)
        if model.schedule and "schedule" not in triggers:
            triggers.insert(0, "schedule")
        for j, name in enumerate(triggers):
            options = dict(model.trigger_options.get(name, {}))
            if name == "schedule":
                options.setdefault("cron", model.schedule)
                options.setdefault("timezone", config.training.timezone)
            yield f"{at}.triggers[{j}]", "trigger", name, options
        if model.trainer:
            options = {k: v for k, v in model.trainer.items() if k not in LIMIT_KEYS}
            plugin = options.pop("plugin", "command")
            yield f"{at}.trainer.plugin", "trainer", plugin, options
        if model.strategy and model.strategy != "direct":
            yield f"{at}.strategy", "strategy", model.strategy, None
        if model.estimator not in ("", "none"):
            estimator_options = dict(model.estimator_options)
            yield f"{at}.estimator", "performance_estimator", model.estimator, estimator_options
    deployment = config.deployment
    yield "deployment.default_strategy", "strategy", deployment.default_strategy, None
    for name, options in deployment.strategies.items():
        yield f"deployment.strategies.{name}", "strategy", name, options
    for j, name in enumerate(deployment.traffic_backends):
        yield f"deployment.traffic_backends[{j}]", "traffic_backend", name, None
    for i, notifier in enumerate(config.notifiers):
        yield f"notifiers[{i}].plugin", "notifier", notifier.plugin, None
