"""A real ``mlflow server`` for the tests: PostgreSQL backend, proxied artifacts.

The shape docs/operations.md ("Several daemons") tells operators to run: the backend
store is its own database on the test PostgreSQL server (MLflow runs its alembic
migrations into it at start), artifacts are served through the server
(``--serve-artifacts``) from a temporary directory, and the server listens on a free
loopback port. Start-up costs a few seconds (measured in ``startup_seconds``), so the
fixture that uses this is session-scoped and tests keep apart by model and
experiment names, not by servers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from .helpers import free_port

__all__ = ["MlflowServer", "ServerProxy", "sync_url"]


def sync_url(url: str) -> str:
    """``postgresql+asyncpg://…`` as MLflow's sync SQLAlchemy URL (psycopg2)."""
    scheme, _, rest = url.partition("://")
    return "postgresql+psycopg2://" + rest if scheme.startswith("postgresql") else url


class MlflowServer:
    """``mlflow server`` in a subprocess, with its own database created and dropped."""

    def __init__(self, postgres_url: str, workdir: Path) -> None:
        self.admin_url = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
        self.database = f"mlwarden_mlflow_{uuid.uuid4().hex[:12]}"
        self.backend_url = sync_url(postgres_url.rsplit("/", 1)[0] + "/" + self.database)
        self.artifacts = workdir / "mlartifacts"
        self.log_path = workdir / "mlflow-server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    async def _admin(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def start(self, timeout: float = 120) -> MlflowServer:
        began = time.monotonic()
        asyncio.run(self._admin(f'CREATE DATABASE "{self.database}"'))
        self.artifacts.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # Server-side jobs (GenAI scorers, trace rollups) are not mlwarden's: without
            # this the server starts a job runner and seven huey consumers (8 processes,
            # ~1 GB), which double its start-up time on a busy machine.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            env.pop(var, None)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        # One worker: the tests are its only clients, and each worker pays the imports.
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_url,
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        self.startup_seconds = time.monotonic() - began
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # Its own session: the uvicorn worker goes with the server process.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc is not None:
            self._log.close()
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))


class ServerProxy:
    """A reverse proxy (aiohttp, in the test's loop) in front of an MLflow server.

    ``token``: answer 401 to any request without ``Authorization: Bearer <token>``.
    ``lose_answer``: the first request to that path is forwarded and done by the server,
    but its caller gets a 503 instead of the answer (a reply lost on the way), so
    MLflow's client retries it. ``seen`` holds (path, status) of every request.
    """

    def __init__(self, target: str, *, token: str | None = None, lose_answer: str = "") -> None:
        self.target = target
        self.token = token
        self.lose_answer = lose_answer
        self.seen: list[tuple[str, int]] = []
        self.url = ""

    async def start(self) -> ServerProxy:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def _forward(self, request):
        from aiohttp import web

        hop = {"host", "content-length", "transfer-encoding", "connection"}
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            self.seen.append((request.path, 401))
            return web.json_response({"error_code": "UNAUTHENTICATED"}, status=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
        async with self._session.request(
            request.method,
            self.target + request.rel_url.path_qs,
            headers=headers,
            data=await request.read(),
        ) as upstream:
            body = await upstream.read()
            if request.path == self.lose_answer:
                self.lose_answer = ""
                self.seen.append((request.path, 503))
                return web.json_response({"error_code": "TEMPORARILY_UNAVAILABLE"}, status=503)
            self.seen.append((request.path, upstream.status))
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in hop}
            return web.Response(status=upstream.status, body=body, headers=out)

    async def close(self) -> None:
        """Stop answering (the port then refuses connections); idempotent."""
        if not self._session.closed:
            await self._runner.cleanup()
            await self._session.close()
