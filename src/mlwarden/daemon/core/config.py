"""The configuration's shape: frozen dataclasses, one per section, and its redacted form.

docs/configuration.md documents every key. The file is read and validated by
:func:`~mlwarden.daemon.core.config_loader.load_config`; the checks that types alone
cannot express are in :mod:`~mlwarden.daemon.core.config_checks`.
"""

from __future__ import annotations

import dataclasses
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "AbTestingConfig",
    "AlertRuleConfig",
    "AlertsConfig",
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "DaemonConfig",
    "DeploymentConfig",
    "EncryptionConfig",
    "MlflowConfig",
    "ModelConfig",
    "MonitoringConfig",
    "NotifierConfig",
    "ReportConfig",
    "StoreConfig",
    "TlsConfig",
    "TokenConfig",
    "TrainingConfig",
    "redact_uri",
    "redacted",
]

Role = Literal["viewer", "auditor", "operator", "admin"]
SeverityName = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class DaemonConfig:
    base_path: str = "./mlwarden-data"
    database_url: str = ""  # deprecated alias of [store] url
    listen: str = "127.0.0.1:9741"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    plugins: tuple[str, ...] = ()
    disable_plugins: tuple[str, ...] = ()
    max_body_bytes: int = 32 * 1024 * 1024
    shutdown_timeout_seconds: float = 10.0
    plugin_timeout_seconds: float = 10.0
    public_url: str = ""
    # Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    allow_plaintext: bool = False

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = ""  # default: sqlite:///<base_path>/mlflow.db
    artifact_location: str = ""  # default: <base_path>/mlartifacts
    experiment: str = "mlwarden"


@dataclass(frozen=True)
class MonitoringConfig:
    drift_threshold: float = 0.1
    performance_threshold: float = 0.15
    window_hours: float = 24.0
    interval_seconds: float = 60.0
    bucket_seconds: int = 300
    retention_days: float = 30.0
    histogram_bins: int = 200
    sample_size: int = 5000
    top_k_categories: int = 50
    label_ttl_hours: float = 24.0
    min_performance_samples: int = 30  # fewer outcomes in a window: recorded, not judged
    # Monitoring engine (daemon/ingest/service.py, monitor.py; see docs/monitoring.md).
    reference_sample_size: int = 10000
    min_window_rows: int = 100
    max_batch_records: int = 100000
    ingest_workers: int = 0  # processes that decode and validate batches (0: threads)
    max_null_rate: float = 0.05
    max_out_of_range_rate: float = 0.05
    max_unseen_rate: float = 0.05
    drift_vote: Literal["all", "any", "majority"] = "all"
    # Performance estimation (daemon/monitoring/estimation.py, docs/estimation.md).
    estimation_timeout_seconds: float = 120.0


@dataclass(frozen=True)
class TrainingConfig:
    max_concurrent_jobs: int = 3
    job_timeout_hours: float = 6.0
    min_training_data_points: int = 1000
    max_retries: int = 2
    retry_backoff_seconds: float = 30.0
    timezone: str = "UTC"
    requeue_interrupted: bool = True
    scheduler_interval_seconds: float = 30.0
    kill_grace_seconds: float = 10.0
    log_tail_lines: int = 50
    # Resource limits of each trainer's process tree, 0 = none; a model's
    # [models.trainer] may set its own (plugins/trainers/limits.py, docs/training.md).
    memory_limit_mb: float = 0.0
    cpu_limit_seconds: float = 0.0
    cpu_quota_percent: float = 0.0


@dataclass(frozen=True)
class AbTestingConfig:
    min_duration_hours: float = 24.0
    confidence_level: float = 0.95
    significance_threshold: float = 0.05
    min_samples: int = 100
    sequential: bool = True
    auto_promote: bool = False
    # Experiments (daemon/experiments/service.py, mlwarden/stats; see docs/experiments.md).
    metric: Literal["", "squared_error", "absolute_error", "accuracy", "strategy_return"] = ""
    test: Literal["auto", "welch", "ztest", "mann_whitney"] = "auto"
    guardrails: tuple[str, ...] = ("latency", "error_rate")
    srm_threshold: float = 0.001
    minimum_detectable_effect: float = 0.05  # relative to arm A's mean
    power: float = 0.8
    sequential_tuning_samples: int = 10000
    evaluation_interval_seconds: float = 300.0
    promote_strategy: str = ""  # "": the model's or deployment's default strategy


