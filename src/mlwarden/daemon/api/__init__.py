"""The HTTP API: routes declared with the role they need, one auth middleware, JSON errors.

Every route is a Route (method, path, handler, role, summary). build_app collects the
routes of the system endpoints and of every service into one route -> role table that
the auth middleware enforces and the OpenAPI document describes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from ...errors import InvalidInput, MlwardenError
from ..ingest.decode import decode_json
from .auth import ROLE_RANK, Identity, auth_middleware

if TYPE_CHECKING:
    from ..warden import Warden

__all__ = [
    "IN_FLIGHT",
    "ROUTES",
    "WARDEN",
    "InFlight",
    "Route",
    "build_app",
    "decode_json",
    "json_response",
    "query_float",
    "query_limit",
    "read_json",
]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RoleName = Literal["open", "viewer", "operator", "admin"]

WARDEN: web.AppKey[Warden] = web.AppKey("warden")
ROUTES: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("routes")
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)


class InFlight:
    """Counts the requests being handled, so that a graceful stop can wait for them.

    aiohttp's own shutdown stops reading from connections before it waits for their
    handlers, so a request whose body is still arriving would be cut off; the daemon
    first stops accepting, then waits here, then lets aiohttp close what is left.
    """

    def __init__(self) -> None:
        self.count = 0
        #: Set when the daemon is stopping: responses then close their connection.
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)


@dataclass(frozen=True)
class Route:
    """One HTTP route and the least role allowed to call it."""

    method: str
    path: str
    handler: Handler
    role: RoleName
    summary: str
    #: Whether a call is written to the audit log (mutations are, reads are not).
    audited: bool | None = None

    @property
    def is_audited(self) -> bool:
        return self.audited if self.audited is not None else self.method != "GET"


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=_json_default, allow_nan=False),
        status=status,
        content_type="application/json",
    )


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def read_json(request: web.Request, *, expect: type = dict) -> Any:
    """The request body as JSON; InvalidInput (400) names what is wrong.

    NaN and Infinity literals are accepted (they are data for the ingest path);
    a body over ``daemon.max_body_bytes`` is refused with 413 before it is read.
    """
    return decode_json(await request.read(), expect=expect)


def query_limit(request: web.Request, default: int = 100, maximum: int = 1000) -> int:
    """``?limit=`` of a listing: an integer in 1..maximum; InvalidInput (400) otherwise."""
    raw = request.query.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter 'limit' must be an integer, got {raw!r}") from None
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"query parameter 'limit' must be between 1 and {maximum}, got {limit}")
    return limit


def query_float(request: web.Request, key: str, default: float, *, minimum: float = 0.0) -> float:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {key!r} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise InvalidInput(f"query parameter {key!r} must be a finite number >= {minimum}")
    return value


def identity(request: web.Request) -> Identity:
    return request[IDENTITY]


@web.middleware
async def in_flight_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request while it is handled; close its connection when draining."""
    tracker = request.app[IN_FLIGHT]
    tracker.enter()
    try:
        response = await handler(request)
        if tracker.draining:
            response.force_close()
        return response
    finally:
        tracker.leave()


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into ``{"error": {"code", "message"}}`` with a fitting status."""
    try:
        return await handler(request)
    except MlwardenError as exc:
        response = json_response(error_body(exc.code, str(exc)), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="mlwarden"'  # RFC 6750
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "body_too_large",
        }.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        if exc.status == 413:
            limit = request.app[WARDEN].config.daemon.max_body_bytes
            message = f"request body too large: the limit is {limit} bytes (daemon.max_body_bytes)"
        return json_response(error_body(code, message), exc.status)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(error_body("internal_error", "internal error; see the log"), 500)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        info = request.match_info.route.resource
        template = info.canonical if info is not None else "unmatched"
        request.app[WARDEN].metrics.http_request_duration.labels(
            request.method, template, str(status)
        ).observe(time.perf_counter() - start)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Write every audited call (each mutation) to the hash-chained audit log."""
    resource = request.match_info.route.resource
    route = None
    if resource is not None:
        route = request.app[ROUTES].get((request.method, resource.canonical))
    if route is None or not route.is_audited:
        return await handler(request)
    outcome = "500"
    try:
        response = await handler(request)
        outcome = str(response.status)
        return response
    except web.HTTPException as exc:
        outcome = str(exc.status)
        raise
    except MlwardenError as exc:
        outcome = str(exc.status)
        raise
    finally:
        who = request.get(IDENTITY)
        target = ",".join(f"{k}={v}" for k, v in request.match_info.items())
        await request.app[WARDEN].audit.record(
            actor=who.name if who else "anonymous",
            action=f"{request.method} {resource.canonical if resource else request.path}",
            target=target,
            outcome=outcome,
            detail={"remote": request.remote or ""},
        )


def build_app(warden: Warden) -> web.Application:
    """The aiohttp application serving every route of the system and its services."""
    from .system import system_routes

    app = web.Application(
        client_max_size=warden.config.daemon.max_body_bytes,
        middlewares=[
            in_flight_middleware,
            error_middleware,
            metrics_middleware,
            audit_middleware,
            auth_middleware,
        ],
    )
    app[WARDEN] = warden
    app[IN_FLIGHT] = InFlight()
    routes: list[Route] = list(system_routes())
    for service in warden.services.values():
        routes.extend(service.routes())
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = (route.method, route.path)
        if key in table:
            raise RuntimeError(f"route {route.method} {route.path} is declared twice")
        if route.role not in ROLE_RANK and route.role != "open":
            raise RuntimeError(f"route {route.method} {route.path}: unknown role {route.role!r}")
        table[key] = route
        app.router.add_route(route.method, route.path, route.handler)
    app[ROUTES] = table
    return app
