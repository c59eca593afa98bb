"""What experiments export: MLflow runs (parameters, metrics per evaluation, the result)
and the Prometheus gauges of a running experiment.

The MLflow calls block: the experiments service runs them in a thread.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

from ..core.metrics import Metrics
from ..core.tracking import Tracking
from .records import ExperimentRecord

if TYPE_CHECKING:
    from mlflow.entities import Metric

__all__ = ["clear_gauges", "export_gauges", "log_conclusion", "log_evaluation", "log_start"]


def log_start(tracking: Tracking, record: ExperimentRecord) -> str:
    """Create the experiment's run with its parameters; returns the run id."""
    from mlflow.entities import Param

    client = tracking.client
    if tracking.experiment_id is None:  # set up with the client, so never here
        raise RuntimeError("MLflow tracking is not set up yet")
    settings = record["settings"]
    run = client.create_run(
        experiment_id=tracking.experiment_id,
        run_name=f"ab-test {record['name']}",
        tags={
            "mlwarden.kind": "ab_test",
            "mlwarden.model": record["model"],
            "mlwarden.experiment_id": record["id"],
            "mlwarden.actor": record["actor"],
        },
    )
    params = {
        "model": record["model"],
        "version_a": record["version_a"],
        "version_b": record["version_b"],
        "traffic_split": record["traffic_split"],
        "duration_hours": record["duration_hours"],
        "auto_promote": record["auto_promote"],
        **{k: settings[k] for k in sorted(settings) if k != "guardrails"},
        "guardrails": ",".join(settings["guardrails"]),
    }
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return str(run.info.run_id)


def _metrics(data: dict[str, Any], step: int) -> list[Metric]:
    from mlflow.entities import Metric

    values = {
        "p_value": data.get("p_value"),
        "p_value_adjusted": data.get("p_value_adjusted"),
        "lift": data.get("lift"),
        "estimate": data.get("estimate"),
        "samples_a": (data.get("samples") or {}).get("A"),
        "samples_b": (data.get("samples") or {}).get("B"),
        "srm_p_value": (data.get("srm") or {}).get("p_value"),
        "power": (data.get("power") or {}).get("power"),
    }
    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step)
        for k, v in values.items()
        if isinstance(v, int | float) and math.isfinite(v)
    ]


def log_evaluation(tracking: Tracking, record: ExperimentRecord, data: dict[str, Any]) -> None:
    """Log one evaluation's numbers as metrics at step = the evaluation's number."""
    run_id = record.get("mlflow_run_id")
    if run_id:
        tracking.client.log_batch(run_id, metrics=_metrics(data, int(record["evaluations"]) + 1))


def log_conclusion(tracking: Tracking, record: ExperimentRecord, data: dict[str, Any]) -> None:
    """Tag the outcome, attach the full result as JSON, and end the run."""
    run_id = record.get("mlflow_run_id")
    if not run_id:
        return
    client = tracking.client
    client.set_tag(run_id, "mlwarden.status", record["status"])
    client.set_tag(run_id, "mlwarden.recommendation", str(data.get("recommendation") or ""))
    client.set_tag(run_id, "mlwarden.winner", str(record.get("winner") or ""))
    client.log_dict(
        run_id, {**data, "promotion": record.get("promotion")}, "experiment_result.json"
    )
    client.set_terminated(run_id, "FINISHED" if record["status"] == "concluded" else "KILLED")


def export_gauges(metrics: Metrics, model: str, data: dict[str, Any]) -> None:
    """Set the running experiment's gauges from one evaluation."""
    if data["p_value"] is not None:
        metrics.experiment_p_value.labels(model).set(data["p_value"])
    if data["lift"] is not None and hasattr(metrics, "experiment_lift"):
        metrics.experiment_lift.labels(model).set(data["lift"])
    if hasattr(metrics, "experiment_srm_detected"):
        metrics.experiment_srm_detected.labels(model).set(1.0 if data["srm"]["mismatch"] else 0.0)
    for arm in ("A", "B"):
        metrics.experiment_samples.labels(model, arm).set(data["samples"][arm])


def clear_gauges(metrics: Metrics, model: str) -> None:
    """Remove the gauges of a model's experiment once it has ended."""
    for name, labels in (
        ("experiment_p_value", [(model,)]),
        ("experiment_lift", [(model,)]),
        ("experiment_srm_detected", [(model,)]),
        ("experiment_samples", [(model, "A"), (model, "B")]),
    ):
        gauge = getattr(metrics, name, None)
        for label in labels:
            if gauge is not None:
                with contextlib.suppress(KeyError):
                    gauge.remove(*label)
