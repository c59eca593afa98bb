"""``mlwarden demo``: start the daemon with the demo configuration and drive the story."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path

from .config import MODEL, demo_config_text
from .scenario import Scenario

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


def run_demo(
    base_path: str,
    listen: str,
    *,
    apprise_urls: list[str] | None = None,
    shift_after: float = 45.0,
    duration: float | None = None,
) -> int:
    """Run the demo until Ctrl-C (or for ``duration`` seconds); return the exit code."""
    from ..daemon.app import Daemon
    from ..daemon.core.config_loader import load_config

    base = Path(base_path).resolve()
    base.mkdir(parents=True, exist_ok=True)
    config_path = base / "demo.toml"
    config_path.write_text(demo_config_text(base, listen, list(apprise_urls or [])))
    config = load_config(config_path)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("mlwarden.notifications").setLevel(logging.INFO)
    scenario = Scenario(
        f"http://{listen}", base / "demo", config.tracking_uri, shift_after=shift_after
    )
    asyncio.run(scenario.prepare())
    daemon = Daemon(config, config_path=str(config_path))

    async def drive(d: Daemon) -> None:
        url = f"http://{d.address}"
        scenario.url = url
        print(_banner(url, base), flush=True)
        stop = asyncio.Event()
        runner = asyncio.create_task(scenario.run(stop))
        deadline = time.monotonic() + duration if duration else None
        try:
            while not runner.done():
                print(scenario.status_line(), flush=True)
                if deadline and time.monotonic() >= deadline:
                    break
                await asyncio.wait({runner}, timeout=5)
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
Time is accelerated: one market step is one simulated hour. Ctrl-C stops.
"""


def _summary(scenario: Scenario) -> str:
    lines = ["", "demo milestones:"]
    lines += [f"  t={t:5.0f}s  {name}" for name, t in scenario.progress.milestones.items()]
    return "\n".join(lines)
