"""MLflow: the tracking store's schema upgraded once at start, telemetry off, one client.

MLflow stays the source of truth for runs, models and artifacts. The daemon upgrades a
SQL tracking store's schema before anything else touches it (what ``mlflow db upgrade``
does), creates its experiment with an explicit artifact location under the base path,
and is meant to be the store's only writer.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, redact_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .config import Config

__all__ = ["Tracking", "disable_telemetry"]

_upgrading = threading.Lock()

logger = logging.getLogger(__name__)


def disable_telemetry() -> None:
    """Turn MLflow's usage telemetry off; must run before mlflow is imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


class Tracking:
    """The daemon's view of MLflow. ``setup()`` is blocking: run it in an executor."""

    def __init__(self, config: Config) -> None:
        self.uri = config.tracking_uri
        self.artifact_location = config.artifact_location
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
        Path(self.artifact_location).mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        location = Path(self.artifact_location).as_uri()
        if self.encrypted:
            from .artifacts import encrypted_uri

            location = encrypted_uri(self.artifact_location)
        if experiment is None:
            self.experiment_id = client.create_experiment(
                self.experiment_name, artifact_location=location
            )
        else:
            self.experiment_id = experiment.experiment_id
            if experiment.artifact_location != location and self.encrypted:
                logger.warning(
                    "MLflow experiment %r keeps its artifacts at %s, not encrypted; only an "
                    "experiment created with encryption on (a new mlflow.experiment name) "
                    "seals its artifacts",
                    self.experiment_name,
                    experiment.artifact_location,
                )
        self._client = client

    def ping(self) -> None:
        """Raise when the tracking store cannot be read."""
        if self.experiment_id is None:
            raise RuntimeError("MLflow tracking is not set up yet (Tracking.setup)")
        self.client.get_experiment(self.experiment_id)

    def health(self) -> dict[str, Any]:
        return {"tracking_uri": redact_uri(self.uri), "experiment_id": self.experiment_id}


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
