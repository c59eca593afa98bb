"""The typed API contract: bodies, query parameters and responses declared as Structs.

A route declares its contract on its ``Route`` (``daemon/api/http.py``)::

    class TrafficBody(Body):
        weights: dict[str, Annotated[float, Meta(ge=0, le=1)]]
        reason: str = "set by hand"

    class TrafficReply(Reply):
        model: str
        weights: dict[str, float]

    Route("PUT", "/api/models/{name}/traffic", put_traffic, "operator", "Set traffic",
          body=TrafficBody, responses={200: TrafficReply})

and its handler reads what was checked with ``body_of(request, TrafficBody)`` (or
``query_of(request, SomeQuery)``). The same declaration does three things:

- **validation**, before the handler runs: the body is checked for size (aiohttp's
  ``client_max_size``, 413) and JSON nesting depth (``MAX_JSON_DEPTH``, 400) before it is
  parsed, then converted to the Struct; a wrong field is a 400 naming the field and what
  was expected (``weights: expected object, got null``), an unknown field a 400 naming
  it and the fields allowed (``Body`` forbids unknown fields). Query parameters are
  converted from their strings the same way (``Query``; unknown parameters are ignored).
- **the OpenAPI document** (``/api/openapi.json``, ``system.openapi_document``): request
  bodies, query parameters and each declared response status get the JSON Schema of
  their Struct (``msgspec.json.schema_components``).
- **the fuzz test** (tests/daemon/api/test_fuzz.py) runs schemathesis against that
  document, so a declared schema is held to what the daemon really answers.

Fast routes that decode their own bodies (the ingest routes: simdjson/msgspec decoders
in ``daemon/ingest/decode.py``) declare their body with ``raw_body=True``: the Struct
documents the body in OpenAPI and the handler keeps reading the bytes itself.

To add a field: add it to the Struct (with a default when it is optional; ``UNSET``
when "absent" must differ from any value). To add a route: declare its Structs in its
route module next to the handler and name them on the ``Route``. Struct names are the
schema names in the OpenAPI document, so they must be unique across the API (checked
when the document is built).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web

from ...errors import InvalidInput
from ..ingest.decode import MAX_JSON_DEPTH, decode_json

__all__ = [
    "BODY",
    "MAX_JSON_DEPTH",
    "QUERY",
    "Body",
    "Files",
    "Paged",
    "Query",
    "Reply",
    "Text",
    "body_is_required",
    "body_of",
    "loose",
    "parse_body",
    "parse_query",
    "query_of",
]

T = TypeVar("T")


class _Finite:
    """Refuses NaN and infinities in the Struct's own float fields (msgspec takes them)."""

    def __post_init__(self) -> None:
        for name in getattr(self, "__struct_fields__", ()):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"Expected a finite number - at `$.{name}`")


