"""Routes of the rollouts service: deployment state, sticky routing, traffic, the gateway."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ...errors import Conflict
from ..rollouts.service import RolloutService
from ..rollouts.traffic import Router, key_point
from .auth import identity
from .contract import Body, Query, Reply, body_of, query_of
from .http import WARDEN, Route, json_response, read_json

__all__ = ["rollout_routes"]


class RouteQuery(Query):
    #: The routing key (a user, session or request id).
    key: Annotated[str, msgspec.Meta(min_length=1)]


class RouteReply(Reply):
    model: str
    key: str
    version: str
    weights: dict[str, float]


class TrafficBody(Body):
    #: ``{version: share}``: shares in [0, 1] summing to 1 (checked by the service,
    #: whose message names the version).
    weights: Annotated[
        dict[str, Any],
        msgspec.Meta(
            extra_json_schema={
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                "minProperties": 1,
            }
        ),
    ]
    reason: str = "set by hand"


class TrafficReply(Reply):
    model: str
    weights: dict[str, float]


class TrafficState(TrafficReply):
    #: The latest changes of the table, newest first.
    history: list[dict[str, Any]]


class PredictRecord(Body):
    features: dict[str, Any]
    id: str | int | None = None
    #: The routing key (default: the id).
    key: str | int | None = None


class PredictBody(Body):
    """``{"records": [...]}``; a single record (``{"features": ...}``) is taken too."""

    records: list[PredictRecord]


class PredictReply(Reply):
    model: str
    predictions: list[dict[str, Any]]


class RolloutList(Reply):
    model: str
    rollouts: list[dict[str, Any]]


def _rollouts(request: web.Request) -> RolloutService:
    return request.app[WARDEN].rollouts


async def deployment(request: web.Request) -> web.Response:
    """The model's active (or latest) rollout with its analyses, and its traffic table."""
    return json_response(await _rollouts(request).deployment(request.match_info["name"]))


async def route(request: web.Request) -> web.Response:
    """Which version serves ``?key=`` (sticky hashing, proportional to the weights)."""
    name = request.match_info["name"]
    key = query_of(request, RouteQuery).key
    service = _rollouts(request)
    table = await service.traffic(name)  # the production version when no table was set
    version = Router(table).pick(key_point(name, key))
    return json_response({"model": name, "key": key, "version": version, "weights": table})


async def get_traffic(request: web.Request) -> web.Response:
    """The traffic table in force ``{version: weight}``."""
    name = request.match_info["name"]
    service = _rollouts(request)
    return json_response(
        {
            "model": name,
            "weights": await service.traffic(name),
            "history": await service.traffic_tables.history(name, 20),
        }
    )


async def put_traffic(request: web.Request) -> web.Response:
    """Set the traffic table by hand (refused while a rollout is active)."""
    name = request.match_info["name"]
    body = body_of(request, TrafficBody)
    service = _rollouts(request)
    if name in service.active:
        raise Conflict(
            f"model {name!r} has an active rollout "
            f"({service.active[name]['id']}); roll it back before setting traffic"
        )
    who = identity(request).name
    table = await service.set_traffic(name, body.weights, reason=body.reason, actor=who)
    return json_response({"model": name, "weights": table})


async def predict(request: web.Request) -> web.Response:
    """Predictions from the versions' MLflow models, routed by the traffic table."""
    name = request.match_info["name"]
    body = await read_json(request)
    return json_response(await _rollouts(request).predict(name, body))


async def rollouts(request: web.Request) -> web.Response:
    """The model's rollouts, newest first."""
    name = request.match_info["name"]
    return json_response({"model": name, "rollouts": await _rollouts(request).history(name)})


async def rollout(request: web.Request) -> web.Response:
    """One rollout with every analysis (measured values and thresholds)."""
    service = _rollouts(request)
    found = await service.get(request.match_info["id"])
    return json_response({**found, "analyses": await service.analyses(found["id"])})


def rollout_routes() -> list[Route]:
    return [
        Route("GET", "/api/models/{name}/deployment", deployment, "viewer",
              "Rollout state and traffic table"),
        Route("GET", "/api/models/{name}/route", route, "viewer",
              "The version serving a key (sticky hashing)", query=RouteQuery,
              responses={200: RouteReply}),
        Route("GET", "/api/models/{name}/traffic", get_traffic, "viewer",
              "The traffic table and its recent changes", responses={200: TrafficState}),
        Route("PUT", "/api/models/{name}/traffic", put_traffic, "operator",
              "Set the traffic table by hand", body=TrafficBody, responses={200: TrafficReply}),
        # The gateway decodes its body itself (a single record is taken too).
        Route("POST", "/api/models/{name}/predict", predict, "operator",
              "Predict through the serving gateway", body=PredictBody, raw_body=True,
              responses={200: PredictReply}),
        Route("GET", "/api/models/{name}/rollouts", rollouts, "viewer", "The model's rollouts",
              responses={200: RolloutList}),
        Route("GET", "/api/rollouts/{id}", rollout, "viewer", "One rollout with its analyses"),
    ]  # fmt: skip
