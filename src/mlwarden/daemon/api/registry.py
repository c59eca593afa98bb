"""Routes of the model registry: models, versions, lifecycle, promote/rollback, compare, cleanup."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import InvalidInput
from ..registry.input import check_model_name, parse_ref
from ..registry.service import RegistryService
from .auth import actor
from .http import WARDEN, Route, json_response, query_float, read_json

__all__ = ["registry_routes"]


def _registry(request: web.Request) -> RegistryService:
    return request.app[WARDEN].registry


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}; expected some of: {', '.join(allowed)}"
        )


async def list_models(request: web.Request) -> web.Response:
    """Every configured or registered model with its production and latest version."""
    registry = _registry(request)
    return json_response(
        {"models": [await registry.model(name) for name in await registry.model_names()]}
    )


async def get_model(request: web.Request) -> web.Response:
    return json_response(await _registry(request).model(request.match_info["name"]))


async def list_versions(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    registry = _registry(request)
    await registry.model(name)
    return json_response({"model": name, "versions": await registry.versions(name)})


async def register_version(request: web.Request) -> web.Response:
    """Register a version from a model URI or a run; 201 with the version record."""
    name = check_model_name(request.match_info["name"])
    body = await read_json(request)
    if "author" not in body:
        body["author"] = actor(request)
    record = await _registry(request).register_body(name, body)
    return json_response(record, status=201)


async def get_version(request: web.Request) -> web.Response:
    registry = _registry(request)
    name, version = request.match_info["name"], request.match_info["version"]
    record = await registry.get(name, version)
    return json_response({**record, "history": await registry.history(name, version)})


async def change_status(request: web.Request) -> web.Response:
    """Move a version through the lifecycle: ``{"status": ..., "reason"?: ...}``."""
    body = await read_json(request)
    _only(body, ("status", "reason"))
    if "status" not in body:
        raise InvalidInput("status: required (the lifecycle status to move to)")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise InvalidInput("reason: expected a string")
    # Through the rollouts service: a change into or out of production moves the
    # traffic table with it, and is refused while a rollout runs.
    record = await request.app[WARDEN].rollouts.transition(
        request.match_info["name"],
        request.match_info["version"],
        body["status"],
        actor=actor(request),
        reason=reason,
    )
    return json_response(record)


async def evaluate_gates(request: web.Request) -> web.Response:
    """Re-run a version's validation gates against today's production version."""
    report = await _registry(request).evaluate(
        request.match_info["name"], request.match_info["version"]
    )
    return json_response(report)


async def promote_version(request: web.Request) -> web.Response:
    body = await read_json(request)
    _only(body, ("version", "strategy"))
    if not isinstance(body.get("version"), str):
        raise InvalidInput("version: required, the semantic version to promote")
    result = await request.app[WARDEN].promote(
        request.match_info["name"],
        body["version"],
        strategy=body.get("strategy"),
        actor=actor(request),
    )
    return json_response(result)


async def rollback_version(request: web.Request) -> web.Response:
    body = await read_json(request) if request.can_read_body else {}
    _only(body, ("version",))
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidInput("version: expected a semantic version string")
    result = await request.app[WARDEN].rollback(
        request.match_info["name"], version, actor=actor(request)
    )
    return json_response(result)


async def compare(request: web.Request) -> web.Response:
    """``?a=NAME@VERSION&b=NAME@VERSION[&hours=]``: two versions side by side."""
    for key in ("a", "b"):
        if key not in request.query:
            raise InvalidInput(f"query parameter {key!r} is required (NAME@VERSION)")
    parse_ref(request.query["a"], "a")
    parse_ref(request.query["b"], "b")
    warden = request.app[WARDEN]
    hours = query_float(request, "hours", warden.config.monitoring.window_hours, minimum=0.001)
    return json_response(
        await warden.compare_models(request.query["a"], request.query["b"], hours=hours)
    )


async def system_cleanup(request: web.Request) -> web.Response:
    """``{"older_than_days"?: 30, "dry_run"?: false, "model"?: NAME}``."""
    body = await read_json(request) if request.can_read_body else {}
    _only(body, ("older_than_days", "dry_run", "model"))
    model = body.get("model")
    if model is not None:
        check_model_name(model)
    result = await request.app[WARDEN].cleanup(
        older_than_days=body.get("older_than_days", 30.0),
        dry_run=body.get("dry_run", False),
        model=model,
        actor=actor(request),
    )
    return json_response(result)


def registry_routes() -> list[Route]:
    # The fixed path /api/models/compare is declared before /api/models/{name} so it wins.
    return [
        Route("GET", "/api/models", list_models, "viewer", "List models"),
        Route("GET", "/api/models/compare", compare, "viewer", "Compare two model versions"),
        Route("GET", "/api/models/{name}", get_model, "viewer", "A model's summary"),
        Route("GET", "/api/models/{name}/versions", list_versions, "viewer", "A model's versions"),
        Route("POST", "/api/models/{name}/versions", register_version, "operator",
              "Register a version from a model URI or a run"),
        Route("GET", "/api/models/{name}/versions/{version}", get_version, "viewer",
              "One version: metadata, lineage, gate report, status history"),
        Route("POST", "/api/models/{name}/versions/{version}/status", change_status, "operator",
              "Move a version through the lifecycle"),
        Route("POST", "/api/models/{name}/versions/{version}/gates", evaluate_gates, "operator",
              "Re-run a version's validation gates"),
        Route("POST", "/api/models/{name}/promote", promote_version, "operator",
              "Promote a version to production"),
        Route("POST", "/api/models/{name}/rollback", rollback_version, "operator",
              "Restore the previous production version"),
        Route("POST", "/api/system/cleanup", system_cleanup, "admin",
              "Remove old deprecated/archived versions and their artifacts"),
    ]  # fmt: skip
