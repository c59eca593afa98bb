"""Checks across configuration keys and value ranges that types alone cannot express.

Each returns a list of problems, each naming the key and what was expected; the loader
(:mod:`.config_loader`) prefixes the file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from ...plugins.trainers.limits import LIMIT_KEYS
from ...plugins.triggers.schedule import cron_problem, timezone_problem
from ...stats.metrics import is_finite_number, trading_problems
from .config import AlertsConfig, Config

__all__ = [
    "STORE_SCHEMES",
    "check_config",
    "deprecation_warnings",
    "gate_problems",
    "secret_file_warnings",
]


def check_config(config: Config) -> list[str]:
    """Checks across keys and value ranges that types alone cannot express."""
    problems = []
    d = config.daemon
    host, sep, port = d.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        problems.append(f"key 'daemon.listen': expected HOST:PORT, got {d.listen!r}")
    if d.max_body_bytes <= 0:
        problems.append("key 'daemon.max_body_bytes': expected a positive integer")
    problems.extend(_check_store(config))
    m = config.monitoring
    for key in ("drift_threshold", "performance_threshold"):
        if not 0 < getattr(m, key) < 1:
            problems.append(f"key 'monitoring.{key}': expected a number in (0, 1)")
    for key in ("window_hours", "interval_seconds", "bucket_seconds", "retention_days"):
        if getattr(m, key) <= 0:
            problems.append(f"key 'monitoring.{key}': expected a positive number")
    if m.ingest_workers < 0:
        problems.append("key 'monitoring.ingest_workers': expected an integer >= 0")
    t = config.training
    if t.max_concurrent_jobs < 1:
        problems.append("key 'training.max_concurrent_jobs': expected an integer >= 1")
    if t.job_timeout_hours <= 0:
        problems.append("key 'training.job_timeout_hours': expected a positive number")
    problems.extend(_check_training(config))
    problems.extend(_check_estimation(config))
    c = config.cluster
    if c.heartbeat_seconds <= 0:
        problems.append("key 'cluster.heartbeat_seconds': expected a positive number")
    elif c.lease_ttl_seconds <= c.heartbeat_seconds:
        problems.append(
            "key 'cluster.lease_ttl_seconds': expected more than cluster.heartbeat_seconds "
            f"({c.heartbeat_seconds:g}), or every lease lapses between two renewals"
        )
    ab = config.ab_testing
    for key in ("confidence_level", "significance_threshold", "srm_threshold", "power"):
        if not 0 < getattr(ab, key) < 1:
            problems.append(f"key 'ab_testing.{key}': expected a number in (0, 1)")
    for key in ("minimum_detectable_effect", "evaluation_interval_seconds"):
        if getattr(ab, key) <= 0:
            problems.append(f"key 'ab_testing.{key}': expected a positive number")
    for key in ("min_samples", "sequential_tuning_samples"):
        if getattr(ab, key) < 2:
            problems.append(f"key 'ab_testing.{key}': expected an integer >= 2")
    if ab.min_duration_hours < 0:
        problems.append("key 'ab_testing.min_duration_hours': expected a number >= 0")
    for i, name in enumerate(ab.guardrails):
        if name not in ("latency", "error_rate"):
            problems.append(
                f"key 'ab_testing.guardrails[{i}]': expected 'latency' or 'error_rate', "
                f"got {name!r}"
            )
    for i, tok in enumerate(config.auth.tokens):
        if len(tok.sha256) != 64 or any(c not in "0123456789abcdef" for c in tok.sha256):
            problems.append(
                f"key 'auth.tokens[{i}].sha256': expected 64 lowercase hex digits "
                "(run `mlwarden token` to mint a token and its hash)"
            )
    names = [t.name for t in config.auth.tokens]
    if len(set(names)) != len(names):
        problems.append("key 'auth.tokens': token names must be unique")
    seen: set[str] = set()
    for i, model in enumerate(config.models):
        if not model.name:
            problems.append(f"key 'models[{i}].name': expected a non-empty string")
        if model.name in seen:
            problems.append(f"key 'models[{i}].name': duplicate model {model.name!r}")
        seen.add(model.name)
        problems.extend(gate_problems(model.gates, f"models[{i}].gates"))
        problems.extend(trading_problems(model.trading, f"models[{i}].trading"))
    seen = set()
    for i, notifier in enumerate(config.notifiers):
        if notifier.name in seen:
            problems.append(f"key 'notifiers[{i}].name': duplicate notifier {notifier.name!r}")
        seen.add(notifier.name)
    problems.extend(_check_alerts(config.alerts))
    problems.extend(_check_reports(config))
    return problems


def _check_reports(config: Config) -> list[str]:
    """``[[reports]]``: unique names, a valid cron, known models and apprise notifiers."""
    problems = []
    seen: set[str] = set()
    notifiers = {n.name: n for n in config.notifiers}
    models = {m.name for m in config.models}
    for i, report in enumerate(config.reports):
        where = f"reports[{i}]"
        if not report.name:
            problems.append(f"key '{where}.name': expected a non-empty string")
        if report.name in seen:
            problems.append(f"key '{where}.name': duplicate report {report.name!r}")
        seen.add(report.name)
        if problem := cron_problem(report.cron):
            problems.append(f"key '{where}.cron': {problem}")
        if report.period_days <= 0:
            problems.append(f"key '{where}.period_days': expected a positive number")
        if report.keep < 0:
            problems.append(f"key '{where}.keep': expected an integer >= 0")
        if not report.formats:
            problems.append(f"key '{where}.formats': expected 'html', 'json' or both")
        if report.kind == "model" and not report.models:
            problems.append(f"key '{where}.models': a model report names at least one model")
        for j, model in enumerate(report.models):
            if model not in models:
                problems.append(
                    f"key '{where}.models[{j}]': {model!r} is not a configured model "
                    f"(expected one of {sorted(models)})"
                )
        if not report.directory and not report.notifiers:
            problems.append(
                f"key '{where}': set 'directory', 'notifiers' or both (where the report goes)"
            )
        for j, name in enumerate(report.notifiers):
            notifier = notifiers.get(name)
            if notifier is None:
                problems.append(
                    f"key '{where}.notifiers[{j}]': no [[notifiers]] named {name!r} "
                    f"(expected one of {sorted(notifiers)})"
                )
            elif notifier.plugin != "apprise":
                problems.append(
                    f"key '{where}.notifiers[{j}]': notifier {name!r} uses plugin "
                    f"{notifier.plugin!r}; attachments need plugin 'apprise'"
                )
    return problems


def _check_alerts(alerts: AlertsConfig) -> list[str]:
    problems = []
    for key in ("tick_seconds", "retry_initial_seconds", "send_timeout_seconds"):
        if getattr(alerts, key) <= 0:
            problems.append(f"key 'alerts.{key}': expected a positive number")
    for key in ("group_wait_seconds", "repeat_interval_seconds", "outbox_max_age_seconds"):
        if getattr(alerts, key) < 0:
            problems.append(f"key 'alerts.{key}': expected a number >= 0")
    if alerts.retry_max_seconds < alerts.retry_initial_seconds:
        problems.append("key 'alerts.retry_max_seconds': expected >= alerts.retry_initial_seconds")
    seen: set[str] = set()
    for i, rule in enumerate(alerts.rules):
        if not rule.name:
            problems.append(f"key 'alerts.rules[{i}].name': expected a non-empty string")
        if rule.name in seen:
            problems.append(f"key 'alerts.rules[{i}].name': duplicate rule {rule.name!r}")
        seen.add(rule.name)
        if rule.enabled and not rule.fire_on and rule.name not in _BUILTIN_RULE_NAMES:
            problems.append(f"key 'alerts.rules[{i}].fire_on': expected at least one event kind")
    return problems


#: Names of the alert engine's built-in rules (daemon/alerts/rules.py); a rule in the
#: config with one of these names overrides the built-in one key by key.
_BUILTIN_RULE_NAMES = frozenset(
    {"ModelPerformanceDegraded", "ModelDataDrift", "ModelTrainingFailed", "ModelRolloutFailed"}
)


def _check_training(config: Config) -> list[str]:
    """Training keys: counts, durations, the time zone and each model's schedule."""
    t = config.training
    problems = []
    for key in ("max_retries", "min_training_data_points", "log_tail_lines"):
        if getattr(t, key) < 0:
            problems.append(f"key 'training.{key}': expected an integer >= 0")
    for key in ("retry_backoff_seconds", "kill_grace_seconds", *LIMIT_KEYS):
        if getattr(t, key) < 0:
            problems.append(f"key 'training.{key}': expected a number >= 0")
    if t.scheduler_interval_seconds <= 0:
        problems.append("key 'training.scheduler_interval_seconds': expected a positive number")
    if problem := timezone_problem(t.timezone):
        problems.append(f"key 'training.timezone': {problem}")
    for i, model in enumerate(config.models):
        if model.schedule and (problem := cron_problem(model.schedule)):
            problems.append(f"key 'models[{i}].schedule': {problem}")
        for key in LIMIT_KEYS:
            value = model.trainer.get(key, 0)
            if not is_finite_number(value) or value < 0:
                problems.append(
                    f"key 'models[{i}].trainer.{key}': expected a number >= 0 (0: no limit), "
                    f"got {value!r}"
                )
    return problems


