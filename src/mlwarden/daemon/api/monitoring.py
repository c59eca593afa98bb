"""Monitoring routes: predictions and labels in; drift checks, drift and performance history."""

from __future__ import annotations

from aiohttp import web

from ..ingest.arrow import ARROW_STREAM, PARQUET, TableBody
from .http import WARDEN, Route, json_response, query_float, read_json

__all__ = ["ingest_routes", "monitor_routes", "performance_routes"]


#: Header naming a batch: a retry under the same id is acknowledged and counted once.
BATCH_ID_HEADER = "Mlwarden-Batch-Id"


def _table_body(request: web.Request, body: bytes) -> TableBody | None:
    """The body as an Arrow stream or Parquet file, by its Content-Type; None for JSON."""
    if request.content_type in (ARROW_STREAM, PARQUET):
        return TableBody(body, request.content_type)
    return None


async def post_predictions(request: web.Request) -> web.Response:
    """Ingest a batch of predictions (records, columnar, Arrow or Parquet); all or nothing."""
    warden = request.app[WARDEN]
    ingest = warden.ingest
    name = request.match_info["name"]
    ingest.model_state(name)  # 404 before reading a large body
    # Decoded with the validation in one worker thread: a 1 MB body is ~20 ms of CPU.
    body = await request.read()
    payload = _table_body(request, body) or body
    batch_id = request.headers.get(BATCH_ID_HEADER)
    result = await ingest.record_predictions(name, payload, batch_id=batch_id)
    return json_response({"model": name, **result}, 201)


async def post_labels(request: web.Request) -> web.Response:
    """Ingest ground-truth labels (JSON, Arrow or Parquet); they join predictions by id."""
    warden = request.app[WARDEN]
    ingest = warden.ingest
    name = request.match_info["name"]
    ingest.model_state(name)
    table = _table_body(request, await request.read())
    body = table if table is not None else await read_json(request)
    result = await ingest.record_labels(name, body)
    return json_response({"model": name, **result}, 201)


async def post_drift_check(request: web.Request) -> web.Response:
    """Run a drift check of the model's current window now and return the DriftReport."""
    warden = request.app[WARDEN]
    report = await warden.monitor.check(request.match_info["name"])
    return json_response(report)


async def get_drift_history(request: web.Request) -> web.Response:
    """Persisted drift reports of the last ``days`` (default 7), oldest first."""
    warden = request.app[WARDEN]
    days = query_float(request, "days", 7.0)
    name = request.match_info["name"]
    reports = await warden.monitor.history(name, days=days)
    return json_response({"model": name, "days": days, "reports": reports})


async def get_performance_history(request: web.Request) -> web.Response:
    """Measured windows of every version of a model over the last ``days``."""
    days = query_float(request, "days", 30.0, minimum=0.0)
    warden = request.app[WARDEN]
    return json_response(
        await warden.get_model_performance_history(request.match_info["name"], days=days)
    )


async def post_performance_estimate(request: web.Request) -> web.Response:
    """Estimate the model's metrics on its current window now (before the labels).

    409 names what estimation lacks: a reference with labels, the classifier's
    probabilities in the reference or on its predictions.
    """
    warden = request.app[WARDEN]
    version = request.query.get("version") or None
    result = await warden.estimate_model_performance(request.match_info["name"], version=version)
    return json_response(result)


async def get_performance_estimates(request: web.Request) -> web.Response:
    """Stored estimates of the last ``days`` (default 7), with realized values once known."""
    days = query_float(request, "days", 7.0, minimum=0.0)
    warden = request.app[WARDEN]
    name = request.match_info["name"]
    estimates = await warden.estimation.history(name, days=days)
    return json_response(
        {
            "model": name,
            "days": days,
            "status": warden.estimation.status(name),
            "estimates": estimates,
        }
    )


def ingest_routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/api/models/{name}/predictions",
            post_predictions,
            "operator",
            "Ingest predictions",
        ),
        Route("POST", "/api/models/{name}/labels", post_labels, "operator", "Ingest labels"),
    ]


def monitor_routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/api/models/{name}/drift-check",
            post_drift_check,
            "operator",
            "Run a drift check now",
        ),
        Route(
            "GET",
            "/api/models/{name}/drift-history",
            get_drift_history,
            "viewer",
            "Drift reports of the last days",
        ),
    ]


def performance_routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/api/models/{name}/performance-history",
            get_performance_history,
            "viewer",
            "Performance metrics of each version over time",
        ),
        Route(
            "POST",
            "/api/models/{name}/performance-estimate",
            post_performance_estimate,
            "operator",
            "Estimate the performance of the current window before its labels",
        ),
        Route(
            "GET",
            "/api/models/{name}/performance-estimates",
            get_performance_estimates,
            "viewer",
            "Performance estimates of the last days, with realized values and errors",
        ),
    ]
