"""A real Prometheus server (the Debian ``prometheus`` binary) for integration tests."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .helpers import free_port, require_binary


class PrometheusServer:
    """Scrapes ``targets`` every second; ``query()`` runs PromQL against it."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] = ()) -> None:
        self.binary = require_binary("prometheus")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = "".join(f"  - {p}\n" for p in rule_files)
        config = (
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            + (f"rule_files:\n{rules}" if rule_files else "")
            + "scrape_configs:\n  - job_name: mlwarden\n    static_configs:\n"
            + f"      - targets: {json.dumps(targets)}\n"
        )
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> PrometheusServer:
        self._log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready:\n" + self.log())

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query now; the result vector (or a one-element list for scalars)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, seconds: float, step: str = "5s") -> list[dict[str, Any]]:
        """Range query over the last ``seconds`` (as a Grafana panel asks)."""
        import time as _time

        end = _time.time()
        data = self.api(
            "query_range", query=expr, start=str(end - seconds), end=str(end), step=step
        )
        return data["result"]

    def targets_up(self) -> bool:
        data = self.api("targets")
        active = data["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._log.close()
