"""The OpenAPI 3.1 document of the route table, built from each route's typed contract.

Every route contributes its path parameters (strings), its query parameters and request
body (the JSON Schemas of its ``query`` and ``body`` Structs), each declared success
status with the schema of its body, and ``default``: the ``Error`` body every error
answer has. ``x-mlwarden-role`` names the least role allowed to call it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..._version import __version__
from .contract import Files, Text, body_is_required, query_parameters, schema_of
from .http import Route

__all__ = ["ERROR_SCHEMA", "openapi_document", "operation_id"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def operation_id(method: str, path: str) -> str:
    """``get_api_models_name`` for ``GET /api/models/{name}``."""
    return f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"


def openapi_document(routes: Iterable[Route]) -> dict[str, Any]:
    """The document describing ``routes``; RuntimeError when two Structs share a name."""
    ordered = sorted(routes, key=lambda r: (r.path, r.method))
    kinds: dict[str, Any] = {}
    for route in ordered:
        if route.body is not None:
            kinds[f"{id(route)}:body"] = route.body
        for status, kind in route.responses.items():
            if kind is not Text and not isinstance(kind, Files):
                kinds[f"{id(route)}:{status}"] = kind
    schemas, components = schema_of(kinds)
    paths: dict[str, dict[str, Any]] = {}
    for route in ordered:
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)", route.path)
        ]
        if route.query is not None:
            params.extend(query_parameters(route.query))
        responses: dict[str, Any] = {}
        for status, kind in route.responses.items():
            if kind is Text:
                content = {"text/plain": {"schema": {"type": "string"}}}
            elif isinstance(kind, Files):
                content = {media: {"schema": {}} for media in kind.media}
            else:
                content = {"application/json": {"schema": schemas[f"{id(route)}:{status}"]}}
            responses[str(status)] = {"description": _reason(status), "content": content}
        if route.links:
            first = responses[str(next(iter(route.responses)))]
            first["links"] = {
                link.name: {
                    "operationId": operation_id(link.method, link.path),
                    "parameters": dict(link.parameters),
                }
                for link in route.links
            }
        responses["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": operation_id(route.method, route.path),
            "parameters": params,
            "x-mlwarden-role": route.role,
            "responses": responses,
        }
        if route.role != "open":
            operation["security"] = [{"bearer": []}]
        if route.body is not None:
            operation["requestBody"] = {
                "required": body_is_required(route.body),
                "content": {"application/json": {"schema": schemas[f"{id(route)}:body"]}},
            }
        elif route.method in ("POST", "PUT", "PATCH"):  # undeclared: any JSON object
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    if "Error" in components:
        raise RuntimeError("an API Struct is named 'Error', the name of the error schema")
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlwarden", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR_SCHEMA, **components},
        },
    }


def _reason(status: int) -> str:
    return {200: "OK", 201: "Created", 202: "Accepted", 503: "Not ready"}.get(status, "OK")
