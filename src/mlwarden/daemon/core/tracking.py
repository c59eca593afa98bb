"""MLflow: the tracking store's schema upgraded once at start, telemetry off, one client.

MLflow stays the source of truth for runs, models and artifacts. With a database URI
(the embedded default, SQLite under the base path) the daemon upgrades the tracking
store's schema before anything else touches it (what ``mlflow db upgrade`` does),
creates its experiment with an explicit artifact location under the base path, and is
the store's only writer. With an ``http(s)://`` URI (an ``mlflow server`` that several
daemons share, docs/registry.md) the server owns its schema and its artifacts: the
daemon upgrades nothing, and its experiment keeps its artifacts where the server puts
them (``mlflow-artifacts:/`` when it serves them) unless ``mlflow.artifact_location``
says otherwise.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ...errors import ConfigError
from .config import Config, redact_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment

    from .config import Config

__all__ = ["Tracking", "disable_telemetry", "is_remote"]

_upgrading = threading.Lock()

logger = logging.getLogger(__name__)

#: How long a readiness probe waits for an MLflow tracking server.
PING_TIMEOUT_SECONDS = 5.0


def disable_telemetry() -> None:
    """Turn MLflow's usage telemetry off; must run before mlflow is imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def is_remote(uri: str) -> bool:
    """Whether ``uri`` is a tracking server (REST), not a store this process opens."""
    return uri.startswith(("http://", "https://"))


class Tracking:
    """The daemon's view of MLflow. ``setup()`` is blocking: run it in an executor."""

    def __init__(self, config: Config) -> None:
        self.uri = config.tracking_uri
        self.artifact_location = config.artifact_location
        self.remote = is_remote(self.uri)
        self.source = config.source
        #: Only what the configuration says (a server's experiment defaults to the server's).
        self.configured_artifact_location = config.mlflow.artifact_location
        self.experiment_name = config.mlflow.experiment
        self.encrypted = config.encryption.enabled
        self.experiment_id: str | None = None
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("MLflow tracking is not set up yet")
        return self._client

    def setup(self) -> None:
        disable_telemetry()
        upgrade_schema(self.uri)
        import mlflow
        from mlflow import MlflowClient

        # Some MLflow calls (resolving `models:/m-...` URIs, loading pyfunc models) read
        # the process-wide URIs rather than the client's; the daemon owns the process.
        # mlflow also exports them as environment variables, which would then override
        # the configuration file at the next reload: keep the environment as it was.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        location = self._experiment_location()
        try:
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                experiment = _create_experiment(client, self.experiment_name, location)
        except Exception as exc:
            if not self.remote:
                raise
            raise _unreachable(self.uri, exc, self.source) from exc
        if experiment is None:
            raise RuntimeError(f"MLflow experiment {self.experiment_name!r} vanished at start")
        self.experiment_id = experiment.experiment_id
        if self.encrypted and not _is_sealed_location(experiment.artifact_location):
            logger.warning(
                "MLflow experiment %r keeps its artifacts at %s, not encrypted; only an "
                "experiment created with encryption on (a new mlflow.experiment name) "
                "seals its artifacts",
                self.experiment_name,
                experiment.artifact_location,
            )
        self._client = client

    def _experiment_location(self) -> str | None:
        """The artifact location of a new experiment (None: the server's default)."""
        from .artifacts import encrypted_uri, sealed_location

        if self.remote:
            given = self.configured_artifact_location or None
            if not self.encrypted:
                return given
            # Sealed on this side, stored by the server: the server's artifacts proxy
            # (mlflow-artifacts:/) unless a location is configured.
            name = quote(self.experiment_name, safe="")
            return sealed_location(given or f"mlflow-artifacts:/mlwarden-sealed/{name}")
        Path(self.artifact_location).mkdir(parents=True, exist_ok=True)
        if self.encrypted:
            return encrypted_uri(self.artifact_location)
        return Path(self.artifact_location).as_uri()

    def ping(self) -> None:
        """Raise when the tracking store cannot be read.

        A server is asked once, with a short timeout: MLflow's client would retry for
        minutes while the server is down, holding a thread of the daemon's executor per
        readiness probe.
        """
        if self.experiment_id is None:
            raise RuntimeError("MLflow tracking is not set up yet (Tracking.setup)")
        if not self.remote:
            self.client.get_experiment(self.experiment_id)
            return
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request_safe

        http_request_safe(
            get_default_host_creds(self.uri),
            "/api/2.0/mlflow/experiments/get",
            "GET",
            params={"experiment_id": self.experiment_id},
            max_retries=0,
            timeout=PING_TIMEOUT_SECONDS,
        )

    def health(self) -> dict[str, Any]:
        return {"tracking_uri": redact_uri(self.uri), "experiment_id": self.experiment_id}


def _create_experiment(client: MlflowClient, name: str, location: str | None) -> Experiment | None:
    """Create the experiment; when another daemon sharing the server was quicker, its."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        logger.info("MLflow experiment %r was created by another daemon meanwhile", name)
    return client.get_experiment_by_name(name)


def _unreachable(uri: str, exc: Exception, source: str | None) -> ConfigError:
    """Why the daemon cannot use the MLflow server at ``uri``, as a start-up error."""
    code = getattr(exc, "error_code", "")
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()[0]
    hint = ""
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "401" in text or "403" in text:
        hint = (
            "; the daemon's MLflow credentials come from its environment: "
            "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    return ConfigError(
        f"key 'mlflow.tracking_uri': the MLflow server at {redact_uri(uri)} cannot be used: "
        f"{text}{hint}",
        source,
    )


def _is_sealed_location(location: str) -> bool:
    from .artifacts import SCHEME

    return location.startswith(SCHEME)


def upgrade_schema(uri: str) -> None:
    """Create or upgrade a SQL tracking store's schema (as ``mlflow db upgrade``)."""
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return
    import sqlalchemy as sa
    from mlflow.store.db.utils import _initialize_tables, _upgrade_db

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(uri)
    try:
        # alembic's EnvironmentContext keeps module-global state: one upgrade at a time
        # per process (several Wardens in one process, as tests start them, trip on it).
        with _upgrading:
            if sa.inspect(engine).has_table("alembic_version"):
                _upgrade_db(engine)
            else:
                logger.info("creating the MLflow tracking schema at %s", redact_uri(uri))
                _initialize_tables(engine)
    finally:
        engine.dispose()
