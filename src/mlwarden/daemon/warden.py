"""The Warden: the in-process API and the owner of the daemon's services.

``Warden`` holds the configuration, the plugin manager, the store, MLflow and the
metrics, starts and stops the services, dispatches events to the ``mlwarden_event``
hook, and offers the original specification's calls (``monitor_model_drift``,
``get_model_performance_history``, ``get_system_health``, ...) as async methods. The
HTTP API and the CLI are thin layers over it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from .._version import __version__
from ..plugins import PluginCatalog, make_plugin_manager
from ..types import Event
from .alerts.service import AlertService
from .core.audit import AUDIT_SCHEMA, AuditLog
from .core.config import Config, load_config
from .core.metrics import Metrics
from .core.service import Service
from .core.store import Store
from .core.tracking import Tracking, disable_telemetry
from .experiments.service import ExperimentService
from .ingest.service import IngestService
from .monitoring.drift import MonitorService
from .monitoring.performance import PerformanceService
from .registry.service import RegistryService
from .rollouts.service import RolloutService
from .training.jobs import JobService
from .training.scheduler import SchedulerService

__all__ = ["SERVICE_CLASSES", "Warden", "await_me_maybe"]

logger = logging.getLogger(__name__)

#: The daemon's services, started in this order and stopped in reverse.
SERVICE_CLASSES: tuple[type[Service], ...] = (
    AlertService,
    IngestService,
    MonitorService,
    RegistryService,
    PerformanceService,
    RolloutService,
    ExperimentService,
    JobService,
    SchedulerService,
)


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable (a hook may return either)."""
    if inspect.isawaitable(value):
        return await value
    return value


