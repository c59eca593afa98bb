"""A small set of routes, one per role class, for the API tests (auth, audit, errors).

Tests mount them next to the daemon's own with ``make_client(warden,
extra_routes=fake_routes.routes())``: the route table, the auth and audit middlewares
and the OpenAPI document treat them like every other route.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mlwarden.daemon.api.http import Route, json_response, read_json
from mlwarden.errors import Conflict


class FakeItems:
    """Items in memory: GET (viewer), POST (operator), DELETE (admin)."""

    def __init__(self) -> None:
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


def routes() -> list[Route]:
    """The routes of a fresh, empty set of items."""
    return FakeItems().routes()
