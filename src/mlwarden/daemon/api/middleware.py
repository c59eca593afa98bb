"""The middlewares every request goes through: in-flight count, metrics, JSON errors,
audit, and authentication (``auth.py``), in that order from the outside in."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ...errors import DecryptionFailed, MlwardenError
from ..core.outage import RETRY_AFTER_SECONDS, unavailable
from .auth import IDENTITY, route_method
from .http import IN_FLIGHT, ROUTES, WARDEN, Handler, error_body, json_response

__all__ = [
    "audit_middleware",
    "error_middleware",
    "in_flight_middleware",
    "metrics_middleware",
]

logger = logging.getLogger(__name__)


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
    """Turn every error into ``{"error": {"code", "message"}}`` with a fitting status.

    A store out of reach (core/outage.py) is a 503 ``store_unavailable`` with
    ``Retry-After``: nothing of the request was committed, it may be sent again.
    """
    try:
        return await handler(request)
    except MlwardenError as exc:
        if isinstance(exc, DecryptionFailed) and exc.stored is not None:
            # Named by the row's key, not only by its table.
            exc = await request.app[WARDEN].at_rest.name_stored_row(exc)
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
        response = json_response(error_body(code, message), exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the path has (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception as exc:
        if unavailable(exc):  # the database is down or restarting: not a bug, retry later
            outage = request.app[WARDEN].store.outage
            outage.began(exc)
            message = f"the store is unreachable ({outage.reason}); try again later"
            response = json_response(error_body("store_unavailable", message), 503)
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(error_body("internal_error", "internal error; see the log"), 500)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by method, route template and the status the client got.

    It runs outside the error middleware, so an error raised anywhere inside (a 401
    from auth, a 400 or 404 from a handler) is counted with the status of the JSON error
    it became, not as a 500.
    """
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
        route = request.app[ROUTES].get((route_method(request), resource.canonical))
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
            # The role the caller held then: the compliance report names it.
            detail={"remote": request.remote or "", "role": who.role if who else ""},
        )