#: Keys of ``[models.gates]`` holding arrays of strings (daemon/registry/gates.py).
_GATE_LIST_KEYS = ("compare_metrics", "required_tags", "higher_is_better")


def gate_problems(gates: Mapping[str, Any], where: str) -> list[str]:
    """Configuration problems of one model's gates, each naming its key.

    The gates themselves are evaluated by :mod:`mlwarden.daemon.registry.gates`.
    """
    problems = []
    for key, value in gates.items():
        dotted = f"{where}.{key}"
        if key in _GATE_LIST_KEYS:
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                problems.append(f"key '{dotted}': expected an array of strings")
        elif key == "max_worse_than_production":
            if not is_finite_number(value) or not 0 <= value < 10:
                problems.append(f"key '{dotted}': expected a fraction >= 0 such as 0.05")
        elif key.startswith(("max_", "min_")) and len(key) > 4:
            if not is_finite_number(value):
                problems.append(f"key '{dotted}': expected a finite number, got {value!r}")
        else:
            problems.append(
                f"key '{dotted}': unknown gate (expected max_<metric>, min_<metric>, "
                "max_worse_than_production, compare_metrics, required_tags, higher_is_better)"
            )
    return problems


def _check_estimation(config: Config) -> list[str]:
    """A model that asks for an estimator by name: what its reference must carry.

    Only a local CSV or Parquet reference is looked into (its header or schema, not its
    rows); an artifact URI is checked when it is loaded (docs/estimation.md).
    """
    problems = []
    if config.monitoring.estimation_timeout_seconds <= 0:
        problems.append("key 'monitoring.estimation_timeout_seconds': expected a positive number")
    for i, model in enumerate(config.models):
        where = f"key 'models[{i}].estimator'"
        if model.estimator in ("", "none"):
            continue
        if not model.reference:
            problems.append(
                f"{where}: performance estimation needs a reference with labels (models.reference)"
            )
            continue
        columns = _reference_columns(model.reference)
        if columns is None:
            continue
        if model.label_column not in columns:
            problems.append(
                f"{where}: the reference {model.reference!r} has no label column "
                f"{model.label_column!r} (models.label_column); estimation needs labels"
            )
        if model.prediction_column not in columns:
            problems.append(
                f"{where}: the reference {model.reference!r} has no prediction column "
                f"{model.prediction_column!r} (models.prediction_column)"
            )
        scored = model.probability_column in columns or any(
            c.startswith(model.probabilities_prefix) for c in columns
        )
        if model.task == "classification" and not scored:
            problems.append(
                f"{where}: the reference {model.reference!r} has no probabilities: a "
                f"{model.probability_column!r} column (binary) or "
                f"{model.probabilities_prefix}<class> columns (multiclass)"
            )
    return problems


