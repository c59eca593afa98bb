"""A plugin that mounts a small service with one route per role class (for API tests).

Its ``mlwarden_startup`` adds ``FakeItemsService`` to the running Warden; the daemon
builds its HTTP app after start-up, so the routes are live in a real ``mlwarden run``.
In-process tests add the service directly with ``install(warden)``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mlwarden import hookimpl
from mlwarden.daemon.api import Route, json_response, read_json
from mlwarden.daemon.core.service import Service
from mlwarden.errors import Conflict


class FakeItemsService(Service):
    """Items in memory: GET (viewer), POST (operator), DELETE (admin)."""

    name = "fake_items"

    def __init__(self, warden: Any) -> None:
        super().__init__(warden)
        self.items: dict[str, Any] = {}

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/fake/items", self.list_items, "viewer", "List fake items"),
            Route("POST", "/api/fake/items/{name}", self.put_item, "operator", "Store an item"),
            Route("DELETE", "/api/fake/items/{name}", self.drop_item, "admin", "Drop an item"),
        ]

    async def list_items(self, request: web.Request) -> web.Response:
        return json_response({"items": self.items})

    async def put_item(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json(request)
        if name in self.items:
            raise Conflict(f"item {name!r} exists")
        self.items[name] = body
        return json_response({"name": name, "item": body}, 201)

    async def drop_item(self, request: web.Request) -> web.Response:
        self.items.pop(request.match_info["name"], None)
        return json_response({"dropped": request.match_info["name"]})


def install(warden: Any) -> FakeItemsService:
    service = FakeItemsService(warden)
    warden.services[service.name] = service
    return service


@hookimpl
def mlwarden_startup(warden: Any) -> None:
    install(warden)
