"""Experiment routes: start, history, one experiment, evaluate, stop (DESIGN section 5)."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web

from ...errors import InvalidInput
from ..experiments.records import parse_arms, public
from .auth import identity
from .contract import Body, Paged, Reply, body_of, query_of
from .http import WARDEN, Link, Route, json_response

__all__ = ["experiment_routes", "parse_start"]


class ExperimentBody(Body):
    """Arms as ``model_a``/``model_b`` = ``name@version``, or versions with ``model``."""

    model_a: str
    model_b: str
    model: str | None = None
    name: str | None = None
    #: An older spelling of ``name``.
    test_name: str | None = None
    #: The share of traffic to ``model_b``.
    traffic_split: float = 0.5
    #: Default ``ab_testing.min_duration_hours``.
    duration_hours: float | None = None
    metric: str | None = None
    test: str | None = None
    sequential: bool | None = None
    auto_promote: bool | None = None


class HistoryQuery(Paged):
    model: str | None = None
    status: Literal["running", "concluded", "stopped"] | None = None


class ExperimentList(Reply):
    experiments: list[dict[str, Any]]


class StopBody(Body):
    reason: str = ""


def parse_start(body: ExperimentBody) -> dict[str, Any]:
    """Keyword arguments of ``ExperimentService.start_experiment`` from a request body."""
    model, version_a, version_b = parse_arms(body.model_a, body.model_b, body.model)
    name = body.name if body.name is not None else body.test_name
    if name is None:
        name = f"{model} {version_b} vs {version_a}"
    if not name.strip():
        raise InvalidInput(f"'name' must be a non-empty string, got {name!r}")
    return {
        "model": model,
        "version_a": version_a,
        "version_b": version_b,
        "name": name,
        "weight_b": body.traffic_split,
        "duration_hours": body.duration_hours,
        "metric": body.metric,
        "test": body.test,
        "sequential": body.sequential,
        "auto_promote": body.auto_promote,
    }


async def start_experiment(request: web.Request) -> web.Response:
    """Start an A/B test; 201 with the experiment, 409 when the model already runs one."""
    kwargs = parse_start(body_of(request, ExperimentBody))
    service = request.app[WARDEN].experiments
    model, version_a, version_b = (
        kwargs.pop("model"),
        kwargs.pop("version_a"),
        kwargs.pop("version_b"),
    )
    record = await service.start_experiment(
        model, version_a, version_b, actor=identity(request).name, **kwargs
    )
    return json_response(public(record), 201)


async def experiment_history(request: web.Request) -> web.Response:
    """Experiments, newest first; ``?model=``, ``?status=`` and ``?limit=`` (<= 1000)."""
    query = query_of(request, HistoryQuery)
    service = request.app[WARDEN].experiments
    records = await service.history(model=query.model, status=query.status, limit=query.limit)
    return json_response({"experiments": [public(r) for r in records]})


async def get_experiment(request: web.Request) -> web.Response:
    """One experiment with its latest result and its evaluations (newest first)."""
    service = request.app[WARDEN].experiments
    experiment_id = request.match_info["id"]
    record = public(await service.get(experiment_id))
    return json_response({**record, "evaluation_history": await service.evaluations(experiment_id)})


async def evaluate_experiment(request: web.Request) -> web.Response:
    """Evaluate now; a final recommendation concludes the experiment."""
    service = request.app[WARDEN].experiments
    record = await service.evaluate(request.match_info["id"], actor=identity(request).name)
    return json_response(public(record))


async def stop_experiment(request: web.Request) -> web.Response:
    """Stop a running experiment without a winner; optional body ``{"reason": "..."}``."""
    reason = body_of(request, StopBody).reason
    service = request.app[WARDEN].experiments
    record = await service.stop_experiment(
        request.match_info["id"], actor=identity(request).name, reason=reason
    )
    return json_response(public(record))


def experiment_routes() -> list[Route]:
    by_id = {"id": "$response.body#/id"}
    return [
        Route("POST", "/api/experiments", start_experiment, "operator", "Start an A/B test",
              body=ExperimentBody, responses={201: dict[str, Any]},
              links=(Link("GetExperiment", "GET", "/api/experiments/{id}", by_id),
                     Link("StopExperiment", "POST", "/api/experiments/{id}/stop", by_id))),
        Route("GET", "/api/experiments/history", experiment_history, "viewer",
              "Experiments, newest first", query=HistoryQuery,
              responses={200: ExperimentList}),
        Route("GET", "/api/experiments/{id}", get_experiment, "viewer",
              "One experiment with its latest result"),
        Route("POST", "/api/experiments/{id}/evaluate", evaluate_experiment, "operator",
              "Evaluate an experiment now"),
        Route("POST", "/api/experiments/{id}/stop", stop_experiment, "operator",
              "Stop an experiment without a winner", body=StopBody),
    ]  # fmt: skip
