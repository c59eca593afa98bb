"""The daemon's lifecycle: one owner, like uvicorn's Server.

``startup()`` starts the Warden and the HTTP server, then tells systemd READY=1;
``main_loop()`` waits for a signal, pings the watchdog and serves reloads (SIGHUP);
``shutdown()`` tells systemd STOPPING=1, stops accepting connections, lets in-flight
requests finish within ``daemon.shutdown_timeout_seconds`` (then cancels the rest),
then stops the services, each within the same timeout. A second SIGINT or SIGTERM
skips the wait for in-flight requests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from .api import IN_FLIGHT, build_app
from .core.config import Config
from .core.config_loader import load_config
from .core.systemd import SystemdNotifier
from .warden import Warden

__all__ = ["Daemon", "check_listen_address", "is_loopback"]

logger = logging.getLogger(__name__)

#: Seconds aiohttp gets to cancel and close the requests still running after the drain.
_CANCEL_GRACE = 1.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen_address(config: Config) -> None:
    """Refuse a non-loopback address when no tokens are configured."""
    if not config.auth.tokens and not is_loopback(config.daemon.host):
        raise ConfigError(
            f"key 'daemon.listen': {config.daemon.listen!r} is not a loopback address and "
            "no [[auth.tokens]] are configured; refusing to serve the API unauthenticated "
            "(mint a token with `mlwarden token`)",
            config.source,
        )


class Daemon:
    """Runs a Warden behind the HTTP API until told to stop."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.overrides = dict(overrides or {})
        self.systemd = notifier or SystemdNotifier()
        self.warden: Warden | None = None
        self.runner: web.AppRunner | None = None
        self.should_exit = asyncio.Event()
        self.force_exit = asyncio.Event()
        self.address = config.daemon.listen
        self._reload_requested = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None

    async def serve(
        self, companion: Callable[[Daemon], Coroutine[Any, Any, Any]] | None = None
    ) -> int:
        """Run until SIGTERM/SIGINT; ``companion(daemon)`` runs alongside once ready.

        The companion (the demo's market driver) is cancelled before shutdown; if it
        returns or fails, the daemon keeps serving.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        task: asyncio.Task[Any] | None = None
        try:
            await self.startup()
            if companion is not None:
                task = asyncio.create_task(companion(self), name="companion")
            await self.main_loop()
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await self.shutdown()
        return 0

    def handle_exit(self, sig: int) -> None:
        if self.should_exit.is_set():
            logger.warning(
                "second %s: not waiting for in-flight requests", signal.Signals(sig).name
            )
            self.force_exit.set()
        self.should_exit.set()

    async def startup(self) -> None:
        check_listen_address(self.config)
        self.warden = Warden(self.config)
        await self.warden.start()
        app = build_app(self.warden)
        self.runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            # The drain in shutdown() waits for requests; this is the grace to cancel them.
            shutdown_timeout=_CANCEL_GRACE,
        )
        await self.runner.setup()
        d = self.config.daemon
        site = web.TCPSite(self.runner, d.host, d.port, reuse_address=True)
        await site.start()
        self.address = self._bound_address()
        logger.info(
            "mlwarden listening on http://%s (state in %s)", self.address, self.config.base_path
        )
        self.systemd.ready(f"serving on {self.address}")
        interval = self.systemd.watchdog_interval
        if interval:
            self._watchdog = asyncio.create_task(self._watchdog_loop(interval), name="watchdog")

    def _bound_address(self) -> str:
        assert self.runner is not None
        for server in self.runner.addresses:
            host, port = server[0], server[1]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self.config.daemon.listen

    async def main_loop(self) -> None:
        while not self.should_exit.is_set():
            exit_wait = asyncio.ensure_future(self.should_exit.wait())
            reload_wait = asyncio.ensure_future(self._reload_requested.wait())
            await asyncio.wait({exit_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED)
            exit_wait.cancel()
            reload_wait.cancel()
            if self._reload_requested.is_set() and not self.should_exit.is_set():
                self._reload_requested.clear()
                await self.reload()

    async def reload(self) -> bool:
        """Re-read the config file; a bad file keeps the old configuration running."""
        assert self.warden is not None
        self.systemd.reloading()
        try:
            config = load_config(self.config_path, overrides=self.overrides)
            check_listen_address(config)
            await self.warden.reload(config)
        except ConfigError as exc:
            for problem in exc.problems:
                logger.error(
                    "reload refused, keeping the running configuration: %s: %s", exc.source, problem
                )
            self.systemd.ready("reload refused; running the previous configuration")
            return False
        except Exception as exc:
            logger.error("reload refused, keeping the running configuration: %s", exc)
            self.systemd.ready("reload refused; running the previous configuration")
            return False
        self.config = config
        logging.getLogger("mlwarden").setLevel(config.daemon.log_level)
        logger.info("configuration reloaded from %s", config.source)
        self.systemd.ready(f"serving on {self.address}")
        return True

    async def _drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for in-flight requests (a second signal cuts it short)."""
        assert self.runner is not None
        tracker = self.runner.app[IN_FLIGHT]
        tracker.draining = True
        if not tracker.count:
            return
        logger.info("waiting up to %.1fs for %d in-flight requests", timeout, tracker.count)
        idle = asyncio.ensure_future(tracker.wait_idle())
        forced = asyncio.ensure_future(self.force_exit.wait())
        await asyncio.wait({idle, forced}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()
        forced.cancel()
        if tracker.count:
            logger.warning("cancelling %d requests still in flight", tracker.count)

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            self.systemd.watchdog()
            await asyncio.sleep(interval)

    async def shutdown(self) -> None:
        self.systemd.stopping()
        logger.info("shutting down")
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        timeout = self.config.daemon.shutdown_timeout_seconds
        if self.runner is not None:
            for site in list(self.runner.sites):
                await site.stop()  # no new connections from here on
            await self._drain(timeout)
            try:
                await asyncio.wait_for(self.runner.cleanup(), 2 * _CANCEL_GRACE + 1)
            except TimeoutError:
                logger.warning("HTTP server did not close within %.1fs", 2 * _CANCEL_GRACE + 1)
        if self.warden is not None:
            await self.warden.stop(timeout)
        logger.info("stopped")
