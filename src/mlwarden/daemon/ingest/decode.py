"""Decoding ingest bodies: typed feature columns straight from the JSON text.

A columnar body (``{"columns": {...}}``) is parsed with simdjson, and each array of a
numeric feature is read as one float64 buffer: no Python float per value, which is
what the JSON decode of a bulk sender's batch costs otherwise (about 3x the time).
Whatever the fast path does not take in full -- another shape, an array holding
something other than numbers (a null, a string, a boolean), ``NaN`` literals, a syntax
error -- is decoded by ``decode_json`` instead, and parse_predictions then validates it
value by value, with its exact messages. Both paths accept the same bodies and give the
same batch.

For a body left to ``decode_json`` (every record body), the decoder also says whether
it can hold a JSON boolean at all: without the bytes ``true`` or ``false`` anywhere in
it (a scan at memory speed), the validation of numeric values needs no per-value type
check, only numpy's dtype discovery.
"""

from __future__ import annotations

import json
import queue
import re
from typing import Any

import numpy as np
import orjson
import simdjson

from ...errors import InvalidInput
from ..profiles.layout import Layout
from .records import decode_records

__all__ = ["MAX_JSON_DEPTH", "check_json_depth", "decode_batch", "decode_json", "may_hold_booleans"]

#: The deepest nesting of arrays and objects a JSON body may have (a record body is 4
#: deep; a feature value is a scalar). Deeper bodies are refused before they are parsed:
#: the standard library's parser and encoder recurse once per level.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
#: Bytes to delete so that only brackets remain.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: ``[`` and ``{`` as +1, ``]`` and ``}`` as -1 (int8), every other byte as 0.
_STEPS = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))

#: Parsers keep their buffers (a few times the largest body they parsed): at most this
#: many are kept between calls, the calls beyond them get a parser of their own.
_KEPT_PARSERS = 2
_parsers: queue.SimpleQueue[simdjson.Parser] = queue.SimpleQueue()


def may_hold_booleans(body: bytes) -> bool:
    """False when ``body`` cannot hold a JSON ``true`` or ``false`` (not even in a string)."""
    return b"true" in body or b"false" in body


def decode_json(body: bytes, *, expect: type = dict) -> Any:
    """``body`` decoded as JSON (see read_json); blocking, so large bodies go to a thread.

    orjson decodes about three times faster than the standard library; it refuses the
    ``NaN``/``Infinity`` literals and integers beyond 64 bits, so a body it refuses is
    decoded again by ``json``, which accepts them and words the error of a real syntax
    error.
    """
    if not body:
        raise InvalidInput("request body is empty; expected a JSON object", code="empty_body")
    check_json_depth(body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"request body is not valid JSON: {exc}", code="malformed_json"
            ) from None
    if not isinstance(data, expect):
        raise InvalidInput(
            f"request body must be a JSON {'object' if expect is dict else 'array'}, "
            f"got {type(data).__name__}",
            code="wrong_type",
        )
    return data


def check_json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """InvalidInput (400) when ``body`` nests arrays and objects deeper than ``limit``.

    Checked on the bytes, before any parser sees them. A body with fewer brackets than
    the limit passes at once; otherwise the brackets outside strings are counted with
    numpy (about as fast as orjson parses), or with a regular expression that drops the
    strings when the body holds a backslash (an escaped quote).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    if b"\\" in body:
        steps = np.frombuffer(
            _STRING.sub(b"", body).translate(None, _NOT_BRACKETS).translate(_STEPS), np.int8
        )
    else:
        all_steps = np.frombuffer(body.translate(_STEPS), np.int8)
        where = np.flatnonzero(all_steps)
        quotes = np.flatnonzero(np.frombuffer(body, np.uint8) == ord('"'))
        # A bracket after an odd number of quotes is inside a string.
        steps = all_steps[where[(np.searchsorted(quotes, where) & 1) == 0]]
    if steps.size and int(np.cumsum(steps, dtype=np.int32).max()) > limit:
        raise InvalidInput(
            f"request body nests arrays and objects deeper than {limit} levels",
            code="too_deep",
        )


def decode_batch(body: bytes, layout: Layout | None) -> tuple[object, bool]:
    """The decoded predictions body, and whether its lists of values may hold booleans.

    Numeric feature columns come as float64 arrays when the fast path takes the body;
    they need no type check, and the lists it leaves are checked value by value, so its
    answer is True (scanning the body would cost more than it saves).
    """
    # '"records"' anywhere (even in a string) sends the body to the records' decoder,
    # whose types hold only scalars (a nested value fails it: decode_json then checks
    # the depth before it parses).
    if layout is not None and layout.numeric:
        if b'"records"' not in body:
            check_json_depth(body)  # a columnar body has few brackets: a count suffices
            payload = _columnar(body, frozenset(layout.numeric))
        else:
            payload = decode_records(body, layout)
        if payload is not None:
            return payload, True
    return decode_json(body), may_hold_booleans(body)


def _columnar(body: bytes, numeric: frozenset[str]) -> dict[str, Any] | None:
    """``{"columns": {...}}`` with typed numeric features, or None (not taken)."""
    # No simdjson object may outlive the call (the parser is reused): everything handed
    # out is a Python or numpy copy.
    try:
        parser = _parsers.get_nowait()
    except queue.Empty:
        parser = simdjson.Parser()
    try:
        return _read_columnar(parser, body, numeric)
    finally:
        if _parsers.qsize() < _KEPT_PARSERS:
            _parsers.put(parser)


def _read_columnar(
    parser: simdjson.Parser, body: bytes, numeric: frozenset[str]
) -> dict[str, Any] | None:
    try:
        doc = parser.parse(body)
    except (ValueError, TypeError, RuntimeError):  # not JSON it takes: decode_json words it
        return None
    try:
        if not isinstance(doc, simdjson.Object) or list(doc.keys()) != ["columns"]:
            return None
        columns = doc["columns"]
        if not isinstance(columns, simdjson.Object):
            return None
        fields = {key: columns[key] for key in columns}
        features = fields.get("features")
        if not isinstance(features, simdjson.Object):
            return None
        arrays = {name: features[name] for name in features}
        # ``as_buffer`` flattens nested arrays: typed reads only when no array is nested,
        # i.e. when every "[" of the body opens one of these arrays (a "[" inside a
        # string also turns them off: the values are then checked one by one).
        opened = sum(isinstance(v, simdjson.Array) for v in (*fields.values(), *arrays.values()))
        typed = body.count(b"[") == opened
        out = {key: _plain(value) for key, value in fields.items() if key != "features"}
        out["features"] = {
            name: _column(value, typed and name in numeric) for name, value in arrays.items()
        }
        del fields, features, arrays
        return {"columns": out}
    finally:
        del doc


def _column(value: Any, numeric: bool) -> Any:
    if numeric and isinstance(value, simdjson.Array):
        try:
            return np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64).copy()
        except (TypeError, ValueError):  # a null, string, boolean or object: checked later
            pass
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Array):
        return value.as_list()
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    return value
