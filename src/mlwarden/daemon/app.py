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
import ssl
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from .api import IN_FLIGHT, build_app
from .core.config import Config, TlsConfig
from .core.config_loader import load_config
from .core.redaction import install_redactor
from .core.systemd import SystemdNotifier
from .warden import Warden

__all__ = ["Daemon", "build_ssl_context", "check_listen_address", "is_loopback"]

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
    """Refuse a non-loopback address without tokens, or without TLS unless allowed."""
    if is_loopback(config.daemon.host):
        return
    if not config.auth.tokens:
        raise ConfigError(
            f"key 'daemon.listen': {config.daemon.listen!r} is not a loopback address and "
            "no [[auth.tokens]] are configured; refusing to serve the API unauthenticated "
            "(mint a token with `mlwarden token`)",
            config.source,
        )
    if not config.tls.enabled and not config.daemon.allow_plaintext:
        raise ConfigError(
            f"key 'daemon.listen': {config.daemon.listen!r} is not a loopback address and "
            "[tls] is not configured; refusing to send bearer tokens over plain HTTP (set "
            "tls.cert_file and tls.key_file, or daemon.allow_plaintext = true behind a "
            "TLS-terminating proxy; docs/security.md)",
            config.source,
        )


def build_ssl_context(tls: TlsConfig, source: str = "<config>") -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2+ (or 1.3), the certificate, optional client CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    _load_cert(ctx, tls, source)
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"key 'tls.client_ca_file': cannot load {tls.client_ca_file}: {exc}", source
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_cert(ctx: ssl.SSLContext, tls: TlsConfig, source: str) -> None:
    if not tls.key_file:
        raise ConfigError("key 'tls.key_file': required with tls.cert_file", source)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        # The message names the files, never their contents.
        raise ConfigError(
            f"keys 'tls.cert_file'/'tls.key_file': cannot load {tls.cert_file} with "
            f"{tls.key_file}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}",
            source,
        ) from None


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
        self.ssl_context: ssl.SSLContext | None = None

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
        if self.config.tls.enabled:
            self.ssl_context = build_ssl_context(self.config.tls, self.config.source)
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
        site = web.TCPSite(
            self.runner, d.host, d.port, reuse_address=True, ssl_context=self.ssl_context
        )
        await site.start()
        self.address = self._bound_address()
        logger.info(
            "mlwarden listening on %s://%s (state in %s)",
            self.scheme,
            self.address,
            self.config.base_path,
        )
        self.systemd.ready(f"serving on {self.address}")
        interval = self.systemd.watchdog_interval
        if interval:
            self._watchdog = asyncio.create_task(self._watchdog_loop(interval), name="watchdog")

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def _reload_tls(self, config: Config) -> None:
        """Load the (renewed) certificate into the live context: new connections use it."""
        old, new = self.config.tls, config.tls
        if new.enabled != old.enabled or new.client_ca_file != old.client_ca_file:
            raise ConfigError(
                "turning [tls] on or off or changing tls.client_ca_file needs a restart",
                config.source,
            )
        if self.ssl_context is None or not new.enabled:
            return
        # Loaded into a scratch context first: a bad pair never reaches the live one.
        _load_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), new, config.source)
        _load_cert(self.ssl_context, new, config.source)
        logger.info("TLS certificate reloaded from %s", new.cert_file)

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
            self._reload_tls(config)
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
        install_redactor(config)
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