@dataclass(frozen=True)
class DeploymentConfig:
    default_strategy: str = "canary"
    gateway: bool = True
    max_loaded_models: int = 8
    traffic_backends: tuple[str, ...] = ("mlflow_alias",)
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Rollouts (daemon/rollouts/service.py; see docs/rollouts.md).
    tick_seconds: float = 5.0
    traffic_backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenConfig:
    name: str
    sha256: str
    role: Role = "viewer"


@dataclass(frozen=True)
class AuthConfig:
    tokens: tuple[TokenConfig, ...] = ()


@dataclass(frozen=True)
class TlsConfig:
    """HTTPS for the API (docs/security.md); re-read on SIGHUP."""

    cert_file: str = ""  # PEM certificate chain; TLS is on when set
    key_file: str = ""  # PEM private key
    client_ca_file: str = ""  # PEM CA bundle: clients must present a certificate it signed
    min_version: Literal["1.2", "1.3"] = "1.2"

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


@dataclass(frozen=True)
class StoreConfig:
    """The daemon's SQL database (docs/configuration.md, docs/operations.md "PostgreSQL").

    ``url`` "" is SQLite under the base path (one daemon); ``postgresql+asyncpg://`` is
    the store several daemons share. The pool and timeout keys apply to PostgreSQL.
    """

    url: str = ""
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout_seconds: float = 30.0
    pool_recycle_seconds: float = 1800.0
    connect_timeout_seconds: float = 10.0
    statement_timeout_seconds: float = 300.0  # 0: none (migrations run without)
    lock_timeout_seconds: float = 0.0  # 0: none
    idle_in_transaction_timeout_seconds: float = 600.0  # 0: none
    application_name: str = "mlwarden"


@dataclass(frozen=True)
class ClusterConfig:
    """Several daemons on one PostgreSQL store (docs/cluster.md)."""

    # This daemon's name among the members; default "<host name>:<port>".
    instance: str = ""
    lease_ttl_seconds: float = 15.0
    heartbeat_seconds: float = 5.0


@dataclass(frozen=True)
class EncryptionConfig:
    """Encryption at rest (docs/security.md): what is sealed and where the keys are."""

    enabled: bool = False
    key_file: str = ""  # ID:BASE64 lines, mode 0600, owned by the daemon's user
    key_env: str = "MLWARDEN_ENCRYPTION_KEYS"
    credential: str = "mlwarden-keys"  # systemd credential name ($CREDENTIALS_DIRECTORY)
    # Prediction and label ids at rest: "digest" (keyed digests: ids may be customer
    # identifiers) or "clear" (ids as sent, the rest sealed). Fixed per store at the
    # first start with encryption on (docs/security.md, "Ids").
    ids: Literal["digest", "clear"] = "digest"


@dataclass(frozen=True)
class ModelConfig:
    name: str
    task: Literal["regression", "classification"] = "regression"
    reference: str = ""
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    drift_methods: tuple[str, ...] = ()
    drift_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    prediction_column: str = "prediction"  # in the reference: enables prediction drift
    label_column: str = "label"  # in the reference: enables target drift
    schedule: str = ""
    triggers: tuple[str, ...] = ()
    trigger_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    strategy: str = ""
    gates: dict[str, Any] = field(default_factory=dict)
    trading: dict[str, Any] = field(default_factory=dict)
    # Performance monitoring: the metric watched for degradation (default mse for
    # regression, accuracy for classification, sharpe with [models.trading]) and the
    # positive class of binary precision/recall/F1 (default "1" / "true" when present).
    performance_metric: str = ""
    positive_label: str = ""
    # Performance estimation before the labels arrive (docs/estimation.md): the
    # estimator plugin ("" = the task's default when the reference has labels, "none" =
    # off), its options, and the reference's score columns of a classifier.
    estimator: str = ""
    estimator_options: dict[str, Any] = field(default_factory=dict)
    probability_column: str = "probability"  # binary: P(positive class)
    probabilities_prefix: str = "probabilities."  # multiclass: one column per class