def _reference_columns(source: str) -> list[str] | None:
    """The column names of a local CSV or Parquet file (None: not a readable local file)."""
    import csv
    from pathlib import Path

    path = Path(source[len("file://") :] if source.startswith("file://") else source)
    if ":" in source.split("/", 1)[0] and not source.startswith("file://"):
        return None  # an artifact URI (runs:/, models:/, ...)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if path.suffix == ".csv":
            with path.open(newline="") as fh:
                return next(csv.reader(fh), [])
    except (OSError, ValueError):
        return None
    return None


#: The URL schemes the store accepts (SQLAlchemy dialect+driver).
STORE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


def _check_store(config: Config) -> list[str]:
    problems = []
    s, alias = config.store, config.daemon.database_url
    if s.url and alias and s.url != alias:
        problems.append(
            "key 'daemon.database_url': a deprecated alias of 'store.url', and both are set to "
            "different URLs; keep only store.url"
        )
    key = "store.url" if s.url or not alias else "daemon.database_url"
    url = s.url or alias
    scheme, sep, rest = url.partition("://")
    if url and (not sep or scheme not in STORE_SCHEMES):
        problems.append(
            f"key '{key}': expected a URL starting sqlite+aiosqlite:/// or "
            f"postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE, got scheme {scheme!r}"
            + (
                " (PostgreSQL needs the asyncpg driver: postgresql+asyncpg://)"
                if scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg")
                else ""
            )
        )
    elif scheme == "postgresql+asyncpg" and not rest.split("?", 1)[0].rpartition("/")[2]:
        problems.append(f"key '{key}': the PostgreSQL URL names no database (…/DATABASE)")
    elif scheme == "sqlite+aiosqlite" and not rest.startswith("/"):
        problems.append(f"key '{key}': expected sqlite+aiosqlite:///PATH")
    if s.pool_size < 1:
        problems.append("key 'store.pool_size': expected an integer >= 1")
    if s.max_overflow < 0:
        problems.append("key 'store.max_overflow': expected an integer >= 0")
    for name in ("pool_timeout_seconds", "connect_timeout_seconds", "pool_recycle_seconds"):
        if getattr(s, name) <= 0:
            problems.append(f"key 'store.{name}': expected a positive number")
    for name in (
        "statement_timeout_seconds",
        "lock_timeout_seconds",
        "idle_in_transaction_timeout_seconds",
    ):
        if getattr(s, name) < 0:
            problems.append(f"key 'store.{name}': expected a number >= 0 (0: none)")
    return problems


