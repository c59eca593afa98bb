"""Each report kind opened in headless Chromium: the plots rendered (their SVG exists),
no console message at all, and a screenshot saved as an artifact (in tmp_path, or in
``$MLWARDEN_REPORT_SCREENSHOTS`` when set)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlwarden.daemon.experiments.records import evaluations_table, experiments_table
from tests.daemon.reports.helpers import ingest_and_check, model_config
from tests.helpers import require_binary

pytestmark = pytest.mark.integration


def open_in_chromium(binary: str, page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console messages) of ``page``; a screenshot beside."""
    common = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--virtual-time-budget=10000", "--window-size=1100,1600"]  # fmt: skip
    dom = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return dom.stdout, console


async def _experiment(warden) -> str:
    now = warden.clock()
    path = []
    for i in range(8):
        p = 0.5 / (i + 1) ** 2
        path.append({"ts": now - 3600 * (8 - i), "p_value": p, "lift": 0.1 + 0.01 * i,
                     "interval": [0.02 + 0.01 * i, 0.18 + 0.005 * i],
                     "n": 200 * (i + 1)})  # fmt: skip
    async with warden.store.begin() as conn:
        last = path[-1]
        result = {"recommendation": "PROMOTE_B", "reason": "B better at p < 0.05",
                  "p_value": last["p_value"], "lift": last["lift"],
                  "lift_interval": last["interval"], "confidence_level": 0.95,
                  "significance_threshold": 0.05, "sequential": True, "metric": "squared_error",
                  "samples": {"A": last["n"], "B": last["n"]},
                  "means": {"A": 1.0, "B": 0.9},
                  "srm": {"detected": False, "p_value": 0.7}}  # fmt: skip
        await conn.execute(
            experiments_table.insert().values(
                id="e1", name="ridge-vs-lasso", model="m", version_a="1.0.0", version_b="1.1.0",
                weight_b=0.5, duration_hours=24, status="concluded", started_at=now - 9 * 3600,
                ends_at=now, concluded_at=now - 60, actor="operator-token", settings="{}",
                auto_promote=False, previous_traffic="{}", sequential_state="{}",
                evaluations=len(path), result=json.dumps(result), recommendation="PROMOTE_B",
                winner="1.1.0",
            )
        )  # fmt: skip
        await conn.execute(
            evaluations_table.insert(),
            [
                {"experiment_id": "e1", "ts": p["ts"], "recommendation": "CONTINUE",
                 "p_value": p["p_value"], "samples_a": p["n"], "samples_b": p["n"],
                 "result": json.dumps({**result, "p_value": p["p_value"], "lift": p["lift"],
                                       "lift_interval": p["interval"]})}
                for p in path
            ],
        )  # fmt: skip
    return "e1"


async def test_each_report_renders_in_chromium(make_warden, make_client, tmp_path):
    binary = require_binary("chromium")
    warden = await make_warden(model_config(tmp_path))
    client = await make_client(warden)
    await ingest_and_check(client, shifted=False)
    await ingest_and_check(client, shifted=True)
    experiment = await _experiment(warden)
    artifacts = Path(os.environ.get("MLWARDEN_REPORT_SCREENSHOTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    pages = {
        "model": ("/api/models/m/report", 6),  # 5 distributions + the drift history
        "experiment": (f"/api/experiments/{experiment}/report", 3),
        "compliance": ("/api/compliance/report", 0),
    }
    for kind, (path, plots) in pages.items():
        resp = await client.get(path)
        assert resp.status == 200, await resp.text()
        page = tmp_path / f"{kind}.html"
        page.write_text(await resp.text())
        screenshot = artifacts / f"report-{kind}.png"
        dom, console = await _run(binary, page, screenshot)
        assert console == [], (kind, console)
        graphs = len(re.findall(r'class="plotly-graph-div', dom))
        rendered = len(re.findall(r'<svg class="main-svg"', dom))
        assert graphs == plots, (kind, graphs)
        # plotly draws two layered SVGs per figure once it has rendered
        assert rendered >= 2 * plots, (kind, rendered)
        assert 'id="verdict"' in dom
        assert screenshot.stat().st_size > 10_000
    assert shutil.which(binary)


async def _run(binary: str, page: Path, screenshot: Path) -> tuple[str, list[str]]:
    import asyncio

    return await asyncio.to_thread(open_in_chromium, binary, page, screenshot)
