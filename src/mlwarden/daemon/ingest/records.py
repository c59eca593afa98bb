"""The fast path of record bodies: a decode typed by the model's layout (msgspec).

Decoded by orjson, a record body (``{"records": [{"id", "features": {...}, ...}]}``) is
a dict per record and a Python object per value; gathering a numeric block from it then
costs a lookup by name per value and numpy's dtype discovery. Here msgspec decodes the
body into structs made once per layout: each numeric feature is a ``float | None``
field, so a JSON boolean, string or nested value in it fails the decode, and the values
are gathered by position into a float64 block with no type check. The other fields and
the categorical features are JSON scalars, checked value by value later as usual. The
result is the columns ``batches._records_to_columns`` gathers, handed on as a columnar
payload (the same validation, the same messages: records are named by index and id in
both forms).

Whatever this decode does not take returns None, and the body goes the plain way
(decode.decode_json, then parse_predictions, which words the error): a field or
feature outside the layout or missing, a value of another JSON type, ``NaN`` literals,
numbers beyond float64, an empty batch, and integers beyond 64 bits outside the numeric
features (orjson makes those floats, msgspec keeps them ints). tests/daemon/
tests/daemon/ingest/test_decode.py runs bodies through both ways and requires the same batch or the
same refusal.
"""

from __future__ import annotations

import functools
import operator
import types
from typing import Any

import msgspec
import numpy as np

from ..profiles.layout import Layout
from .validate import number_block

__all__ = ["decode_records"]

_Scalar = str | int | float | bool | None
#: The optional fields of a record (``id`` and ``features`` are required).
_OPTIONAL = ("ts", "version", "prediction", "latency_ms", "error")
_LOWEST, _BEYOND = -(2**63), 2**64  # the integers orjson decodes as integers


def decode_records(body: bytes, layout: Layout) -> dict[str, Any] | None:
    """A record body as ``{"columns": {...}}`` with a typed numeric block, or None."""
    names = layout.features
    numeric = frozenset(layout.numeric)
    try:
        records = _decoder(names, numeric).decode(body).records
    except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
        return None
    if not records:
        return None
    ids = [record.id for record in records]
    out: dict[str, Any] = {"id": ids}
    for key in _OPTIONAL:
        values = list(map(operator.attrgetter(key), records))
        if any(value is not msgspec.UNSET for value in values):
            out[key] = [None if value is msgspec.UNSET else value for value in values]
    rows = list(map(msgspec.structs.astuple, map(operator.attrgetter("features"), records)))
    if all(name in numeric for name in names):
        # Every value is a float or None: without a null, no dtype discovery is needed.
        block = np.array(rows, dtype=np.float64) if b"null" not in body else None
        if block is None:
            block = number_block(rows, booleans=False)
        if block is not None:
            out["features"] = {name: block[:, j] for j, name in enumerate(names)}
            return None if _has_big_int(out) else {"columns": out}
    columns = [list(column) for column in zip(*rows, strict=True)]
    out["features"] = dict(zip(names, columns, strict=True))
    return None if _has_big_int(out) else {"columns": out}


def _has_big_int(out: dict[str, Any]) -> bool:
    """True if a list holds an integer beyond 64 bits (the plain way decodes a float)."""
    lists = [v for v in (*out.values(), *out["features"].values()) if isinstance(v, list)]
    for values in lists:
        if int in set(map(type, values)) and any(
            type(v) is int and not _LOWEST <= v < _BEYOND for v in values
        ):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _decoder(names: tuple[str, ...], numeric: frozenset[str]) -> msgspec.json.Decoder:
    """A decoder of record bodies for features ``names`` (those in ``numeric`` as floats)."""
    kinds = [float | None if name in numeric else _Scalar for name in names]
    fields = [(f"f{j}", kind) for j, kind in enumerate(kinds)]
    features = msgspec.defstruct(
        "Features",
        fields,
        rename={f"f{j}": name for j, name in enumerate(names)},
        forbid_unknown_fields=True,
        gc=False,
    )
    record = msgspec.defstruct(
        "Record",
        [("id", _Scalar), ("features", features)]
        + [(key, _Scalar, msgspec.UNSET) for key in _OPTIONAL],
        forbid_unknown_fields=True,
        gc=False,
    )
    # list[record] spelt out: ``record`` is a class made at run time, not a type to mypy.
    records = types.GenericAlias(list, (record,))
    body = msgspec.defstruct("Body", [("records", records)], forbid_unknown_fields=True)
    return msgspec.json.Decoder(body)
