"""The Warden: the composition root of the daemon and its in-process API.

``Warden`` builds the core context (configuration, plugin manager, store, MLflow,
metrics, audit log) and every service, and wires the services together: what one
service needs of another is handed to its constructor here, typed by the Protocols of
the provider's ``interfaces.py``. It is the only place that knows every service. It
starts and stops them, reloads the configuration, and offers the original
specification's calls (``monitor_model_drift``, ``get_model_performance_history``,
``get_system_health``, ...) as async methods. The HTTP API (``daemon/api/``) and the
CLI are thin layers over it. The key ring in use and what it seals (status, reload,
rotation) are ``warden.at_rest`` (daemon/keys/at_rest.py); :func:`offline_at_rest` opens
them for ``mlwarden keys`` when no daemon runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from .._version import __version__
from .alerts.service import AlertService
from .core.audit import AUDIT_SCHEMA, AuditLog
from .core.audit_seal import CheckpointWriter, checkpoint_dir, load_key
from .core.cluster import CLUSTER_SCHEMA
from .core.config import Config
from .core.config_checks import deprecation_warnings
from .core.config_loader import load_config
from .core.context import Clock, Context
from .core.daemon_lock import DaemonLock
from .core.encryption import Sealer, set_current_sealer
from .core.keys import load_keyring
from .core.metrics import Metrics
from .core.plugins import PluginCatalog, make_plugin_manager
from .core.service import Service
from .core.store import Store
from .core.tracking import Tracking, disable_telemetry
from .experiments.records import parse_arms
from .experiments.service import ExperimentService
from .ingest.service import IngestService
from .keys.at_rest import EncryptionAtRest
from .monitoring.compare import compare_versions
from .monitoring.drift import MonitorService
from .monitoring.estimation import EstimationService
from .monitoring.performance import PerformanceService
from .registry.cleanup import CleanupReport
from .registry.input import parse_ref
from .registry.interfaces import DirectPromotion, DirectRollback, VersionRecord
from .registry.service import RegistryService
from .reports.service import ReportService
from .rollouts.interfaces import Rollout
from .rollouts.service import RolloutService
from .training.jobs import JobService
from .training.scheduler import SchedulerService

__all__ = ["Warden", "offline_at_rest"]

logger = logging.getLogger(__name__)

#: Seconds a stop waits to leave the cluster on a SQLite store another connection has
#: locked (the next start there lets every lease go anyway).
_LEAVE_WAIT = 2.0


class Warden(Context):
    """mlwarden in-process: ``async with Warden(config) as warden: ...``.

    Its services are typed attributes (``warden.ingest``, ``warden.registry``, ...),
    started in the order of ``services`` and stopped in reverse.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock = time.time,
    ) -> None:
        disable_telemetry()
        config = config if config is not None else load_config()
        daemon = config.daemon
        pm = make_plugin_manager(daemon.plugins, daemon.disable_plugins)
        self.plugin_catalog = PluginCatalog(pm, daemon.disable_plugins)
        store = Store(config.database_url, config.store)
        enc = config.encryption
        keyring = load_keyring(enc.key_file, enc.key_env, enc.credential) if enc.enabled else None
        super().__init__(
            config,
            clock=clock,
            metrics=Metrics(registry),
            pm=pm,
            plugins=self.plugin_catalog,
            store=store,
            audit=AuditLog(store, clock),
            tracking=Tracking(config),
            sealer=Sealer(
                keyring,
                on_failure=lambda what, reason: self.at_rest.decryption_failed(what, reason),
                on_stored_failure=lambda exc: self.at_rest.decryption_failed(
                    exc.what, exc.reason, exc
                ),
            ),
        )
        #: The key ring in use and what it seals (daemon/keys/at_rest.py).
        self.at_rest = EncryptionAtRest(self)
        self.alerts = AlertService(self)
        self.registry = RegistryService(self)
        self.ingest = IngestService(self, registry=self.registry)
        self.estimation = EstimationService(self, windows=self.ingest)
        self.monitor = MonitorService(self, windows=self.ingest, estimation=self.estimation)
        self.performance = PerformanceService(self, outcomes=self.ingest, registry=self.registry)
        self.rollouts = RolloutService(self, registry=self.registry, ingest=self.ingest)
        self.experiments = ExperimentService(
            self, outcomes=self.ingest, registry=self.registry, traffic=self.rollouts
        )
        self.jobs = JobService(self, predictions=self.ingest, registry=self.registry)
        self.scheduler = SchedulerService(self, jobs=self.jobs, outcomes=self.ingest)
        self.reports = ReportService(self, windows=self.ingest)
        #: Every service by name, in start order.
        self.services: dict[str, Service] = {
            s.name: s
            for s in (
                self.alerts,
                self.ingest,
                self.estimation,
                self.monitor,
                self.registry,
                self.performance,
                self.rollouts,
                self.experiments,
                self.jobs,
                self.scheduler,
                self.reports,
            )
        }
        self.started_at: float | None = None
        self._started: list[Service] = []
        path = store.sqlite_path
        #: One daemon per SQLite store (core/daemon_lock.py); None on PostgreSQL.
        self.daemon_lock = DaemonLock(path) if path is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Warden:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.config.base_path.mkdir(parents=True, exist_ok=True)
        for warning in deprecation_warnings(self.config):
            logger.warning("%s", warning)
        if self.daemon_lock is not None:
            self.daemon_lock.acquire()  # ConfigError: another daemon runs on this store
        try:
            await self._start()
        except BaseException:
            # Undo what started (services, their tasks, the cluster membership, the
            # store, the lock) so that a failed start leaves nothing running or held.
            try:
                await self.stop()
            except Exception:
                logger.exception("could not undo a failed start cleanly")
            raise

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.at_rest.start()
        # The audit chain's key and checkpoints live outside the database (audit_seal.py).
        key = load_key(self.config.base_path, create=True)
        assert key is not None  # created when missing
        self.audit.seal(key, CheckpointWriter(checkpoint_dir(self.config.base_path), key))
        schemas = [AUDIT_SCHEMA, CLUSTER_SCHEMA] + [
            s.schema for s in self.services.values() if s.schema
        ]
        await self.store.open(schemas)
        await self.at_rest.check_keys()
        await asyncio.get_running_loop().run_in_executor(None, self.tracking.setup)
        await self.cluster.join()
        await self.cluster.heartbeat()
        self.spawn(self.cluster.run(), name="cluster-heartbeat")
        for service in self.services.values():
            await service.start()
            self._started.append(service)
            if hasattr(service, "mlwarden_event"):
                self.pm.register(service, name=f"mlwarden.service.{service.name}")
        self.started_at = self.clock()
        self.metrics.up_since.set(self.started_at)
        self.metrics.zero_known_series(self.config, self.pm)
        await self.call_hook("mlwarden_startup", warden=self)
        # What start-up built (modules, MLflow, plugins: millions of objects) lives as
        # long as the process. Left to the collector, every full collection walks all of
        # it while holding the GIL, which stalls the event loop for hundreds of
        # milliseconds under allocation-heavy work such as a long export; frozen, it is
        # left out of every collection.
        gc.freeze()

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
        if self.store.engine is not None and self.cluster.started_at is not None:
            try:
                await self.cluster.leave(wait=min(timeout, _LEAVE_WAIT))
            except Exception:
                logger.exception(
                    "could not leave the cluster cleanly (pooled connections held by: %s)",
                    self.store.holders(),
                )
            self.cluster.started_at = None
        await self.store.close()
        self.audit.close()
        if self.daemon_lock is not None:
            self.daemon_lock.release()
        self.started_at = None
        self.at_rest.stop()

    async def reload(self, config: Config) -> None:
        """Adopt ``config``; on any error the old configuration stays in force."""
        old = self.config
        if (config.daemon.plugins, config.daemon.disable_plugins) != (
            old.daemon.plugins,
            old.daemon.disable_plugins,
        ):
            # Plugins are loaded once; changing the set needs a restart, say so.
            logger.warning("daemon.plugins / daemon.disable_plugins change needs a restart")
        for key in ("base_path", "listen"):
            if getattr(config.daemon, key) != getattr(old.daemon, key):
                logger.warning("daemon.%s changed: takes effect after a restart", key)
        if (config.database_url, config.store) != (old.database_url, old.store):
            logger.warning("[store] changed: takes effect after a restart")
        if config.encryption.ids != old.encryption.ids:
            logger.warning(
                "encryption.ids changed: ignored; a store keeps the choice of its first "
                "start with encryption on (docs/security.md)"
            )
        self.config = config
        try:
            for service in self._started:
                await service.reload(config)
        except Exception:
            self.config = old
            for service in self._started:
                await service.reload(old)
            raise

    def service(self, name: str) -> Service:
        """The service called ``name``. Deprecated: use the attribute (``warden.ingest``)."""
        warnings.warn(
            f"Warden.service({name!r}) is deprecated; use the typed attribute warden.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.services[name]

    # -- the in-process API ----------------------------------------------------------

    async def register_model(self, model: str, **registration: Any) -> VersionRecord:
        """Register a model version (``POST /api/models/{name}/versions``); its record."""
        return await self.registry.register(model, **registration)

    async def promote(
        self,
        model: str,
        version: str,
        *,
        strategy: str | None = None,
        actor: str = "api",
        reason: str = "",
    ) -> Rollout | DirectPromotion:
        """Put ``version`` of ``model`` in production: through a rollout when a strategy
        applies (asked for, or the model's), else directly."""
        return await self.rollouts.promote(
            model, version, strategy=strategy, actor=actor, reason=reason
        )

    async def rollback(
        self, model: str, version: str | None = None, *, actor: str = "api", reason: str = ""
    ) -> Rollout | DirectRollback:
        """Restore the previous production version of ``model`` (or ``version``)."""
        return await self.rollouts.rollback(model, version=version, actor=actor, reason=reason)

    async def compare_models(self, a: str, b: str, *, hours: float | None = None) -> dict[str, Any]:
        """Compare ``NAME@VERSION`` ``a`` and ``b``: metrics, params, performance, drift."""
        return await compare_versions(
            self.registry,
            self.performance,
            self.monitor,
            parse_ref(a, "a"),
            parse_ref(b, "b"),
            hours=self.config.monitoring.window_hours if hours is None else hours,
            now=self.clock(),
        )

    async def cleanup(
        self,
        older_than_days: float = 30.0,
        *,
        dry_run: bool = False,
        model: str | None = None,
        actor: str = "api",
    ) -> CleanupReport:
        """Remove deprecated/archived/failed versions older than ``older_than_days``."""
        return await self.registry.cleanup(
            older_than_days=older_than_days, dry_run=dry_run, model=model, actor=actor
        )

    async def estimate_model_performance(
        self, model: str, *, version: str | None = None
    ) -> dict[str, Any]:
        """Estimate ``model``'s metrics on the current window now (before its labels)."""
        return await self.estimation.estimate_now(model, version=version)

    async def get_model_performance_history(self, model: str, days: float = 30) -> dict[str, Any]:
        """Performance metrics of each version of ``model`` over the last ``days``."""
        return await self.performance.history(model, days)

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
        model, version_a, version_b = parse_arms(model_a, model_b)
        record = await self.experiments.start_experiment(
            model, version_a, version_b, name=test_name, weight_b=traffic_split,
            duration_hours=duration_hours, actor=actor, **options,
        )  # fmt: skip
        return str(record["id"])

    async def evaluate_ab_test(self, experiment_id: str, *, actor: str = "api") -> dict[str, Any]:
        """Evaluate experiment ``experiment_id`` now; its result (winner, p-value, interval,
        lift, samples per arm, SRM, power, recommendation) with its id and status."""
        record = await self.experiments.evaluate(experiment_id, actor=actor)
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
        return await self.monitor.check_frame(model, recent_data)

    async def check_drift(self, model: str) -> dict[str, Any]:
        """Run a drift check of ``model``'s current window now (``POST .../drift-check``)."""
        return await self.monitor.check(model)

    async def get_drift_history(self, model: str, days: float = 7.0) -> list[dict[str, Any]]:
        """Stored drift reports of the last ``days``, oldest first."""
        return await self.monitor.history(model, days=days)

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
            "plugins": [info.to_dict() for info in self.plugin_catalog.infos()],
            "plugin_modules": sorted(getattr(self.pm, "origins", {})),
            "last_errors": list(self.last_errors),
        }


@asynccontextmanager
async def offline_at_rest(config: Config) -> AsyncIterator[EncryptionAtRest]:
    """The key ring and sealed store of ``config`` with no daemon running (``mlwarden keys``
    when none answers): the store opened with every service's tables, closed on exit."""
    warden = Warden(config)
    schemas = [AUDIT_SCHEMA] + [s.schema for s in warden.services.values() if s.schema]
    await warden.store.open(schemas)
    set_current_sealer(warden.sealer)
    try:
        yield warden.at_rest
    finally:
        await warden.store.close()
