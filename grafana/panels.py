"""The panels of mlwarden's Grafana dashboards, one dict per dashboard: row -> panels.

Data only; grafana/dashboards.py builds the JSON from it. Every query uses only
metrics the daemon exports (tests/test_grafana.py runs each one against a real
Prometheus).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The model variable's selector.
M = '{model="$model"}'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class PanelSpec:
    title: str
    kind: str  # "stat" | "timeseries" | "table"
    queries: tuple[Query, ...]
    unit: str = ""
    width: int = 8
    height: int = 7
    description: str = ""


def q(expr: str, legend: str = "", instant: bool = False) -> Query:
    return Query(expr, legend, instant)


OVERVIEW = {
    "System health": [
        PanelSpec(
            "Daemons up",
            "stat",
            (q("count(mlwarden_build_info)"),),
            width=4,
            height=4,
            description="mlwarden processes exporting metrics.",
        ),
        PanelSpec(
            "Uptime",
            "stat",
            (q("time() - max(mlwarden_start_time_seconds)"),),
            unit="s",
            width=4,
            height=4,
        ),
        PanelSpec(
            "Models",
            "stat",
            (q("count(count by (model) (mlwarden_model_info))"),),
            width=4,
            height=4,
            description="Models with registered versions.",
        ),
        PanelSpec(
            "Firing alerts",
            "stat",
            (q("sum(max by (severity) (mlwarden_alerts_firing))"),),
            width=4,
            height=4,
            description="Every daemon of a cluster reads the same alerts: max, not sum.",
        ),
        PanelSpec(
            "Plugin errors (1h)",
            "stat",
            (q("sum(increase(mlwarden_plugin_errors_total[1h])) or vector(0)"),),
            width=4,
            height=4,
        ),
        PanelSpec(
            "Model uptime (1d)",
            "stat",
            (q('avg_over_time(up{job="mlwarden"}[1d])'),),
            unit="percentunit",
            width=4,
            height=4,
            description="Share of scrapes in the last day where the daemon answered.",
        ),
    ],
    "Operations": [
        PanelSpec(
            "Deployment success rate (7d)",
            "stat",
            (
                q(
                    'sum(increase(mlwarden_rollouts_total{outcome="promoted"}[7d])) '
                    "/ clamp_min(sum(increase(mlwarden_rollouts_total[7d])), 1)"
                ),
            ),
            unit="percentunit",
            width=6,
            height=5,
        ),
        PanelSpec(
            "Retraining frequency (jobs/day)",
            "stat",
            (q("sum(increase(mlwarden_training_jobs_total[1d]))"),),
            width=6,
            height=5,
        ),
        PanelSpec(
            "Drift detection rate",
            "stat",
            (q("sum(mlwarden_drift_detected) / clamp_min(count(mlwarden_drift_detected), 1)"),),
            unit="percentunit",
            width=6,
            height=5,
            description="Share of monitored models whose latest drift check found drift.",
        ),
        PanelSpec(
            "Training jobs by state",
            "stat",
            (q("max by (state) (mlwarden_training_jobs_current)", "{{state}}"),),
            width=6,
            height=5,
        ),
    ],
    "Cluster": [
        PanelSpec(
            "Cluster members",
            "stat",
            (q("max(mlwarden_cluster_members)"),),
            width=4,
            height=7,
            description="Live daemons on the store (heartbeat within the lease TTL).",
        ),
        PanelSpec(
            "Models owned per daemon",
            "timeseries",
            (q('sum by (instance) (mlwarden_leases_held{kind="model"})', "{{instance}}"),),
            width=10,
            height=7,
            description="Per-model work (drift, performance, experiments) each daemon owns; "
            "after a daemon dies its models move to the others within the lease TTL.",
        ),
        PanelSpec(
            "Singleton work per daemon",
            "timeseries",
            (
                q(
                    'sum by (instance, kind) (mlwarden_leases_held{kind!="model"})',
                    "{{instance}} {{kind}}",
                ),
            ),
            width=10,
            height=7,
            description="Which daemon holds the scheduler, the job queue, the rollouts, "
            "alert evaluation and outbox delivery.",
        ),
    ],
    "Models, rollouts and experiments": [
        PanelSpec(
            "Model versions", "table", (q("mlwarden_model_info", instant=True),), width=12, height=8
        ),
        PanelSpec(
            "Traffic weights (active rollouts)",
            "timeseries",
            (q("mlwarden_traffic_weight", "{{model}} {{version}}"),),
            unit="percentunit",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Experiments: p-value",
            "timeseries",
            (q("mlwarden_experiment_p_value", "{{model}}"),),
            width=12,
            height=8,
        ),
        PanelSpec(
            "Alerts firing by severity",
            "timeseries",
            (q("max by (severity) (mlwarden_alerts_firing)", "{{severity}}"),),
            width=12,
            height=8,
        ),
    ],
    "API": [
        PanelSpec(
            "Requests/s by route",
            "timeseries",
            (
                q(
                    "sum by (route) (rate(mlwarden_http_request_duration_seconds_count[5m]))",
                    "{{route}}",
                ),
            ),
            unit="reqps",
            width=12,
            height=8,
        ),
        PanelSpec(
            "p99 request latency",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.99, sum by (le, route) "
                    "(rate(mlwarden_http_request_duration_seconds_bucket[5m])))",
                    "{{route}}",
                ),
            ),
            unit="s",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Notifications by outcome",
            "timeseries",
            (
                q(
                    "sum by (notifier, outcome) (increase(mlwarden_notifications_total[1h]))",
                    "{{notifier}} {{outcome}}",
                ),
            ),
            width=24,
            height=7,
        ),
    ],
}

MODEL_MONITORING = {
    "Drift": [
        PanelSpec(
            "Drift score",
            "timeseries",
            (q(f"mlwarden_drift_score{M}", "drift score"),),
            width=12,
            height=8,
        ),
        PanelSpec("Drift detected", "stat", (q(f"mlwarden_drift_detected{M}"),), width=6, height=8),
        PanelSpec(
            "Retrain recommendation",
            "stat",
            (q(f"mlwarden_retrain_recommendation{M}"),),
            width=6,
            height=8,
            description="0 NO_ACTION_NEEDED, 1 RETRAIN_SOON, 2 RETRAIN_IMMEDIATELY.",
        ),
        PanelSpec(
            "Feature drift statistic",
            "table",
            (q(f"mlwarden_feature_drift_score{M}", instant=True),),
            width=12,
            height=10,
        ),
        PanelSpec(
            "Feature drift p-value",
            "timeseries",
            (q(f"mlwarden_feature_drift_p_value{M}", "{{feature}} {{method}}"),),
            width=12,
            height=10,
        ),
        PanelSpec(
            "Drift check duration p95",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate(mlwarden_drift_check_duration_seconds_bucket{M}[15m])))",
                    "p95",
                ),
            ),
            unit="s",
            width=24,
            height=6,
        ),
    ],
    "Performance": [
        PanelSpec(
            "Performance metrics",
            "timeseries",
            (q(f"mlwarden_model_metric{M}", "{{version}} {{metric}}"),),
            width=12,
            height=8,
        ),
        PanelSpec(
            "Estimated vs realized",
            "timeseries",
            (
                q(f"mlwarden_estimated_metric{M}", "estimated {{version}} {{metric}}"),
                q(f"mlwarden_estimated_metric_lower{M}", "band low {{version}} {{metric}}"),
                q(f"mlwarden_estimated_metric_upper{M}", "band high {{version}} {{metric}}"),
                q(f"mlwarden_estimated_metric_realized{M}", "realized {{version}} {{metric}}"),
            ),
            width=12,
            height=8,
            description="Performance estimated before the labels arrive (CBPE, DLE), its "
            "confidence band, and the realized value once the window's labels are in "
            "(docs/estimation.md).",
        ),
        PanelSpec(
            "Prediction latency p50 / p99",
            "timeseries",
            (
                q(
                    "histogram_quantile(0.5, sum by (le, version) "
                    f"(rate(mlwarden_prediction_latency_seconds_bucket{M}[5m])))",
                    "p50 {{version}}",
                ),
                q(
                    "histogram_quantile(0.99, sum by (le, version) "
                    f"(rate(mlwarden_prediction_latency_seconds_bucket{M}[5m])))",
                    "p99 {{version}}",
                ),
            ),
            unit="s",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Predictions and labels /s",
            "timeseries",
            (
                q(f"rate(mlwarden_predictions_total{M}[5m])", "predictions"),
                q(f"rate(mlwarden_labels_total{M}[5m])", "labels"),
            ),
            unit="reqps",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Rejected ingest batches",
            "timeseries",
            (
                q(
                    f"sum by (reason) (increase(mlwarden_ingest_rejected_total{M}[1h]))",
                    "{{reason}}",
                ),
            ),
            width=12,
            height=8,
        ),
    ],
    "Retraining and alerts": [
        PanelSpec(
            "Triggers fired",
            "timeseries",
            (
                q(
                    f"sum by (trigger) (increase(mlwarden_triggers_fired_total{M}[1h]))",
                    "{{trigger}}",
                ),
            ),
            width=12,
            height=8,
        ),
        PanelSpec(
            "Rollouts by outcome",
            "timeseries",
            (
                q(
                    f"sum by (strategy, outcome) (increase(mlwarden_rollouts_total{M}[1d]))",
                    "{{strategy}} {{outcome}}",
                ),
            ),
            width=12,
            height=8,
        ),
        PanelSpec(
            "Traffic weights",
            "timeseries",
            (q(f"mlwarden_traffic_weight{M}", "{{version}}"),),
            unit="percentunit",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Alerts firing",
            "timeseries",
            (q("max by (severity) (mlwarden_alerts_firing)", "{{severity}}"),),
            width=12,
            height=8,
        ),
    ],
}

EXPERIMENT_TRACKING = {
    "A/B arms": [
        PanelSpec(
            "Samples per arm",
            "timeseries",
            (q(f"mlwarden_experiment_samples{M}", "{{variant}}"),),
            width=12,
            height=8,
        ),
        PanelSpec(
            "p-value",
            "timeseries",
            (q(f"mlwarden_experiment_p_value{M}", "p-value"),),
            width=12,
            height=8,
        ),
        PanelSpec(
            "Relative lift of B over A",
            "timeseries",
            (q(f"mlwarden_experiment_lift{M}", "lift"),),
            unit="percentunit",
            width=12,
            height=8,
        ),
        PanelSpec(
            "Sample-ratio mismatch",
            "stat",
            (q(f"mlwarden_experiment_srm_detected{M}"),),
            width=6,
            height=8,
            description="1 when the latest evaluation found a sample-ratio mismatch.",
        ),
        PanelSpec(
            "Traffic split",
            "stat",
            (q(f"mlwarden_traffic_weight{M}", "{{version}}"),),
            unit="percentunit",
            width=6,
            height=8,
        ),
    ],
}
