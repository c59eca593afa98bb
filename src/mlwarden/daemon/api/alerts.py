"""Alert routes: alerts, silences and the notification outbox."""

from __future__ import annotations

from aiohttp import web

from ...errors import InvalidInput
from ..alerts.silences import parse_silence
from .auth import identity
from .http import WARDEN, Route, json_response, query_limit, read_json

__all__ = ["alert_routes"]

_STATES = ("firing", "resolved", "all")
_OUTBOX_STATES = ("pending", "sent", "dropped")


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts, newest first: ``?state=firing|resolved|all`` (firing), ``?model=``, ``?limit=``."""
    state = request.query.get("state", "firing")
    if state not in _STATES:
        raise InvalidInput(
            f"query parameter 'state' must be one of {', '.join(_STATES)}, got {state!r}"
        )
    service = request.app[WARDEN].alerts
    alerts = await service.alerts(
        state=state, model=request.query.get("model") or None, limit=query_limit(request)
    )
    return json_response({"alerts": alerts})


async def list_silences(request: web.Request) -> web.Response:
    """Every silence (pending, active and expired), newest first."""
    warden = request.app[WARDEN]
    now = warden.clock()
    silences = warden.alerts.silences.all()
    return json_response({"silences": [s.to_dict(now) for s in silences]})


async def create_silence(request: web.Request) -> web.Response:
    """Silence the alerts every matcher matches until ``ends_at`` (or for a duration)."""
    warden = request.app[WARDEN]
    body = await read_json(request)
    now = warden.clock()
    silence = parse_silence(body, now=now, created_by=identity(request).name)
    await warden.alerts.silences.add(silence)
    return json_response(silence.to_dict(now), status=201)


async def expire_silence(request: web.Request) -> web.Response:
    """Expire a silence now; its alerts notify again at their next due time."""
    warden = request.app[WARDEN]
    now = warden.clock()
    service = warden.alerts
    silence = await service.silences.expire(request.match_info["id"], now)
    service.wake()
    return json_response(silence.to_dict(now))


async def list_notifications(request: web.Request) -> web.Response:
    """The notification outbox, newest first: ``?status=pending|sent|dropped``, ``?limit=``."""
    status = request.query.get("status") or None
    if status is not None and status not in _OUTBOX_STATES:
        raise InvalidInput(
            f"query parameter 'status' must be one of {', '.join(_OUTBOX_STATES)}, got {status!r}"
        )
    outbox = request.app[WARDEN].alerts.outbox
    return json_response({"notifications": await outbox.entries(status, query_limit(request))})


def alert_routes() -> list[Route]:
    return [
        Route("GET", "/api/alerts", list_alerts, "viewer", "Alerts (firing, resolved or all)"),
        Route("GET", "/api/silences", list_silences, "viewer", "Silences"),
        Route("POST", "/api/silences", create_silence, "admin", "Create a silence"),
        Route("DELETE", "/api/silences/{id}", expire_silence, "admin", "Expire a silence"),
        Route(
            "GET",
            "/api/notifications",
            list_notifications,
            "viewer",
            "The notification outbox (pending, sent, dropped)",
        ),
    ]
