"""Routes of the rollouts service: deployment state, sticky routing, traffic, the gateway."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidInput
from ..rollouts.service import RolloutService
from ..rollouts.traffic import Router, key_point
from .auth import identity
from .http import WARDEN, Route, json_response, read_json

__all__ = ["rollout_routes"]


def _rollouts(request: web.Request) -> RolloutService:
    return request.app[WARDEN].rollouts


async def deployment(request: web.Request) -> web.Response:
    """The model's active (or latest) rollout with its analyses, and its traffic table."""
    return json_response(await _rollouts(request).deployment(request.match_info["name"]))


async def route(request: web.Request) -> web.Response:
    """Which version serves ``?key=`` (sticky hashing, proportional to the weights)."""
    name = request.match_info["name"]
    key = request.query.get("key")
    if not key:
        raise InvalidInput(
            "query parameter 'key' is required: the routing key (a user, session or request id)"
        )
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
    body = await read_json(request)
    weights = body.get("weights")
    reason = body.get("reason", "set by hand")
    if not isinstance(reason, str):
        raise InvalidInput(f"reason: expected a string, got {reason!r}")
    service = _rollouts(request)
    if name in service.active:
        from ...errors import Conflict

        raise Conflict(
            f"model {name!r} has an active rollout "
            f"({service.active[name]['id']}); roll it back before setting traffic"
        )
    who = identity(request).name
    table = await service.set_traffic(name, weights, reason=reason, actor=who)
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
        Route(
            "GET",
            "/api/models/{name}/deployment",
            deployment,
            "viewer",
            "Rollout state and traffic table",
        ),
        Route(
            "GET",
            "/api/models/{name}/route",
            route,
            "viewer",
            "The version serving a key (sticky hashing)",
        ),
        Route(
            "GET",
            "/api/models/{name}/traffic",
            get_traffic,
            "viewer",
            "The traffic table and its recent changes",
        ),
        Route(
            "PUT",
            "/api/models/{name}/traffic",
            put_traffic,
            "operator",
            "Set the traffic table by hand",
        ),
        Route(
            "POST",
            "/api/models/{name}/predict",
            predict,
            "operator",
            "Predict through the serving gateway",
        ),
        Route("GET", "/api/models/{name}/rollouts", rollouts, "viewer", "The model's rollouts"),
        Route("GET", "/api/rollouts/{id}", rollout, "viewer", "One rollout with its analyses"),
    ]
