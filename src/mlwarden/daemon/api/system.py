"""System routes: liveness, readiness, metrics, health, the OpenAPI document, the audit log."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ..._version import __version__
from ...errors import InvalidInput
from .http import ROUTES, WARDEN, Route, json_response, query_limit

__all__ = ["system_routes"]


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the store, MLflow and every service answer."""
    warden = request.app[WARDEN]
    checks: dict[str, str] = {}
    try:
        await warden.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"down: {exc}"
    try:
        await asyncio.get_running_loop().run_in_executor(None, warden.tracking.ping)
        checks["mlflow"] = "ok"
    except Exception as exc:
        checks["mlflow"] = f"down: {exc}"
    for name, service in warden.services.items():
        try:
            status = (await service.health()).get("status", "ok")
            checks[name] = "ok" if status != "down" else "down"
        except Exception as exc:
            checks[name] = f"down: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)


async def system_health(request: web.Request) -> web.Response:
    """Components, plugins with their versions and origin, uptime and recent errors."""
    return json_response(await request.app[WARDEN].get_system_health())


async def key_status(request: web.Request) -> web.Response:
    """Encryption keys: the active one, sealed objects per key, the rotation's progress."""
    return json_response(await request.app[WARDEN].key_status())


async def key_rotate(request: web.Request) -> web.Response:
    """Re-read the key ring (its new last key is active) and re-wrap every data key."""
    warden = request.app[WARDEN]
    if not warden.sealer.enabled:
        raise InvalidInput("encryption is not enabled ([encryption] enabled = true)")
    return json_response(await warden.rotate_keys(), 202)


async def key_reload(request: web.Request) -> web.Response:
    """Re-read the key ring; refused (409) while a key it lacks still wraps stored objects."""
    warden = request.app[WARDEN]
    if not warden.sealer.enabled:
        raise InvalidInput("encryption is not enabled ([encryption] enabled = true)")
    await warden.retire_keys()
    return json_response(await warden.key_status())


async def audit_entries(request: web.Request) -> web.Response:
    """The audit log, newest first; ``?limit=`` (<= 1000) and ``?before_id=`` page through it."""
    limit = query_limit(request)
    before = request.query.get("before_id")
    try:
        before_id = int(before) if before is not None else None
    except ValueError:
        message = f"query parameter 'before_id' must be an integer, got {before!r}"
        raise InvalidInput(message) from None
    entries = await request.app[WARDEN].audit.entries(limit, before_id)
    return json_response({"entries": entries})


async def openapi(request: web.Request) -> web.Response:
    """An OpenAPI 3.1 document describing every route and the role it needs."""
    return json_response(openapi_document(request.app[ROUTES].values()))


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in sorted(routes, key=lambda r: (r.path, r.method)):
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)", route.path)
        ]
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": f"{route.method.lower()}_{_slug(route.path)}",
            "parameters": params,
            "x-mlwarden-role": route.role,
            "responses": {
                "200": {"description": "OK"},
                "default": {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            },
        }
        if route.role != "open":
            operation["security"] = [{"bearer": []}]
        if route.method in ("POST", "PUT", "PATCH"):
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlwarden", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                            "required": ["code", "message"],
                        }
                    },
                }
            },
        },
    }


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.lower()).strip("_")


def system_routes() -> list[Route]:
    async def metrics(request: web.Request) -> web.StreamResponse:
        handler = make_aiohttp_handler(request.app[WARDEN].metrics.registry)
        return await handler(request)

    return [
        Route("GET", "/healthz", healthz, "open", "Liveness"),
        Route("GET", "/readyz", readyz, "open", "Readiness of the store, MLflow and services"),
        Route("GET", "/metrics", metrics, "open", "Prometheus metrics"),
        Route("GET", "/api/system/health", system_health, "viewer", "System health"),
        Route("GET", "/api/openapi.json", openapi, "viewer", "This OpenAPI document"),
        Route("GET", "/api/audit", audit_entries, "auditor", "The hash-chained audit log"),
        Route("GET", "/api/system/keys", key_status, "admin", "Encryption keys and their use"),
        Route("POST", "/api/system/keys/rotate", key_rotate, "admin", "Rotate the encryption key"),
        Route("POST", "/api/system/keys/reload", key_reload, "admin", "Re-read the key ring"),
    ]
