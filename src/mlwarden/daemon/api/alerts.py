"""Alert routes: alerts, silences and the notification outbox."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from ..alerts.silences import parse_silence
from .auth import identity
from .contract import Body, Paged, Reply, body_of, query_of
from .http import WARDEN, Link, Route, json_response

__all__ = ["alert_routes"]


class AlertQuery(Paged):
    state: Literal["firing", "resolved", "all"] = "firing"
    model: str | None = None


class AlertList(Reply):
    alerts: list[dict[str, Any]]


class Matcher(Body):
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True


class SilenceBody(Body):
    """Exactly one of ``ends_at`` and ``duration_seconds``; times are Unix times or ISO
    8601 strings."""

    matchers: list[Matcher]
    starts_at: float | str | msgspec.UnsetType = msgspec.UNSET
    ends_at: float | str | msgspec.UnsetType = msgspec.UNSET
    duration_seconds: float | msgspec.UnsetType = msgspec.UNSET
    comment: str = ""


class SilenceList(Reply):
    silences: list[dict[str, Any]]


class OutboxQuery(Paged):
    status: Literal["pending", "sent", "dropped"] | None = None


class OutboxList(Reply):
    notifications: list[dict[str, Any]]


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts, newest first: ``?state=firing|resolved|all`` (firing), ``?model=``, ``?limit=``."""
    query = query_of(request, AlertQuery)
    service = request.app[WARDEN].alerts
    alerts = await service.alerts(state=query.state, model=query.model or None, limit=query.limit)
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
    body = msgspec.to_builtins(body_of(request, SilenceBody))  # UNSET fields left out
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
    query = query_of(request, OutboxQuery)
    outbox = request.app[WARDEN].alerts.outbox
    return json_response({"notifications": await outbox.entries(query.status, query.limit)})


def alert_routes() -> list[Route]:
    return [
        Route("GET", "/api/alerts", list_alerts, "viewer", "Alerts (firing, resolved or all)",
              query=AlertQuery, responses={200: AlertList}),
        Route("GET", "/api/silences", list_silences, "viewer", "Silences",
              responses={200: SilenceList}),
        Route("POST", "/api/silences", create_silence, "admin", "Create a silence",
              body=SilenceBody, responses={201: dict[str, Any]},
              links=(Link("ExpireSilence", "DELETE", "/api/silences/{id}",
                          {"id": "$response.body#/id"}),)),
        Route("DELETE", "/api/silences/{id}", expire_silence, "admin", "Expire a silence"),
        Route("GET", "/api/notifications", list_notifications, "viewer",
              "The notification outbox (pending, sent, dropped)", query=OutboxQuery,
              responses={200: OutboxList}),
    ]  # fmt: skip