class Body(_Finite, msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies: a JSON object; unknown fields are refused (400)."""


class Query(_Finite, msgspec.Struct, kw_only=True):
    """Base of query parameters: each field one parameter, converted from its string."""


class Paged(Query):
    """``?limit=`` of a listing: 1..1000, default 100."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class Reply(msgspec.Struct, kw_only=True):
    """Base of response bodies (documentation only: handlers build them as they like;
    the fuzz test holds the answers to the schema). Extra keys are allowed."""


def loose(kind: Any, schema: dict[str, Any]) -> Any:
    """``kind`` for validation, documented with ``schema`` merged into its JSON Schema.

    For a value the domain validates itself with a better message than msgspec could
    give (msgspec names a dict entry ``weights[...]``; the domain names the version).
    The result is a run-time type; for mypy spell it out as a module-level alias::

        Weights = Annotated[dict[str, Any], Meta(extra_json_schema={...})]
    """
    return Annotated[kind, msgspec.Meta(extra_json_schema=schema)]


class Text:
    """A ``text/plain`` response (``responses={200: Text}``), e.g. ``/metrics``."""


class Files:
    """A response in one of several media types chosen by a query parameter, e.g. a
    report (HTML or JSON) or an export (CSV, Parquet or JSON): ``responses={200:
    Files("text/html", "application/json")}``."""

    def __init__(self, *media: str) -> None:
        self.media = media


BODY: web.RequestKey[object] = web.RequestKey("mlwarden_body", object)
QUERY: web.RequestKey[object] = web.RequestKey("mlwarden_query", object)


def body_of(request: web.Request, kind: type[T]) -> T:
    """The request body the route declared as ``kind``, already validated."""
    value = request.get(BODY)
    if not isinstance(value, kind):
        raise RuntimeError(f"{request.method} {request.path} declares no body {kind.__name__}")
    return value


def query_of(request: web.Request, kind: type[T]) -> T:
    """The query parameters the route declared as ``kind``, already validated."""
    value = request.get(QUERY)
    if not isinstance(value, kind):
        raise RuntimeError(f"{request.method} {request.path} declares no query {kind.__name__}")
    return value


def body_is_required(kind: type[msgspec.Struct]) -> bool:
    """Whether ``kind`` has a field without a default (else an empty body is ``kind()``)."""
    return any(f.required for f in msgspec.structs.fields(kind))


async def parse_body(request: web.Request, kind: type[T]) -> T:
    """The request body converted to ``kind``; InvalidInput (400) names the field."""
    raw = await request.read()
    if not raw.strip() and not body_is_required(kind):  # type: ignore[arg-type]
        return msgspec.convert({}, kind)
    data = decode_json(raw)  # depth checked before parsing; 400 on bad JSON
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput(_message(str(exc), "request body", kind), code="invalid_input") from None


def parse_query(request: web.Request, kind: type[T]) -> T:
    """The query string converted to ``kind``; InvalidInput (400) names the parameter."""
    try:
        return msgspec.convert(dict(request.query), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(_message(str(exc), "query", kind), code="invalid_input") from None


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")


def _message(text: str, where: str, kind: type) -> str:
    """msgspec's error as ``field: what was expected``, e.g. ``limit: expected int, got
    str``, ``matchers[0].name: required``, ``state: expected one of firing, resolved,
    all, got 'open'``; an unknown top-level field lists the fields there are."""
    match = _AT.match(text)
    what, path = (match["what"], match["path"] or "") if match else (text, "")
    path = path.lstrip(".")
    fields = {f.encode_name: f for f in msgspec.structs.fields(kind)}
    if found := _MISSING.match(what):
        path, what = _join(path, found["name"]), "required"
    elif found := _UNKNOWN.match(what):
        what = f"unknown field {found['name']!r}"
        if not path:
            what += f" (expected: {', '.join(fields)})"
    elif (found := _ENUM.match(what)) and path in fields:
        choices = [str(c) for c in _literals(fields[path].type)]
        what = f"expected one of {', '.join(choices)}, got {found['value']}"
    else:
        what = what.replace("`", "")
        what = what[:1].lower() + what[1:]
    if where == "query":
        label = f"query parameter {path!r}" if path else "query"
    else:
        label = path or where
    return f"{label}: {what}"


def _literals(kind: Any) -> list[Any]:
    """The values of the Literal in ``kind`` (also inside ``Literal[...] | None``)."""
    if typing.get_origin(kind) is typing.Literal:
        return list(typing.get_args(kind))
    return [v for arg in typing.get_args(kind) for v in _literals(arg)]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def schema_of(kinds: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas of ``kinds`` (keyed as given) and the components they refer to."""
    keys = list(kinds)
    named: dict[str, type] = {}
    for kind in kinds.values():
        if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
            other = named.setdefault(kind.__name__, kind)
            if other is not kind:
                raise RuntimeError(
                    f"two API Structs are named {kind.__name__!r} ({other.__module__} and "
                    f"{kind.__module__}): OpenAPI schema names must be unique"
                )
    schemas, components = msgspec.json.schema_components(
        [kinds[k] for k in keys], ref_template="#/components/schemas/{name}"
    )
    return dict(zip(keys, schemas, strict=True)), components


def query_parameters(kind: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """OpenAPI parameter objects (``in: query``) for the fields of ``kind``."""
    params = []
    for field in msgspec.structs.fields(kind):
        schema = msgspec.json.schema(field.type)
        schema.pop("$defs", None)
        if field.default not in (msgspec.NODEFAULT, None, msgspec.UNSET):
            schema["default"] = field.default
        params.append(
            {
                "name": field.encode_name,
                "in": "query",
                "required": field.required,
                "schema": schema,
            }
        )
    return params
