"""Routes of the model registry: models, versions, lifecycle, promote/rollback, compare, cleanup."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import web

from ..registry.input import check_model_name, parse_ref
from ..registry.service import RegistryService
from .auth import actor
from .contract import Body, Query, Reply, body_of, query_of
from .http import WARDEN, Route, json_response

__all__ = ["registry_routes"]


# Entries are checked by registry/input.py, whose messages name the key (metrics.mse).
_Numbers = Annotated[
    dict[str, Any], msgspec.Meta(extra_json_schema={"additionalProperties": {"type": "number"}})
]
_Scalars = Annotated[
    dict[str, Any],
    msgspec.Meta(
        extra_json_schema={"additionalProperties": {"type": ["string", "number", "boolean"]}}
    ),
]


class RegisterBody(Body):
    """Exactly one of ``model_uri`` and ``run_id`` (with ``artifact_path``)."""

    model_uri: str | None = None
    run_id: str | None = None
    artifact_path: str | msgspec.UnsetType = msgspec.UNSET
    version: str | None = None
    bump: str | None = None
    parent: str | None = None
    metrics: _Numbers | None = None
    #: Scalars, or arrays and objects (kept as JSON text).
    params: dict[str, Any] | None = None
    tags: _Scalars | None = None
    lineage: _Scalars | None = None
    author: str | None = None
    description: str | None = None
    #: ``{"start", "end"}``: ISO dates or Unix times.
    data_window: dict[str, str | float] | None = None


class StatusBody(Body):
    status: str
    reason: str = ""


class PromoteBody(Body):
    version: str
    strategy: str | None = None
    #: Why, for the status history, the rollout and the compliance report.
    reason: str = ""


class RollbackBody(Body):
    #: The version to restore (default: the previous production version).
    version: str | None = None
    #: Why, for the status history, the rollout and the compliance report.
    reason: str = ""


class CleanupBody(Body):
    older_than_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    dry_run: bool = False
    model: str | None = None


class CompareQuery(Query):
    #: ``NAME@VERSION``
    a: str
    b: str
    #: The window compared (default ``monitoring.window_hours``).
    hours: Annotated[float, msgspec.Meta(ge=0.001)] | None = None


class ModelList(Reply):
    models: list[dict[str, Any]]


class VersionList(Reply):
    model: str
    versions: list[dict[str, Any]]


def _registry(request: web.Request) -> RegistryService:
    return request.app[WARDEN].registry


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
    body = body_of(request, RegisterBody)
    fields = msgspec.to_builtins(body)  # UNSET fields are left out
    if body.author is None:
        fields["author"] = actor(request)
    # Through the jobs: a version naming a running job of the model starts in 'training'.
    record = await request.app[WARDEN].jobs.register_version(name, fields)
    return json_response(record, status=201)


async def get_version(request: web.Request) -> web.Response:
    registry = _registry(request)
    name, version = request.match_info["name"], request.match_info["version"]
    record = await registry.get(name, version)
    return json_response({**record, "history": await registry.history(name, version)})


async def change_status(request: web.Request) -> web.Response:
    """Move a version through the lifecycle: ``{"status": ..., "reason"?: ...}``."""
    body = body_of(request, StatusBody)
    # Through the rollouts service: a change into or out of production moves the
    # traffic table with it, and is refused while a rollout runs.
    record = await request.app[WARDEN].rollouts.transition(
        request.match_info["name"],
        request.match_info["version"],
        body.status,
        actor=actor(request),
        reason=body.reason,
    )
    return json_response(record)


async def evaluate_gates(request: web.Request) -> web.Response:
    """Re-run a version's validation gates against today's production version."""
    report = await _registry(request).evaluate(
        request.match_info["name"], request.match_info["version"]
    )
    return json_response(report)


async def promote_version(request: web.Request) -> web.Response:
    body = body_of(request, PromoteBody)
    result = await request.app[WARDEN].promote(
        request.match_info["name"],
        body.version,
        strategy=body.strategy,
        actor=actor(request),
        reason=body.reason,
    )
    return json_response(result)


async def rollback_version(request: web.Request) -> web.Response:
    body = body_of(request, RollbackBody)
    result = await request.app[WARDEN].rollback(
        request.match_info["name"], body.version, actor=actor(request), reason=body.reason
    )
    return json_response(result)


async def compare(request: web.Request) -> web.Response:
    """``?a=NAME@VERSION&b=NAME@VERSION[&hours=]``: two versions side by side."""
    query = query_of(request, CompareQuery)
    parse_ref(query.a, "a")
    parse_ref(query.b, "b")
    warden = request.app[WARDEN]
    hours = query.hours if query.hours is not None else warden.config.monitoring.window_hours
    return json_response(await warden.compare_models(query.a, query.b, hours=hours))


async def system_cleanup(request: web.Request) -> web.Response:
    """``{"older_than_days"?: 30, "dry_run"?: false, "model"?: NAME}``."""
    body = body_of(request, CleanupBody)
    if body.model is not None:
        check_model_name(body.model)
    result = await request.app[WARDEN].cleanup(
        older_than_days=body.older_than_days,
        dry_run=body.dry_run,
        model=body.model,
        actor=actor(request),
    )
    return json_response(result)


def registry_routes() -> list[Route]:
    # The fixed path /api/models/compare is declared before /api/models/{name} so it wins.
    return [
        Route("GET", "/api/models", list_models, "viewer", "List models",
              responses={200: ModelList}),
        Route("GET", "/api/models/compare", compare, "viewer", "Compare two model versions",
              query=CompareQuery),
        Route("GET", "/api/models/{name}", get_model, "viewer", "A model's summary"),
        Route("GET", "/api/models/{name}/versions", list_versions, "viewer", "A model's versions",
              responses={200: VersionList}),
        Route("POST", "/api/models/{name}/versions", register_version, "operator",
              "Register a version from a model URI or a run", body=RegisterBody,
              responses={201: dict[str, Any]}),
        Route("GET", "/api/models/{name}/versions/{version}", get_version, "viewer",
              "One version: metadata, lineage, gate report, status history"),
        Route("POST", "/api/models/{name}/versions/{version}/status", change_status, "operator",
              "Move a version through the lifecycle", body=StatusBody),
        Route("POST", "/api/models/{name}/versions/{version}/gates", evaluate_gates, "operator",
              "Re-run a version's validation gates"),
        Route("POST", "/api/models/{name}/promote", promote_version, "operator",
              "Promote a version to production", body=PromoteBody),
        Route("POST", "/api/models/{name}/rollback", rollback_version, "operator",
              "Restore the previous production version", body=RollbackBody),
        Route("POST", "/api/system/cleanup", system_cleanup, "admin",
              "Remove old deprecated/archived versions and their artifacts", body=CleanupBody),
    ]  # fmt: skip
