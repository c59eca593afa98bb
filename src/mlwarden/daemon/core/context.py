"""The core context: what every service of the daemon gets, typed.

A service is built with a :class:`Context` and, for what it needs of another service,
constructor arguments typed by small Protocols (each provider's ``interfaces.py``); the
composition root (``daemon/warden.py``) wires both. The context holds the
configuration in force, the store, the metrics, the audit log, MLflow tracking, the
clock, the plugins and the cluster (membership, leases of cluster-wide work), and
offers the daemon-wide actions: ``spawn`` an owned background task, ``emit`` an
event, ``call_hook`` on every plugin with isolation and a timeout, and
``record_error`` for ``/api/system/health``.

The running ``Warden`` is a Context; a service typed against Context cannot reach the
other services through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import pluggy

from ...types import Event
from .audit import AuditLog
from .cluster import Cluster
from .config import Config
from .encryption import Sealer
from .leases import no_lease
from .metrics import Metrics
from .outage import log_failure
from .store import Store
from .tracking import Tracking

__all__ = ["Clock", "Context", "PluginClasses", "await_me_maybe"]

logger = logging.getLogger(__name__)

#: Seconds a stop waits, in all, for its tasks to be out of the store before cancelling.
_QUIET_WAIT = 2.0

#: Unix time now; tests inject a clock they move by hand.
Clock = Callable[[], float]


class PluginClasses(Protocol):
    """The plugin classes of every kind by name (``core.plugins.PluginCatalog``)."""

    def get(self, kind: str, name: str) -> type:
        """The class of ``kind`` called ``name``; PluginError names the known ones."""
        ...

    def names(self, kind: str) -> list[str]:
        """The names of every class of ``kind``, sorted."""
        ...

    def classes(self, kind: str) -> dict[str, type]:
        """Every class of ``kind`` by name."""
        ...


async def await_me_maybe(value: Any) -> Any:
    """Await ``value`` if it is awaitable (a hook may return either)."""
    if inspect.isawaitable(value):
        return await value
    return value


_FAILED = object()

#: At most this many plain-function hook calls run at once, each on its own thread.
HOOK_THREADS = 16


class HookThreads:
    """Runs plain-function (sync) hook implementations off the event loop.

    Each call gets a daemon thread, so a hook that blocks forever neither freezes the
    loop nor holds the process at exit. A thread cannot be stopped: a call its caller
    stopped waiting for (the plugin timeout) keeps its slot until it really returns,
    so hooks that hang use up at most ``limit`` threads and later calls wait for a
    slot inside their own timeout.
    """

    def __init__(self, limit: int = HOOK_THREADS) -> None:
        self.limit = limit
        self._slots: asyncio.Semaphore | None = None
        #: Calls still running on a thread (also those nobody waits for any more).
        self.running = 0

    async def run(self, function: Callable[..., Any], args: dict[str, Any]) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        slots = self._slots
        await slots.acquire()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def settle(result: Any, error: BaseException | None) -> None:
            self.running -= 1
            slots.release()
            if future.done():  # the caller stopped waiting (timed out)
                if error is not None:
                    logger.debug("hook %r raised after its timeout: %r", function, error)
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def work() -> None:
            result, error = None, None
            try:
                result = context.run(function, **args)
            except BaseException as exc:
                error = exc
            # A closed loop: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        name = getattr(function, "__qualname__", "hook")
        self.running += 1
        try:
            threading.Thread(target=work, name=f"mlwarden-hook-{name}", daemon=True).start()
        except BaseException:
            self.running -= 1
            slots.release()
            raise
        return await future


class Context:
    """Configuration, store, metrics, audit, tracking, clock, plugins; spawn, emit, hooks."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        metrics: Metrics,
        pm: pluggy.PluginManager,
        plugins: PluginClasses,
        store: Store,
        audit: AuditLog,
        tracking: Tracking,
        sealer: Sealer | None = None,
    ) -> None:
        #: The configuration in force; a reload replaces it.
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.pm = pm
        self.plugins = plugins
        self.store = store
        self.audit = audit
        self.tracking = tracking
        #: Seals and opens objects at rest (passes them through with encryption off).
        self.sealer = sealer if sealer is not None else Sealer(None)
        #: This daemon as a cluster member, and the leases of the work it owns.
        self.cluster = Cluster(store, lambda: self.config, metrics)
        #: The most recent errors of background work, newest last (at most 20).
        self.last_errors: list[dict[str, Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.hook_threads = HookThreads()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- background tasks ------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as an owned task: logged if it fails, cancelled at stop.

        May be called from a plain-function hook, which runs on a worker thread: the
        task is then created on the daemon's loop.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None or self._loop.is_closed():
                raise
            spawning = asyncio.run_coroutine_threadsafe(self._spawn_now(coro, name), self._loop)
            return spawning.result()
        # A task spawned from leased work is not leased work itself (leases.holding).
        detached = contextvars.copy_context()
        detached.run(no_lease)
        task = loop.create_task(coro, name=name, context=detached)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def _spawn_now(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        return self.spawn(coro, name)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())
            self.record_error(task.get_name(), repr(task.exception()))

    async def cancel_tasks(self, timeout: float) -> None:
        """Cancel every owned task and wait up to ``timeout`` for them to end.

        A task is cancelled while it holds no connection of the store (waiting for
        that up to :data:`_QUIET_WAIT` in all): cut in the middle of a statement,
        SQLAlchemy would invalidate its connection rather than end its transaction.
        """
        tasks = list(self._tasks)
        loop = asyncio.get_running_loop()
        quiet_until = loop.time() + min(timeout, _QUIET_WAIT)
        for task in tasks:
            while self.store.busy(task) and loop.time() < quiet_until:
                await asyncio.sleep(0.005)
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                logger.warning("task %s did not finish within %.1fs", task.get_name(), timeout)

    def record_error(self, where: str, message: str) -> None:
        """Keep ``message`` among the last errors that ``/api/system/health`` shows."""
        self.last_errors.append({"ts": self.clock(), "where": where, "message": message})
        del self.last_errors[:-20]

    def failed(
        self, log: logging.Logger, exc: BaseException, where: str, message: str, *args: object
    ) -> None:
        """A tick of background work failed with ``exc``: a store out of reach is logged
        once per outage (core/outage.py) and the loop tries again at its next tick;
        anything else is logged with its traceback and kept as one of ``last_errors``."""
        if not log_failure(log, self.store.outage, exc, message, *args):
            self.record_error(where, repr(exc))

    # -- plugins and events ----------------------------------------------------------

    async def call_hook(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of a hook, each isolated and timed out.

        An ``async def`` implementation runs on the loop; a plain function runs on a
        worker thread (``HookThreads``), so one that blocks never freezes the daemon, and
        an awaitable it returns is awaited on the loop. Either way an implementation
        that raises or exceeds ``daemon.plugin_timeout_seconds`` is logged with its
        plugin's name and counted in ``mlwarden_plugin_errors_total``; its result is
        left out and the others still run.
        """
        hook = getattr(self.pm.hook, hook_name)
        timeout = self.config.daemon.plugin_timeout_seconds
        self._loop = asyncio.get_running_loop()

        async def call(impl: pluggy.HookImpl) -> Any:
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                return await asyncio.wait_for(self._call(impl.function, args), timeout)
            except Exception as exc:
                self.plugin_failed(impl.plugin_name, hook_name, exc)
                return _FAILED

        results = await asyncio.gather(*(call(impl) for impl in reversed(hook.get_hookimpls())))
        return [r for r in results if r is not _FAILED]

    def plugin_failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Log and count a plugin that raised or timed out; the daemon goes on."""
        kind = "timed out" if isinstance(exc, TimeoutError) else f"raised {exc!r}"
        logger.error("plugin %s %s in %s", plugin, kind, hook, exc_info=exc)
        self.metrics.plugin_errors.labels(plugin, hook).inc()
        self.record_error(f"plugin {plugin} ({hook})", kind)

    async def emit(self, event: Event) -> None:
        """Dispatch ``event`` to every ``mlwarden_event`` implementation."""
        self.metrics.events.labels(event.kind).inc()
        logger.debug("event %s model=%s version=%s", event.kind, event.model, event.version)
        await self.call_hook("mlwarden_event", event=event)

    async def _call(self, function: Callable[..., Any], args: dict[str, Any]) -> Any:
        """Call a hook implementation; a coroutine, so it can be awaited with a timeout."""
        if inspect.iscoroutinefunction(function):
            return await function(**args)
        return await await_me_maybe(await self.hook_threads.run(function, args))
