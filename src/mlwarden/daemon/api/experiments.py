"""Experiment routes: start, history, one experiment, evaluate, stop (DESIGN section 5)."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ...errors import InvalidInput
from ..experiments.records import parse_arms, public
from .auth import identity
from .http import WARDEN, Route, json_response, query_limit, read_json

__all__ = ["experiment_routes", "parse_start"]

_START_KEYS = {
    "model",
    "model_a",
    "model_b",
    "name",
    "test_name",
    "traffic_split",
    "duration_hours",
    "metric",
    "test",
    "sequential",
    "auto_promote",
}
_STATUSES = ("running", "concluded", "stopped")


def _number(body: dict[str, Any], key: str, default: float | None) -> float | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidInput(f"{key!r} must be a {kind.__name__}, got {value!r}")
    return value


def parse_start(body: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``ExperimentService.start_experiment`` from a request body."""
    unknown = sorted(set(body) - _START_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown key(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(_START_KEYS))}"
        )
    model, version_a, version_b = parse_arms(body.get("model_a"), body.get("model_b"),
                                             body.get("model"))  # fmt: skip
    name = body.get("name", body.get("test_name"))
    if name is None:
        name = f"{model} {version_b} vs {version_a}"
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"'name' must be a non-empty string, got {name!r}")
    return {
        "model": model,
        "version_a": version_a,
        "version_b": version_b,
        "name": name,
        "weight_b": _number(body, "traffic_split", 0.5),
        "duration_hours": _number(body, "duration_hours", None),
        "metric": _optional(body, "metric", str),
        "test": _optional(body, "test", str),
        "sequential": _optional(body, "sequential", bool),
        "auto_promote": _optional(body, "auto_promote", bool),
    }


async def start_experiment(request: web.Request) -> web.Response:
    """Start an A/B test; 201 with the experiment, 409 when the model already runs one."""
    kwargs = parse_start(await read_json(request))
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
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise InvalidInput(f"query parameter 'status' must be one of {', '.join(_STATUSES)}")
    limit = query_limit(request)
    service = request.app[WARDEN].experiments
    records = await service.history(model=request.query.get("model"), status=status, limit=limit)
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
    reason = ""
    if await request.read():
        body = await read_json(request)
        unknown = sorted(set(body) - {"reason"})
        if unknown:
            raise InvalidInput(f"unknown key(s) {', '.join(unknown)}; expected 'reason'")
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise InvalidInput(f"'reason' must be a string, got {reason!r}")
    service = request.app[WARDEN].experiments
    record = await service.stop_experiment(
        request.match_info["id"], actor=identity(request).name, reason=reason
    )
    return json_response(public(record))


def experiment_routes() -> list[Route]:
    return [
        Route("POST", "/api/experiments", start_experiment, "operator", "Start an A/B test"),
        Route("GET", "/api/experiments/history", experiment_history, "viewer",
              "Experiments, newest first"),
        Route("GET", "/api/experiments/{id}", get_experiment, "viewer",
              "One experiment with its latest result"),
        Route("POST", "/api/experiments/{id}/evaluate", evaluate_experiment, "operator",
              "Evaluate an experiment now"),
        Route("POST", "/api/experiments/{id}/stop", stop_experiment, "operator",
              "Stop an experiment without a winner"),
    ]  # fmt: skip
