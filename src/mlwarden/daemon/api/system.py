"""System routes: liveness, readiness, metrics, health, the OpenAPI document, the audit log."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from ...errors import InvalidInput
from .contract import Paged, Reply, Text, query_of
from .http import ROUTES, WARDEN, Route, json_response
from .openapi import openapi_document

__all__ = ["AuditQuery", "ClusterView", "openapi_document", "system_routes"]


class Liveness(Reply):
    status: str


class Readiness(Reply):
    ready: bool
    #: "ok" or "down: <why>" per component (store, mlflow, each service).
    checks: dict[str, str]


class SystemHealth(Reply):
    status: Literal["ok", "degraded", "down"]
    version: str
    uptime_seconds: float
    base_path: str
    config_source: str | None
    #: Per component ("store", "mlflow", each service): ``{"status", ...}``.
    components: dict[str, dict[str, Any]]
    plugins: list[dict[str, Any]]
    plugin_modules: list[str]
    last_errors: list[Any]


class ClusterMember(Reply):
    instance: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float
    heartbeat_age_seconds: float
    #: The heartbeat is younger than the lease TTL.
    alive: bool


class ClusterLease(Reply):
    kind: str
    #: The model for per-model work, "" for a cluster-wide singleton.
    key: str
    owner: str
    #: The fencing token: grows by one at every change of owner.
    token: int
    acquired_at: float | None
    expires_at: float
    expired: bool


class ClusterView(Reply):
    #: The daemon that answered.
    instance: str
    #: The database's clock (every heartbeat and expiry is on it).
    now: float
    lease_ttl_seconds: float
    members: list[ClusterMember]
    leases: list[ClusterLease]


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


async def cluster(request: web.Request) -> web.Response:
    """The members with their heartbeat, and who owns which lease of cluster-wide work."""
    return json_response(await request.app[WARDEN].cluster.view())


async def key_status(request: web.Request) -> web.Response:
    """Encryption keys: the active one, sealed objects per key, the rotation's progress."""
    return json_response(await request.app[WARDEN].at_rest.status())


async def key_rotate(request: web.Request) -> web.Response:
    """Re-read the key ring (its new last key is active) and re-wrap every data key."""
    warden = request.app[WARDEN]
    if not warden.sealer.enabled:
        raise InvalidInput("encryption is not enabled ([encryption] enabled = true)")
    return json_response(await warden.at_rest.rotate(), 202)


async def key_reload(request: web.Request) -> web.Response:
    """Re-read the key ring; refused (409) while a key it lacks still wraps stored objects."""
    warden = request.app[WARDEN]
    if not warden.sealer.enabled:
        raise InvalidInput("encryption is not enabled ([encryption] enabled = true)")
    await warden.at_rest.retire()
    return json_response(await warden.at_rest.status())


class AuditQuery(Paged):
    #: Entries with a smaller id than this (the next page of a newest-first listing).
    before_id: int | None = None


class AuditPage(Reply):
    entries: list[dict[str, Any]]


async def audit_entries(request: web.Request) -> web.Response:
    """The audit log, newest first; ``?limit=`` (<= 1000) and ``?before_id=`` page through it."""
    query = query_of(request, AuditQuery)
    entries = await request.app[WARDEN].audit.entries(query.limit, query.before_id)
    return json_response({"entries": entries})


async def openapi(request: web.Request) -> web.Response:
    """An OpenAPI 3.1 document describing every route and the role it needs."""
    return json_response(openapi_document(request.app[ROUTES].values()))


def system_routes() -> list[Route]:
    async def metrics(request: web.Request) -> web.StreamResponse:
        handler = make_aiohttp_handler(request.app[WARDEN].metrics.registry)
        return await handler(request)

    return [
        Route("GET", "/healthz", healthz, "open", "Liveness", responses={200: Liveness}),
        Route("GET", "/readyz", readyz, "open", "Readiness of the store, MLflow and services",
              responses={200: Readiness, 503: Readiness}),
        Route("GET", "/metrics", metrics, "open", "Prometheus metrics", responses={200: Text}),
        Route("GET", "/api/system/health", system_health, "viewer", "System health",
              responses={200: SystemHealth}),
        Route("GET", "/api/system/cluster", cluster, "viewer",
              "Cluster members and the leases they hold", responses={200: ClusterView}),
        Route("GET", "/api/openapi.json", openapi, "viewer", "This OpenAPI document"),
        Route("GET", "/api/audit", audit_entries, "auditor", "The hash-chained audit log",
              query=AuditQuery, responses={200: AuditPage}),
        Route("GET", "/api/system/keys", key_status, "admin", "Encryption keys and their use"),
        Route("POST", "/api/system/keys/rotate", key_rotate, "admin", "Rotate the encryption key"),
        Route("POST", "/api/system/keys/reload", key_reload, "admin", "Re-read the key ring"),
    ]  # fmt: skip
