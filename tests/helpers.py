"""Test helpers: free ports, required binaries, and a real daemon in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REQUIRE_INTEGRATION = os.environ.get("MLWARDEN_REQUIRE_INTEGRATION") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_binary(name: str) -> str:
    """The path of ``name``; skips the test when missing, fails under CI's requirement."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (Debian: apt-get install the package that ships it)"
    if REQUIRE_INTEGRATION:
        pytest.fail(f"MLWARDEN_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)


def postgres_server_url() -> str:
    """The URL of the test PostgreSQL server (``.ci/postgres start`` exports it).

    Skips the test when unset; fails under CI's requirement, which starts one.
    """
    url = os.environ.get("MLWARDEN_TEST_POSTGRES_URL", "")
    if url:
        return url
    reason = (
        'MLWARDEN_TEST_POSTGRES_URL is not set: `eval "$(bash .ci/postgres start)"` starts '
        "a throwaway PostgreSQL (Debian package postgresql) and sets it"
    )
    if REQUIRE_INTEGRATION:
        pytest.fail(f"MLWARDEN_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 30,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A blocking HTTP call returning (status, parsed JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


async def store_sql(url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    """Run one SQL statement (``:name`` parameters; a list of dicts runs it per dict) on
    the store at ``url``, SQLite or PostgreSQL, from outside the daemon, as someone with
    access to the database would: the rows it returns, as dicts, committed.
    """
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(statement), params or {})
            return [dict(row) for row in result.mappings()] if result.returns_rows else []
    finally:
        await engine.dispose()


class DaemonProcess:
    """``mlwarden run`` in a real subprocess on a free loopback port."""

    def __init__(
        self,
        base_path: Path,
        config_text: str = "",
        env: dict[str, str] | None = None,
        mlflow_template: Path | None = None,
    ) -> None:
        self.base_path = Path(base_path)
        self.base_path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.base_path.parent / f"{self.base_path.name}.toml"
        self.log_path = self.base_path.parent / f"{self.base_path.name}.log"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        if mlflow_template and not (self.base_path / "mlflow.db").exists():
            shutil.copy(mlflow_template, self.base_path / "mlflow.db")
        self.write_config(config_text)

    def write_config(self, text: str) -> None:
        header = f'[daemon]\nbase_path = "{self.base_path}"\n'
        text = text.replace("[daemon]\n", header, 1) if "[daemon]" in text else header + text
        self.config_path.write_text(text)

    def start(self, wait: bool = True, timeout: float = 60) -> DaemonProcess:
        env = {
            **os.environ,
            "MLWARDEN_DISABLE_PLUGIN_AUTOLOAD": "",
            "PYTHONFAULTHANDLER": "1",  # stacks on SIGABRT (see wait)
            **self.env,
        }
        for var in ("MLOPS_BASE_PATH", "MLFLOW_TRACKING_URI"):
            if var not in self.env:
                env.pop(var, None)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlwarden",
                "run",
                "--config",
                str(self.config_path),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                status, _ = http("GET", self.url + "/healthz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon not healthy within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, method: str, path: str, body: Any = None, token: str | None = None, **kw):
        return http(method, self.url + path, body, token=token, **kw)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        finally:
            self._log.close()

    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit code; a daemon still running after ``timeout`` is aborted
        (faulthandler writes every thread's stack to its log) and the test fails with
        the end of that log."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            raise AssertionError(
                f"daemon still running {timeout}s after it was asked to stop; the end of "
                f"its log:\n{self.log()[-20000:]}"
            ) from None

    def kill(self) -> None:
        """kill -9: no cleanup at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self._log.close()


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll the blocking ``predicate`` every 0.1 s until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def second_warden(
    make_config: Any, text: str, first: Any, base_path: Path, instance: str, clock: Any
) -> Any:
    """A Warden (not started) beside ``first``: its store and MLflow, but a base path
    and a ``cluster.instance`` of its own (another daemon of the cluster)."""
    from mlwarden.daemon.warden import Warden

    overrides = {
        "daemon.base_path": str(base_path),
        "cluster.instance": instance,
        "mlflow.tracking_uri": first.config.tracking_uri,
        "mlflow.artifact_location": first.config.artifact_location,
    }
    return Warden(make_config(text, **overrides), clock=clock)