@dataclass(frozen=True)
class NotifierConfig:
    name: str
    plugin: str = "log"
    urls: tuple[str, ...] = ()
    config_file: str = ""
    min_severity: SeverityName = "info"
    models: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    send_resolved: bool = True


@dataclass(frozen=True)
class AlertRuleConfig:
    """One alert rule: events of ``fire_on`` kinds fire it, ``resolve_on`` kinds resolve it."""

    name: str
    fire_on: tuple[str, ...] = ()
    resolve_on: tuple[str, ...] = ()
    severity: Literal["", "info", "warning", "critical"] = ""  # "": the event's severity
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    match: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    enabled: bool = True


@dataclass(frozen=True)
class AlertsConfig:
    """The alert engine (DESIGN section 7, Alertmanager's lessons) and its durable outbox."""

    builtin_rules: bool = True
    rules: tuple[AlertRuleConfig, ...] = ()
    group_wait_seconds: float = 30.0
    repeat_interval_seconds: float = 4 * 3600.0
    tick_seconds: float = 1.0
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    send_timeout_seconds: float = 30.0
    outbox_max_age_seconds: float = 24 * 3600.0
    retention_days: float = 30.0
    grafana_url: str = ""


@dataclass(frozen=True)
class ReportConfig:
    """A scheduled report (``[[reports]]``): what, when, and where it goes."""

    name: str
    cron: str
    kind: Literal["model", "compliance"] = "model"
    #: The models it covers (model reports: one file each; compliance: all when empty).
    models: tuple[str, ...] = ()
    #: The period each report covers, ending at the run.
    period_days: float = 7.0
    formats: tuple[Literal["html", "json"], ...] = ("html",)
    #: A directory the files are written to ("": none).
    directory: str = ""
    #: How many runs' files to keep in ``directory`` (0: keep all).
    keep: int = 10
    #: Names of ``[[notifiers]]`` of plugin ``apprise`` that get the files as attachments.
    notifiers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    ab_testing: AbTestingConfig = field(default_factory=AbTestingConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    models: tuple[ModelConfig, ...] = ()
    notifiers: tuple[NotifierConfig, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    reports: tuple[ReportConfig, ...] = ()
    source: str = "<defaults>"

    @property
    def base_path(self) -> Path:
        return Path(self.daemon.base_path).resolve()

    @property
    def instance(self) -> str:
        """This daemon's name among the members of a cluster (metrics, leases, buckets)."""
        return self.cluster.instance or f"{socket.gethostname()}:{self.daemon.port}"

    @property
    def database_url(self) -> str:
        """The store's URL: ``store.url``, its deprecated alias ``daemon.database_url``,
        or SQLite under the base path."""
        return (
            self.store.url
            or self.daemon.database_url
            or f"sqlite+aiosqlite:///{self.base_path / 'mlwarden.db'}"
        )

    @property
    def tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{self.base_path / 'mlflow.db'}"

    @property
    def artifact_location(self) -> str:
        return self.mlflow.artifact_location or str(self.base_path / "mlartifacts")

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


_SECRET_KEYS = ("sha256", "urls", "password", "token", "secret", "database_url")


def redacted(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets replaced by ``***``."""

    def walk(value: Any, key: str = "") -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: walk(getattr(value, f.name), f.name) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list | tuple):
            if key in _SECRET_KEYS:
                return ["***" for _ in value]
            return [walk(v, key) for v in value]
        if key in _SECRET_KEYS and value:
            return "***"
        return value

    out = walk(config)
    out["mlflow"]["tracking_uri"] = redact_uri(config.tracking_uri)
    out["store"]["url"] = redact_uri(config.database_url)
    out["daemon"]["base_path"] = str(config.base_path)
    return out


def redact_uri(uri: str) -> str:
    """``uri`` with its passwords (``user:password@host``, ``?password=``) as ``***``."""
    scheme, sep, rest = uri.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        creds, _, host = rest.partition("@")
        user = creds.split(":", 1)[0]
        uri = f"{scheme}://{user}:***@{host}"
    return re.sub(r"([?&]password=)[^&]*", r"\1***", uri, flags=re.IGNORECASE)