def deprecation_warnings(config: Config) -> list[str]:
    """Warnings for keys that still work but have a new name."""
    if config.daemon.database_url and not config.store.url:
        return [
            "key 'daemon.database_url' is deprecated: use [store] url = ... (same value; "
            "docs/configuration.md)"
        ]
    return []


def secret_file_warnings(config: Config) -> list[str]:
    """Warnings for a configuration file holding secrets that others may read."""
    if config.source.startswith("<"):
        return []
    holds = []
    if any(n.urls for n in config.notifiers):
        holds.append("notifier URLs")
    if config.auth.tokens:
        holds.append("token hashes")
    from_env = {os.environ.get("MLWARDEN_STORE_URL"), os.environ.get("MLFLOW_TRACKING_URI")}
    in_file = [u for u in (config.database_url, config.mlflow.tracking_uri) if u not in from_env]
    if any("@" in u for u in in_file):
        holds.append("database credentials")
    if not holds:
        return []
    try:
        mode = stat.S_IMODE(os.stat(config.source).st_mode)
    except OSError:
        return []
    if not mode & 0o007:
        return []
    return [
        f"{config.source} holds {', '.join(holds)} and is readable by others (mode "
        f"{mode:04o}); chmod o-rwx {config.source} (docs/security.md)"
    ]
