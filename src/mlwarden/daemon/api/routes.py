"""Every route of the daemon in one table, and the aiohttp application serving it.

Each module of ``daemon/api/`` declares its routes (a function returning ``Route``s);
``ROUTE_GROUPS`` lists them all. ``build_app`` checks the table once (a route declared
twice, or with an unknown role, stops start-up) and hands it to the middlewares: the
auth middleware enforces each route's role, the audit middleware writes each audited
call, and ``/api/openapi.json`` describes the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from ..warden import Warden
from .alerts import alert_routes
from .auth import ROLE_GRANTS, auth_middleware
from .contract import BODY, QUERY, parse_body, parse_query
from .experiments import experiment_routes
from .http import IN_FLIGHT, ROUTES, WARDEN, Handler, InFlight, Route
from .jobs import job_routes
from .middleware import (
    audit_middleware,
    error_middleware,
    in_flight_middleware,
    metrics_middleware,
)
from .monitoring import ingest_routes, monitor_routes, performance_routes
from .references import reference_routes
from .registry import registry_routes
from .reports import report_routes
from .rollouts import rollout_routes
from .system import system_routes

__all__ = ["ROUTE_GROUPS", "build_app", "typed"]

#: Every module's routes; the order is the routing order (a fixed path before a variable one).
ROUTE_GROUPS: tuple[Callable[[], list[Route]], ...] = (
    system_routes,
    alert_routes,
    ingest_routes,
    monitor_routes,
    reference_routes,
    registry_routes,
    performance_routes,
    rollout_routes,
    report_routes,
    experiment_routes,
    job_routes,
)


def build_app(warden: Warden, *, extra_routes: Iterable[Route] = ()) -> web.Application:
    """The aiohttp application serving every route of ``ROUTE_GROUPS`` (and
    ``extra_routes``, which tests use), each checked for a unique path and a known role."""
    app = web.Application(
        client_max_size=warden.config.daemon.max_body_bytes,
        middlewares=[
            in_flight_middleware,
            metrics_middleware,  # outside the error middleware: it sees the real status
            error_middleware,
            audit_middleware,
            auth_middleware,
        ],
    )
    app[WARDEN] = warden
    app[IN_FLIGHT] = InFlight()
    routes = [route for group in ROUTE_GROUPS for route in group()]
    routes.extend(extra_routes)
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = (route.method, route.path)
        if key in table:
            raise RuntimeError(f"route {route.method} {route.path} is declared twice")
        if route.role not in ROLE_GRANTS and route.role != "open":
            raise RuntimeError(f"route {route.method} {route.path}: unknown role {route.role!r}")
        table[key] = route
        # HEAD is answered like GET without a body (aiohttp drops it), under GET's role.
        if route.method == "GET":
            app.router.add_get(route.path, typed(route), allow_head=True)
        else:
            app.router.add_route(route.method, route.path, typed(route))
    app[ROUTES] = table
    return app


def typed(route: Route) -> Handler:
    """``route.handler`` behind the checks of its declared query and body (400 naming
    the field); the handler reads them with ``contract.query_of`` and ``body_of``."""
    if route.query is None and (route.body is None or route.raw_body):
        return route.handler
    query, body = route.query, None if route.raw_body else route.body

    async def handler(request: web.Request) -> web.StreamResponse:
        if query is not None:
            request[QUERY] = parse_query(request, query)
        if body is not None:
            request[BODY] = await parse_body(request, body)
        return await route.handler(request)

    return handler
