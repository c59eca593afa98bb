"""Monitoring routes: predictions and labels in; drift checks, drift and performance history."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ..ingest.arrow import ARROW_STREAM, PARQUET, TableBody
from .contract import Body, Query, Reply, query_of
from .http import WARDEN, Route, json_response, read_json

__all__ = [
    "ColumnarPredictions",
    "LabelRecord",
    "LabelsBody",
    "PredictionRecord",
    "PredictionsBody",
    "ingest_routes",
    "monitor_routes",
    "performance_routes",
]

# The ingest bodies are decoded by the ingest service's own fast decoders
# (daemon/ingest/decode.py: simdjson, msgspec, orjson) and validated with messages that
# name the record and its id; these Structs document them (``raw_body=True``). A field
# added to a record goes into the allowed set of daemon/ingest/batches.py and here.

Scalar = str | int | float | bool | None


class PredictionRecord(Body):
    id: str | int
    #: ``{feature: value}``: the model's features, each a JSON scalar.
    features: dict[str, Scalar]
    prediction: Scalar = None
    #: Unix seconds or an ISO 8601 string (default: now).
    ts: float | str | None = None
    version: str | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    error: bool | None = None
    #: A binary classifier's P(positive class) (docs/estimation.md).
    probability: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    #: A multiclass classifier's probability per class, summing to 1.
    probabilities: dict[str, Annotated[float, msgspec.Meta(ge=0, le=1)]] | None = None


class ColumnarPredictions(Body):
    id: list[str | int]
    features: dict[str, list[Scalar]]
    prediction: list[Scalar] | None = None
    ts: list[float | str | None] | None = None
    version: list[str | None] | None = None
    latency_ms: list[float | None] | None = None
    error: list[bool | None] | None = None
    probability: list[float] | None = None
    probabilities: dict[str, list[float]] | None = None


class PredictionsBody(Body):
    """Exactly one of ``records`` and ``columns``."""

    records: list[PredictionRecord] | None = None
    columns: ColumnarPredictions | None = None


class Accepted(Reply):
    model: str
    accepted: int


class PredictionsAccepted(Accepted):
    #: False for a model without a feature schema (its features are not profiled).
    profiled: bool


class LabelRecord(Body):
    id: str | int
    label: str | float | int | bool


class LabelsBody(Body):
    labels: list[LabelRecord]


class LabelsAccepted(Accepted):
    matched: int
    unmatched: int


class DaysQuery(Query):
    days: Annotated[float, msgspec.Meta(ge=0)] | None = None


class VersionQuery(Query):
    version: str | None = None


class DriftHistory(Reply):
    model: str
    days: float
    reports: list[dict[str, Any]]


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
    days = query_of(request, DaysQuery).days
    days = 7.0 if days is None else days
    name = request.match_info["name"]
    reports = await warden.monitor.history(name, days=days)
    return json_response({"model": name, "days": days, "reports": reports})


async def get_performance_history(request: web.Request) -> web.Response:
    """Measured windows of every version of a model over the last ``days``."""
    days = query_of(request, DaysQuery).days
    days = 30.0 if days is None else days
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
    version = query_of(request, VersionQuery).version or None
    result = await warden.estimate_model_performance(request.match_info["name"], version=version)
    return json_response(result)


async def get_performance_estimates(request: web.Request) -> web.Response:
    """Stored estimates of the last ``days`` (default 7), with realized values once known."""
    days = query_of(request, DaysQuery).days
    days = 7.0 if days is None else days
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
        Route("POST", "/api/models/{name}/predictions", post_predictions, "operator",
              "Ingest predictions", body=PredictionsBody, raw_body=True,
              responses={201: PredictionsAccepted}),
        Route("POST", "/api/models/{name}/labels", post_labels, "operator", "Ingest labels",
              body=LabelsBody, raw_body=True, responses={201: LabelsAccepted}),
    ]  # fmt: skip


def monitor_routes() -> list[Route]:
    return [
        Route("POST", "/api/models/{name}/drift-check", post_drift_check, "operator",
              "Run a drift check now"),
        Route("GET", "/api/models/{name}/drift-history", get_drift_history, "viewer",
              "Drift reports of the last days (default 7)", query=DaysQuery,
              responses={200: DriftHistory}),
    ]  # fmt: skip


def performance_routes() -> list[Route]:
    return [
        Route("GET", "/api/models/{name}/performance-history", get_performance_history,
              "viewer", "Performance metrics of each version over time (default 30 days)",
              query=DaysQuery),
        Route("POST", "/api/models/{name}/performance-estimate", post_performance_estimate,
              "operator", "Estimate the performance of the current window before its labels",
              query=VersionQuery),
        Route("GET", "/api/models/{name}/performance-estimates", get_performance_estimates,
              "viewer", "Performance estimates of the last days, with realized values and errors",
              query=DaysQuery),
    ]  # fmt: skip
