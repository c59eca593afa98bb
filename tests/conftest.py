"""Shared fixtures: a real Warden on a temp base path, a real HTTP server, a real daemon."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ["MLWARDEN_DISABLE_PLUGIN_AUTOLOAD"] = os.environ.get("MLWARDEN_TEST_AUTOLOAD", "1")
for _var in ("MLOPS_BASE_PATH", "MLFLOW_TRACKING_URI"):
    os.environ.pop(_var, None)

from mlwarden.daemon.api import Route, build_app  # noqa: E402
from mlwarden.daemon.core.config_loader import load_config  # noqa: E402
from mlwarden.daemon.warden import Warden  # noqa: E402

from .helpers import DaemonProcess, postgres_server_url  # noqa: E402


@pytest.fixture(autouse=True)
def _mlflow_uri_restored():
    """MLflow 3's ``set_tracking_uri`` writes ``MLFLOW_TRACKING_URI`` into os.environ:
    undone after each test, or later tests' subprocesses inherit another test's store."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema created once; copied into each test.

    Creating the schema runs every alembic migration (seconds); copying is instant and
    the daemon's start-up upgrade then finds it current.
    """
    from mlwarden.daemon.core.tracking import upgrade_schema

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    upgrade_schema(f"sqlite:///{path}")
    return path


@pytest.fixture
async def new_postgres_url():
    """A factory of fresh, empty PostgreSQL databases on the test server; all dropped after."""
    import uuid

    import asyncpg

    server = postgres_server_url()
    admin = server.replace("postgresql+asyncpg://", "postgresql://")
    names: list[str] = []

    async def make() -> str:
        name = f"mlwarden_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        names.append(name)
        return server.rsplit("/", 1)[0] + "/" + name

    yield make
    if names:
        conn = await asyncpg.connect(admin)
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def postgres_url(new_postgres_url) -> str:
    """A fresh, empty PostgreSQL database on the test server; dropped afterwards."""
    return await new_postgres_url()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """One real ``mlflow server`` for the session (tests/mlflow_server.py): its own
    PostgreSQL database, artifacts proxied to a temp dir. Tests keep apart by model names.
    """
    from .mlflow_server import MlflowServer

    server = MlflowServer(postgres_server_url(), tmp_path_factory.mktemp("mlflow-server"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store, once on each backend (SQLite in a temp dir, PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'store' / 'mlwarden.db'}"
    return request.getfixturevalue("postgres_url")


BACKENDS = ("sqlite", "postgresql")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the test's Warden on SQLite and on PostgreSQL"
    )
    config.addinivalue_line(
        "markers",
        "store_backend: (set by conftest) the test's store follows MLWARDEN_TEST_BACKEND; "
        "`-m store_backend` selects what a run on PostgreSQL adds to one on SQLite",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests whose store ``MLWARDEN_TEST_BACKEND`` picks: they use ``backend``
    (``make_config``, ``warden``, ``make_warden``…) and do not choose the store
    themselves (``both_backends``, a ``backend`` or ``store_url`` parameter: they run on
    each store in every run anyway)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "backend" in getattr(item, "fixturenames", ()) and not (
            "backend" in params or "store_url" in params
        ):
            item.add_marker(pytest.mark.store_backend)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.both_backends`` (or a module's pytestmark) runs a test on each store."""
    chosen = any(  # a test's own @pytest.mark.parametrize("backend", ...) wins
        "backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")
    )
    if (
        "backend" in metafunc.fixturenames
        and not chosen
        and metafunc.definition.get_closest_marker("both_backends")
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store of ``make_config``'s Wardens: SQLite unless marked ``both_backends``.

    ``MLWARDEN_TEST_BACKEND=postgresql`` puts every unmarked test on PostgreSQL too.
    """
    default = os.environ.get("MLWARDEN_TEST_BACKEND", "sqlite")
    return getattr(request, "param", default)


@pytest.fixture
def store_overrides(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """``store.url`` of a fresh PostgreSQL database on that backend, else nothing."""
    if backend == "postgresql":
        return {"store.url": request.getfixturevalue("postgres_url")}
    return {}


@pytest.fixture
def new_store_overrides(backend: str, request: pytest.FixtureRequest):
    """A factory of overrides for one more Warden with a store of its own: on SQLite
    nothing (its own ``daemon.base_path`` gives it one), on PostgreSQL a fresh database."""

    new_url = request.getfixturevalue("new_postgres_url") if backend == "postgresql" else None

    async def make() -> dict[str, str]:
        return {"store.url": await new_url()} if new_url else {}

    return make


@pytest.fixture
def base_path(tmp_path: Path, mlflow_template: Path) -> Path:
    base = tmp_path / "state"
    base.mkdir()
    shutil.copy(mlflow_template, base / "mlflow.db")
    return base


@pytest.fixture
def make_config(base_path: Path, tmp_path: Path, store_overrides: dict[str, str]):
    """Build a Config from TOML text (written to a file, so errors name it)."""

    def make(text: str = "", **overrides):
        path = tmp_path / "mlwarden.toml"
        path.write_text(text)
        return load_config(
            path,
            env={},
            overrides={"daemon.base_path": str(base_path), **store_overrides, **overrides},
        )

    return make


@pytest.fixture
async def warden(make_config):
    """A started Warden on embedded defaults; use ``make_warden`` for another config."""
    async with Warden(make_config()) as w:
        yield w


@pytest.fixture
async def make_warden(make_config):
    started: list[Warden] = []

    async def make(text: str = "", **overrides) -> Warden:
        w = Warden(make_config(text, **overrides))
        await w.start()
        started.append(w)
        return w

    yield make
    for w in reversed(started):
        await w.stop()


@pytest.fixture
async def api_client(warden):
    """An aiohttp client against the real API of ``warden`` on a free loopback port."""
    async with TestClient(TestServer(build_app(warden))) as client:
        yield client


@pytest.fixture
async def make_client():
    clients: list[TestClient] = []

    async def make(w: Warden, *, extra_routes: Iterable[Route] = ()) -> TestClient:
        client = TestClient(TestServer(build_app(w, extra_routes=extra_routes)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def daemon_factory(tmp_path: Path, mlflow_template: Path):
    """Start real ``mlwarden run`` processes; all are stopped (or killed) at the end."""
    procs: list[DaemonProcess] = []

    def make(config_text: str = "", name: str = "daemon", **kwargs) -> DaemonProcess:
        proc = DaemonProcess(
            tmp_path / name, config_text, mlflow_template=mlflow_template, **kwargs
        )
        procs.append(proc)
        return proc

    yield make
    for proc in procs:
        try:
            proc.stop(timeout=20)
        except Exception:
            proc.kill()


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/plugin-example installed with ``pip install --target`` into its own dir.

    Put the returned directory on ``sys.path`` (``monkeypatch.syspath_prepend``) or
    ``PYTHONPATH``: importlib.metadata then sees the distribution ``mlwarden-example``
    and its entry point in group ``mlwarden``. The project is copied first so that
    the build leaves nothing behind in the repository.
    """
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("plugin-example")
    source = work / "project"
    shutil.copytree(
        Path(__file__).resolve().parents[1] / "examples" / "plugin-example",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    site = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"pip could not install examples/plugin-example:\n{result.stderr}")
    return site
