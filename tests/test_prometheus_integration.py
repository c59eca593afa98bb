"""The demo's daemon scraped by a real Prometheus: every dashboard panel query and every
alert rule of alerting/ is run against it and must return data."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .helpers import free_port, http, require_binary
from .prometheus import PrometheusServer
from .test_grafana import dashboards

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerting/prometheus/mlwarden-rules.yml"
MODEL = "btc-usdt"

# A selector: a metric name with optional {matchers}, not followed by "(" (a function).
SELECTOR = re.compile(r"\b((?:mlwarden_[a-z_]+|up)(?:\{[^}]*\})?)(?!\s*\()")


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace")
        if text in content:
            return
        if proc.poll() is not None:
            raise AssertionError(f"demo exited {proc.returncode}:\n{content[-4000:]}")
        time.sleep(1)
    raise AssertionError(f"{text!r} not seen within {timeout}s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def demo(tmp_path: Path, mlflow_template: Path):
    base = tmp_path / "demo"
    base.mkdir()
    shutil.copy(mlflow_template, base / "mlflow.db")
    port = free_port()
    log = tmp_path / "demo.log"
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_BASE_PATH",)}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlwarden", "demo", "--listen", f"127.0.0.1:{port}",
             "--base-path", str(base), "--shift-after", "25", "--duration", "600"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_panels_and_alert_rules_return_data_on_a_real_prometheus(tmp_path, demo):
    require_binary("prometheus")
    promtool = require_binary("promtool")
    proc, port, log = demo
    prom = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{port}"], [RULES]).start()
    try:
        # The whole story: drift, retraining, a canary, then an A/B test.
        wait_for(log, "A/B test", proc, timeout=420)
        wait_for(log, "started (t=", proc, timeout=60)
        time.sleep(8)  # a few more scrapes and rule evaluations
        assert prom.targets_up(), prom.api("targets")

        missing = []
        for uid, title, expr in dashboards.queries():
            expr = expr.replace("$model", MODEL)
            if not prom.query_range(expr, seconds=600):
                missing.append(f"{uid} / {title}: {expr}")
        assert not missing, "panel queries without data:\n" + "\n".join(missing)

        rules = yaml.safe_load(RULES.read_text())
        checked = 0
        for group in rules["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                prom.query_range(expr, seconds=600)  # evaluates without error
                for selector in SELECTOR.findall(expr):
                    assert prom.query_range(selector, seconds=600), (
                        f"rule {rule['alert']}: {selector} has no data"
                    )
                    checked += 1
        assert checked >= 10
        loaded = prom.api("rules")["groups"]
        healths = {r["name"]: r["health"] for g in loaded for r in g["rules"]}
        assert healths and all(h in ("ok", "unknown") for h in healths.values()), healths
        assert set(healths) == {r["alert"] for g in rules["groups"] for r in g["rules"]}

        status, text = http("GET", f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        prom.stop()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]
