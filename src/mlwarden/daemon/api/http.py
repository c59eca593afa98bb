"""What every route module uses: the Route declaration, app keys, JSON in and out.

A route is declared with the least role allowed to call it (``daemon/api/routes.py``
collects every module's routes into one table that auth, audit and the OpenAPI
document read). Handlers reach the daemon through ``request.app[WARDEN]``, the Warden
with its typed services; errors are raised as domain errors (``mlwarden.errors``) and
answered by the error middleware.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from ..ingest.decode import decode_json

if TYPE_CHECKING:
    from ..warden import Warden

__all__ = [
    "IN_FLIGHT",
    "ROUTES",
    "WARDEN",
    "Handler",
    "InFlight",
    "Link",
    "RoleName",
    "Route",
    "error_body",
    "json_response",
    "read_json",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RoleName = Literal["open", "viewer", "auditor", "operator", "admin"]

WARDEN: web.AppKey[Warden] = web.AppKey("warden")
ROUTES: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("routes")


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
    """One HTTP route, the least role allowed to call it, and its typed contract.

    ``body`` and ``query`` are Structs (``contract.Body``, ``contract.Query``) checked
    before the handler runs, which reads them with ``contract.body_of`` and
    ``contract.query_of``; with ``raw_body`` the handler reads the bytes itself and the
    Struct only documents the body. ``responses`` maps each success status to the type
    of its body (a ``contract.Reply`` Struct, another type msgspec describes, or
    ``contract.Text``); errors are ``{"error": {"code", "message"}}`` for every route.
    ``links`` are OpenAPI links from the first declared response to other operations
    (``Link``), which stateful fuzzing follows.
    """

    method: str
    path: str
    handler: Handler
    role: RoleName
    summary: str
    #: Whether a call is written to the audit log (mutations are, reads are not).
    audited: bool | None = None
    body: type | None = None
    query: type | None = None
    raw_body: bool = False
    responses: Mapping[int, Any] = field(default_factory=lambda: {200: dict[str, Any]})
    links: tuple[Link, ...] = ()

    @property
    def is_audited(self) -> bool:
        return self.audited if self.audited is not None else self.method != "GET"


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: ``parameters`` of operation ``method path`` taken from this
    route's response (``{"id": "$response.body#/id"}``)."""

    name: str
    method: str
    path: str
    parameters: Mapping[str, str]


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
