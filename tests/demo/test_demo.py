"""The demo's papercuts: its status line, its log levels, its configuration, the README."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from mlwarden.daemon.core.config_loader import load_config
from mlwarden.demo.config import demo_config_text
from mlwarden.demo.run import show_status
from mlwarden.demo.scenario import Progress, Scenario

REPO = Path(__file__).resolve().parents[2]


def scenario(tmp_path: Path) -> Scenario:
    return Scenario("http://127.0.0.1:1", tmp_path, "sqlite:///x.db")


async def test_the_status_line_shows_a_milestone_at_once_and_never_repeats_itself(tmp_path):
    s = scenario(tmp_path)
    lines: list[tuple[float, str]] = []
    started = asyncio.get_running_loop().time()

    def out(line: str) -> None:
        lines.append((asyncio.get_running_loop().time() - started, line))

    async def story() -> None:
        await asyncio.sleep(0.3)
        s.progress.mark("model trained")
        await asyncio.sleep(0.3)
        s.progress.mark("model promoted")
        await asyncio.sleep(0.3)

    runner = asyncio.create_task(story())
    await show_status(s, runner, every=5.0, out=out)
    texts = [line.split("] ", 1)[1] for _, line in lines]
    assert len(texts) == len(set(texts)) == 3, lines  # "starting" once, then each milestone
    assert texts[0].endswith("| starting")
    # Each milestone is on screen well before the 5 s period would have shown it.
    assert lines[1][1].endswith("model trained") and lines[1][0] < 1.0
    assert lines[2][1].endswith("model promoted") and lines[2][0] < 1.5


async def test_show_status_stops_at_the_duration(tmp_path):
    s = scenario(tmp_path)
    runner = asyncio.create_task(asyncio.sleep(30))
    try:
        await asyncio.wait_for(show_status(s, runner, duration=0.3, out=lambda _: None), 3)
    finally:
        runner.cancel()


def test_milestones_are_logged_at_info(caplog):
    caplog.set_level(logging.INFO, logger="mlwarden.demo")
    Progress().mark("drift detected")
    (record,) = [r for r in caplog.records if "drift detected" in r.getMessage()]
    assert record.levelno == logging.INFO


def test_the_demo_delivers_alerts_within_seconds(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text(demo_config_text(tmp_path, "127.0.0.1:0", []))
    config = load_config(path, env={})
    # The alert engine's group wait is the delay between a condition and its first
    # notification; Alertmanager's 30 s default made the demo's alerts half a minute late.
    assert config.alerts.group_wait_seconds <= 5
    assert config.alerts.group_wait_seconds >= config.alerts.tick_seconds


def test_the_demo_state_is_ignored_by_git_and_the_readme_says_how_it_stops():
    ignored = (REPO / ".gitignore").read_text().split()
    assert "mlwarden-demo/" in ignored
    walkthrough = (REPO / "README.md").read_text().split("## Walkthrough: the demo", 1)[1]
    walkthrough = walkthrough.split("\n## ", 1)[0]
    assert re.search(r"runs until (you press )?Ctrl-C", walkthrough)
    # The performance trigger is what retrains first (MSE degrades at once); the drift
    # trigger's job comes after it, as a run shows.
    assert "performance trigger" in walkthrough
    assert "1.1.1" in walkthrough