class Warden:
    """mlwarden in-process: ``async with Warden(config) as warden: ...``."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        disable_telemetry()
        self.config = config if config is not None else load_config()
        self.clock = clock
        self.metrics = Metrics(registry)
        daemon = self.config.daemon
        self.pm = make_plugin_manager(daemon.plugins, daemon.disable_plugins)
        self.plugins = PluginCatalog(self.pm, daemon.disable_plugins)
        self.store = Store(self.config.database_url)
        self.audit = AuditLog(self.store, clock)
        self.tracking = Tracking(self.config)
        self.services: dict[str, Service] = {}
        for cls in SERVICE_CLASSES:
            self.services[cls.name] = cls(self)
        self.started_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started: list[Service] = []
        self.last_errors: list[dict[str, Any]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Warden:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.config.base_path.mkdir(parents=True, exist_ok=True)
        schemas = [AUDIT_SCHEMA] + [s.schema for s in self.services.values() if s.schema]
        await self.store.open(schemas)
        await asyncio.get_running_loop().run_in_executor(None, self.tracking.setup)
        for service in self.services.values():
            await service.start()
            self._started.append(service)
            if hasattr(service, "mlwarden_event"):
                self.pm.register(service, name=f"mlwarden.service.{service.name}")
        self.started_at = self.clock()
        self.metrics.up_since.set(self.started_at)
        self.metrics.zero_known_series(self.config, self.pm)
        await self.call_hook("mlwarden_startup", warden=self)

    async def stop(self, timeout: float | None = None) -> None:
        timeout = self.config.daemon.shutdown_timeout_seconds if timeout is None else timeout
        if self.started_at is not None:
            await self.call_hook("mlwarden_shutdown", warden=self)
        for service in reversed(self._started):
            try:
                await asyncio.wait_for(service.stop(), timeout)
            except Exception:
                logger.exception("service %s did not stop cleanly", service.name)
            name = f"mlwarden.service.{service.name}"
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
        self._started.clear()
        await self.cancel_tasks(timeout)
        await self.store.close()
        self.started_at = None

    async def reload(self, config: Config) -> None:
        """Adopt ``config``; on any error the old configuration stays in force."""
        old = self.config
        if (config.daemon.plugins, config.daemon.disable_plugins) != (
            old.daemon.plugins,
            old.daemon.disable_plugins,
        ):
            # Plugins are loaded once; changing the set needs a restart, say so.
            logger.warning("daemon.plugins / daemon.disable_plugins change needs a restart")
        for key in ("base_path", "database_url", "listen"):
            if getattr(config.daemon, key) != getattr(old.daemon, key):
                logger.warning("daemon.%s changed: takes effect after a restart", key)
        self.config = config
        try:
            for service in self._started:
                await service.reload(config)
        except Exception:
            self.config = old
            for service in self._started:
                await service.reload(old)
            raise

    # -- background tasks ------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as an owned task: logged if it fails, cancelled at stop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())
            self.record_error(task.get_name(), repr(task.exception()))

    async def cancel_tasks(self, timeout: float) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                logger.warning("task %s did not finish within %.1fs", task.get_name(), timeout)

    def record_error(self, where: str, message: str) -> None:
        self.last_errors.append({"ts": self.clock(), "where": where, "message": message})
        del self.last_errors[:-20]

    # -- plugins and events ----------------------------------------------------------

    async def call_hook(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of a hook, each isolated and timed out.

        An implementation that raises or exceeds ``daemon.plugin_timeout_seconds`` is
        logged with its plugin's name and counted in ``mlwarden_plugin_errors_total``;
        its result is left out and the others still run.
        """
        hook = getattr(self.pm.hook, hook_name)
        timeout = self.config.daemon.plugin_timeout_seconds

        async def call(impl: Any) -> Any:
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                return await asyncio.wait_for(await_me_maybe_sync(impl.function, args), timeout)
            except Exception as exc:
                self.plugin_failed(impl.plugin_name, hook_name, exc)
                return _FAILED

        results = await asyncio.gather(*(call(impl) for impl in reversed(hook.get_hookimpls())))
        return [r for r in results if r is not _FAILED]

    def plugin_failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        kind = "timed out" if isinstance(exc, TimeoutError) else f"raised {exc!r}"
        logger.error("plugin %s %s in %s", plugin, kind, hook, exc_info=exc)
        self.metrics.plugin_errors.labels(plugin, hook).inc()
        self.record_error(f"plugin {plugin} ({hook})", kind)

    async def emit(self, event: Event) -> None:
        """Dispatch ``event`` to every ``mlwarden_event`` implementation."""
        self.metrics.events.labels(event.kind).inc()
        logger.debug("event %s model=%s version=%s", event.kind, event.model, event.version)
        await self.call_hook("mlwarden_event", event=event)

    # -- public API ------------------------------------------------------------------

    def service(self, name: str) -> Any:
        return self.services[name]

    async def register_model(self, model: str, **registration: Any) -> dict[str, Any]:
        """Register a model version (``POST /api/models/{name}/versions``); its record."""
        return await self.service("registry").register(model, **registration)

    async def promote(
        self, model: str, version: str, *, strategy: str | None = None, actor: str = "api"
    ) -> dict[str, Any]:
        """Put ``version`` of ``model`` in production (the champion)."""
        from .registry.ops import promote

        return await promote(self, model, version, strategy=strategy, actor=actor)

    async def rollback(
        self, model: str, version: str | None = None, *, actor: str = "api"
    ) -> dict[str, Any]:
        """Restore the previous production version of ``model`` (or ``version``)."""
        from .registry.ops import rollback

        return await rollback(self, model, version, actor=actor)

    async def compare_models(self, a: str, b: str, *, hours: float | None = None) -> dict[str, Any]:
        """Compare ``NAME@VERSION`` ``a`` and ``b``: metrics, params, performance, drift."""
        from .registry.ops import compare_versions, parse_ref

        return await compare_versions(self, parse_ref(a, "a"), parse_ref(b, "b"), hours=hours)

    async def cleanup(
        self,
        older_than_days: float = 30.0,
        *,
        dry_run: bool = False,
        model: str | None = None,
        actor: str = "api",
    ) -> dict[str, Any]:
        """Remove deprecated/archived/failed versions older than ``older_than_days``."""
        from .registry.cleanup import cleanup

        return await cleanup(
            self, older_than_days=older_than_days, dry_run=dry_run, model=model, actor=actor
        )

    async def get_model_performance_history(self, model: str, days: float = 30) -> dict[str, Any]:
        """Performance metrics of each version of ``model`` over the last ``days``."""
        return await self.service("performance").history(model, days)

    async def start_ab_test(
        self,
        model_a: str,
        model_b: str,
        test_name: str,
        traffic_split: float = 0.5,
        duration_hours: float | None = None,
        *,
        actor: str = "api",
        **options: Any,
    ) -> str:
        """Start an A/B test of ``model_b`` against ``model_a`` (``"name@version"`` each,
        one model); ``traffic_split`` is B's share. Returns the experiment id.

        ``options``: ``metric``, ``test``, ``sequential``, ``auto_promote`` (see
        docs/experiments.md). Conflict when the model already runs an experiment.
        """
        from .api.experiments import parse_arms

        model, version_a, version_b = parse_arms(model_a, model_b)
        record = await self.service("experiments").start_experiment(
            model, version_a, version_b, name=test_name, weight_b=traffic_split,
            duration_hours=duration_hours, actor=actor, **options,
        )  # fmt: skip
        return str(record["id"])

    async def evaluate_ab_test(self, experiment_id: str, *, actor: str = "api") -> dict[str, Any]:
        """Evaluate experiment ``experiment_id`` now; its result (winner, p-value, interval,
        lift, samples per arm, SRM, power, recommendation) with its id and status."""
        record = await self.service("experiments").evaluate(experiment_id, actor=actor)
        return {
            "experiment_id": record["id"],
            "status": record["status"],
            "promotion": record["promotion"],
            **(record["result"] or {}),
        }

    async def monitor_model_drift(self, model: str, recent_data: Any) -> dict[str, Any]:
        """Check ``recent_data`` (a pandas DataFrame) for drift against the model's reference.

        The DataFrame is profiled by the same code as the ingest path; the DriftReport is
        stored in the drift history and returned (DESIGN §5 shape).
        """
        return await self.service("monitor").check_frame(model, recent_data)

    async def check_drift(self, model: str) -> dict[str, Any]:
        """Run a drift check of ``model``'s current window now (``POST .../drift-check``)."""
        return await self.service("monitor").check(model)

    async def get_drift_history(self, model: str, days: float = 7.0) -> list[dict[str, Any]]:
        """Stored drift reports of the last ``days``, oldest first."""
        return await self.service("monitor").history(model, days=days)

    async def get_system_health(self) -> dict[str, Any]:
        """Components, plugins, uptime and recent errors, as ``/api/system/health``."""
        components: dict[str, Any] = {}
        try:
            await self.store.ping()
            components["store"] = {"status": "ok", "schema": await self.store.schema_versions()}
        except Exception as exc:
            components["store"] = {"status": "down", "error": str(exc)}
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.tracking.ping)
            components["mlflow"] = {"status": "ok", **self.tracking.health()}
        except Exception as exc:
            components["mlflow"] = {"status": "down", "error": str(exc)}
        for name, service in self.services.items():
            try:
                components[name] = await service.health()
            except Exception as exc:
                components[name] = {"status": "down", "error": str(exc)}
        statuses = {c.get("status") for c in components.values()}
        status = "down" if "down" in statuses else "degraded" if "degraded" in statuses else "ok"
        now = self.clock()
        return {
            "status": status,
            "version": __version__,
            "uptime_seconds": (now - self.started_at) if self.started_at else 0.0,
            "base_path": str(self.config.base_path),
            "config_source": self.config.source,
            "components": components,
            "plugins": [info.to_dict() for info in self.plugins.infos()],
            "plugin_modules": sorted(self.pm.origins) if hasattr(self.pm, "origins") else [],
            "last_errors": list(self.last_errors),
        }


_FAILED = object()


def await_me_maybe_sync(function: Callable[..., Any], args: dict[str, Any]) -> Awaitable[Any]:
    """Call a hook implementation; wrap its result so it can be awaited with a timeout."""

    async def run() -> Any:
        return await await_me_maybe(function(**args))

    return run()
