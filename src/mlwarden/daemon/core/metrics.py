"""Every Prometheus metric mlwarden exports, built against an injected registry.

Names: prefix ``mlwarden_``, base units, ``_total`` for counters; labels from a small
closed set (model, version, feature, method, strategy, trigger, notifier, outcome,
severity, plus reason, state, metric, variant, plugin, hook, route).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable

import pluggy
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..._version import __version__
from .config import Config

__all__ = ["MODEL_GAUGES", "Metrics"]

#: The gauges that describe a model cluster-wide (not one daemon's doings): in a
#: cluster only the daemon that owns the model's work exports them (docs/cluster.md).
MODEL_GAUGES = (
    "model_info",
    "model_metric",
    "estimated_metric",
    "estimated_metric_lower",
    "estimated_metric_upper",
    "estimated_metric_realized",
    "estimation_error",
    "estimate_degraded",
    "feature_drift_score",
    "feature_drift_p_value",
    "drift_score",
    "drift_detected",
    "retrain_recommendation",
    "experiment_p_value",
    "experiment_samples",
    "experiment_lift",
    "experiment_srm_detected",
)


class _OwnedModels(Collector):
    """Exports the model gauges of the models this daemon owns (all without a cluster)."""

    def __init__(self, gauges: Iterable[Gauge], metrics: Metrics) -> None:
        self.gauges = list(gauges)
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        for gauge in self.gauges:
            yield from gauge.describe()

    def collect(self) -> Iterable[Metric]:
        owns = self.metrics.owns_model
        for gauge in self.gauges:
            for family in gauge.collect():
                if owns is not None:
                    family.samples = [s for s in family.samples if owns(s.labels["model"])]
                yield family


_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_JOB_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)


class Metrics:
    """The daemon's metrics. One instance per Warden; tests pass a fresh registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

        self.build_info = Gauge(
            "mlwarden_build_info",
            "mlwarden build information; always 1.",
            ["version", "python"],
            registry=registry,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.up_since = Gauge(
            "mlwarden_start_time_seconds",
            "Unix time the daemon started.",
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "mlwarden_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.plugin_errors = Counter(
            "mlwarden_plugin_errors_total",
            "Exceptions and timeouts raised by plugins, by plugin and hook.",
            ["plugin", "hook"],
            registry=registry,
        )
        self.events = Counter(
            "mlwarden_events_total",
            "Events emitted, by kind.",
            ["kind"],
            registry=registry,
        )

        # Registry and lifecycle.
        self.model_info = Gauge(
            "mlwarden_model_info",
            "Registered model versions; 1 for each (model, version, status).",
            ["model", "version", "status"],
            registry=registry,
        )
        self.model_metric = Gauge(
            "mlwarden_model_metric",
            "Latest performance metric of a model version.",
            ["model", "version", "metric"],
            registry=registry,
        )

        # Performance estimation (daemon/monitoring/estimation.py).
        self.estimated_metric = Gauge(
            "mlwarden_estimated_metric",
            "Latest estimate of a performance metric before the labels arrive.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimated_metric_lower = Gauge(
            "mlwarden_estimated_metric_lower",
            "Lower bound of the latest estimate's confidence band.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimated_metric_upper = Gauge(
            "mlwarden_estimated_metric_upper",
            "Upper bound of the latest estimate's confidence band.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimated_metric_realized = Gauge(
            "mlwarden_estimated_metric_realized",
            "Realized value of an estimated metric, once the window's labels arrived.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimation_error = Gauge(
            "mlwarden_estimation_error",
            "Estimate minus realized value of the latest estimated window with labels.",
            ["model", "version", "metric"],
            registry=registry,
        )
        self.estimate_degraded = Gauge(
            "mlwarden_estimate_degraded",
            "1 while the estimated metric is worse than the reference by more than "
            "monitoring.performance_threshold.",
            ["model", "metric"],
            registry=registry,
        )

        # Ingest and drift.
        self.predictions = Counter(
            "mlwarden_predictions_total",
            "Prediction records accepted.",
            ["model"],
            registry=registry,
        )
        self.labels = Counter(
            "mlwarden_labels_total",
            "Ground-truth labels accepted.",
            ["model"],
            registry=registry,
        )
        self.ingest_rejected = Counter(
            "mlwarden_ingest_rejected_total",
            "Ingest batches rejected, by reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.feature_drift_score = Gauge(
            "mlwarden_feature_drift_score",
            "Latest drift statistic of a feature by method.",
            ["model", "feature", "method"],
            registry=registry,
        )
        self.feature_drift_p_value = Gauge(
            "mlwarden_feature_drift_p_value",
            "Latest drift p-value of a feature by method (methods with a test only).",
            ["model", "feature", "method"],
            registry=registry,
        )
        self.drift_score = Gauge(
            "mlwarden_drift_score",
            "Latest overall drift score of a model (share of drifted features).",
            ["model"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "mlwarden_drift_detected",
            "1 when the latest drift check of a model found drift.",
            ["model"],
            registry=registry,
        )
        self.drift_check_duration = Histogram(
            "mlwarden_drift_check_duration_seconds",
            "Duration of a drift check.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retrain_recommendation = Gauge(
            "mlwarden_retrain_recommendation",
            "Latest recommendation: 0 NO_ACTION_NEEDED, 1 RETRAIN_SOON, 2 RETRAIN_IMMEDIATELY.",
            ["model"],
            registry=registry,
        )

        # Serving and rollouts.
        self.prediction_latency = Histogram(
            "mlwarden_prediction_latency_seconds",
            "Latency of predictions served through the gateway or reported by clients.",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.traffic_weight = Gauge(
            "mlwarden_traffic_weight",
            "Share of a model's traffic routed to a version (0..1).",
            ["model", "version"],
            registry=registry,
        )
        self.rollouts = Counter(
            "mlwarden_rollouts_total",
            "Finished rollouts by strategy and outcome.",
            ["model", "strategy", "outcome"],
            registry=registry,
        )

        # Training.
        # Not `mlwarden_training_jobs`: a counter named `..._jobs_total` owns that family
        # name in the Prometheus data model, so a gauge of the same name cannot coexist.
        self.training_jobs = Gauge(
            "mlwarden_training_jobs_current",
            "Training jobs in each state now (queued, running, ...).",
            ["state"],
            registry=registry,
        )
        self.training_jobs_total = Counter(
            "mlwarden_training_jobs_total",
            "Finished training jobs by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.training_job_duration = Histogram(
            "mlwarden_training_job_duration_seconds",
            "Duration of finished training jobs.",
            buckets=_JOB_BUCKETS,
            registry=registry,
        )
        self.triggers_fired = Counter(
            "mlwarden_triggers_fired_total",
            "Retraining triggers that fired, by trigger.",
            ["model", "trigger"],
            registry=registry,
        )

        # Experiments.
        self.experiment_p_value = Gauge(
            "mlwarden_experiment_p_value",
            "p-value of the latest evaluation of a model's running experiment.",
            ["model"],
            registry=registry,
        )
        self.experiment_samples = Gauge(
            "mlwarden_experiment_samples",
            "Samples per arm of a model's running experiment.",
            ["model", "variant"],
            registry=registry,
        )

        self.experiment_lift = Gauge(
            "mlwarden_experiment_lift",
            "Relative lift of arm B over arm A in a model's running experiment.",
            ["model"],
            registry=registry,
        )
        self.experiment_srm_detected = Gauge(
            "mlwarden_experiment_srm_detected",
            "1 when the latest evaluation of a model's experiment found a sample-ratio mismatch.",
            ["model"],
            registry=registry,
        )

        # Alerts.
        self.alerts_firing = Gauge(
            "mlwarden_alerts_firing",
            "Alerts firing now, by severity.",
            ["severity"],
            registry=registry,
        )
        self.notifications = Counter(
            "mlwarden_notifications_total",
            "Notification delivery attempts by notifier and outcome.",
            ["notifier", "outcome"],
            registry=registry,
        )
        # Reports and exports.
        self.reports = Counter(
            "mlwarden_reports_total",
            "Reports and exports generated, by kind (model, experiment, compliance, "
            "export) and outcome (ok, failed).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.report_duration = Histogram(
            "mlwarden_report_duration_seconds",
            "Time to generate a report or stream an export, by kind.",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.scheduled_reports = Counter(
            "mlwarden_scheduled_reports_total",
            "Runs of the scheduled reports ([[reports]]), by report name and outcome.",
            ["report", "outcome"],
            registry=registry,
        )
        self.scheduled_report_last_success = Gauge(
            "mlwarden_scheduled_report_last_success_timestamp_seconds",
            "Unix time of the last successful run of a scheduled report.",
            ["report"],
            registry=registry,
        )
        # The cluster (core/cluster.py).
        self.cluster_members = Gauge(
            "mlwarden_cluster_members",
            "Live members of the cluster as this daemon sees them (heartbeat within the "
            "lease TTL); the same on every daemon, so aggregate with max().",
            registry=registry,
        )
        self.leases_held = Gauge(
            "mlwarden_leases_held",
            "Leases of cluster-wide work this daemon holds, by kind.",
            ["kind"],
            registry=registry,
        )
        for severity in ("info", "warning", "critical"):
            self.alerts_firing.labels(severity).set(0)
        #: Whether this daemon exports a model's gauges (MODEL_GAUGES); None: all of them.
        #: The cluster sets it when several daemons may share the store.
        self.owns_model: Callable[[str], bool] | None = None
        owned = [getattr(self, name) for name in MODEL_GAUGES]
        for gauge in owned:
            registry.unregister(gauge)
        registry.register(_OwnedModels(owned, self))

    def zero_known_series(self, config: Config, pm: pluggy.PluginManager) -> None:
        """Create the series whose label values are known up front, at 0.

        A counter series that appears only at its first increment makes ``rate()`` and
        ``increase()`` blind to that increment and leaves alert rules and dashboard
        panels without data until something goes wrong; Prometheus' own advice is to
        initialise the label values you know.
        """
        for outcome in ("succeeded", "failed", "timed_out", "cancelled", "interrupted"):
            self.training_jobs_total.labels(outcome)
        for notifier in [n.name for n in config.notifiers] or ["log"]:
            for outcome in ("sent", "failed", "dropped"):
                self.notifications.labels(notifier, outcome)
        for report in config.reports:
            for outcome in ("ok", "failed"):
                self.scheduled_reports.labels(report.name, outcome)
        for model in config.models:
            strategy = model.strategy or config.deployment.default_strategy
            for outcome in ("promoted", "rolled_back", "failed"):
                self.rollouts.labels(model.name, strategy, outcome)
        for name, plugin in pm.list_name_plugin():
            for caller in pm.get_hookcallers(plugin) or ():
                self.plugin_errors.labels(name, caller.name)
