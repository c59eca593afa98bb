"""``mlwarden demo``: start the daemon with the demo configuration and drive the story."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .config import MODEL, demo_config_text
from .scenario import Scenario

__all__ = ["run_demo", "show_status"]

logger = logging.getLogger(__name__)


def run_demo(
    base_path: str,
    listen: str,
    *,
    apprise_urls: list[str] | None = None,
    shift_after: float = 45.0,
    duration: float | None = None,
    tls_cert: str = "",
    tls_key: str = "",
    cafile: str = "",
) -> int:
    """Run the demo until Ctrl-C (or for ``duration`` seconds); return the exit code.

    With ``tls_cert`` and ``tls_key`` the demo daemon serves HTTPS; the driver checks
    its certificate against ``cafile`` (else ``$MLWARDEN_CA_BUNDLE``, else the system's
    trust store), as ``mlwarden.client`` does.
    """
    from ..daemon.app import Daemon
    from ..daemon.core.config_loader import load_config

    base = Path(base_path).resolve()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "demo.toml"
    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("the demo's HTTPS needs both --tls-cert and --tls-key", "demo")
    tls = (tls_cert, tls_key) if tls_cert else None
    config_path.write_text(demo_config_text(base, listen, list(apprise_urls or []), tls))
    config = load_config(config_path)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The story's milestones and the alerts the log notifier delivers are the point.
    for name in ("mlwarden.demo", "mlwarden.notifications"):
        logging.getLogger(name).setLevel(logging.INFO)
    scheme = "https" if tls else "http"
    scenario = Scenario(
        f"{scheme}://{listen}",
        base / "demo",
        config.tracking_uri,
        shift_after=shift_after,
        cafile=cafile,
    )
    asyncio.run(scenario.prepare())
    daemon = Daemon(config, config_path=str(config_path))

    async def drive(d: Daemon) -> None:
        url = f"{d.scheme}://{d.address}"
        scenario.url = url
        print(_banner(url, base), flush=True)
        stop = asyncio.Event()
        scenario.progress.started = time.monotonic()  # the story's clock starts now
        runner = asyncio.create_task(scenario.run(stop))
        try:
            await show_status(scenario, runner, duration=duration)
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(runner, 10)
            print(_summary(scenario), flush=True)
            if duration:
                d.should_exit.set()
        if runner.done() and runner.exception():
            logger.error("demo driver failed", exc_info=runner.exception())
            d.should_exit.set()

    return asyncio.run(daemon.serve(drive))


async def show_status(
    scenario: Scenario,
    runner: asyncio.Task[None],
    *,
    duration: float | None = None,
    every: float = 5.0,
    out: Callable[[str], None] | None = None,
) -> None:
    """Print the status line until ``runner`` ends (or ``duration`` has passed).

    A line is printed at once when a milestone is reached and otherwise every
    ``every`` seconds, and only when what it says (regime, predictions, last
    milestone) changed since the last one.
    """
    out = out or functools.partial(print, flush=True)
    progress = scenario.progress
    deadline = time.monotonic() + duration if duration else None
    shown: tuple[str, int, str] | None = None
    while not runner.done():
        if progress.status() != shown:
            shown = progress.status()
            out(scenario.status_line())
        wait = every if deadline is None else min(every, deadline - time.monotonic())
        if wait <= 0:
            return
        progress.changed.clear()
        changed = asyncio.ensure_future(progress.changed.wait())
        try:
            await asyncio.wait({runner, changed}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await changed


def _banner(url: str, base: Path) -> str:
    return f"""
mlwarden demo — a simulated BTC/USDT market watched by a real mlwarden daemon.
  API:         {url}/api/models/{MODEL}     (also /api/jobs, /api/alerts, /api/experiments/history)
  Metrics:     {url}/metrics
  Drift:       {url}/api/models/{MODEL}/drift-history?days=1
  Deployment:  {url}/api/models/{MODEL}/deployment
  Dashboards:  grafana/dashboards/*.json (provision with grafana/provisioning/)
  MLflow UI:   mlflow ui --backend-store-uri sqlite:///{base}/mlflow.db
  State:       {base}
Time is accelerated: one market step is one simulated hour. The demo runs until you
press Ctrl-C (or for --duration seconds).
"""


def _summary(scenario: Scenario) -> str:
    lines = ["", "demo milestones:"]
    lines += [f"  t={t:5.0f}s  {name}" for name, t in scenario.progress.milestones.items()]
    return "\n".join(lines)
