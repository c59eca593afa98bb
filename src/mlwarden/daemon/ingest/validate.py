"""Validation of an ingest batch's columns: each field's values checked and typed.

Each check is column-wise: a handful of C-level passes (``map(type, ...)``, numpy's
dtype discovery) rather than a Python loop per value; the first bad value raises
``BatchRejected`` naming its record (index and id) and field. Used by daemon/ingest/batches.py,
which checks the batch's structure first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import InvalidInput
from ..profiles.columns import Columns
from ..profiles.layout import Layout

__all__ = [
    "MAX_FUTURE_SECONDS",
    "BatchRejected",
    "bool_column",
    "category_column",
    "feature_columns",
    "id_column",
    "iso",
    "number_block",
    "number_column",
    "prediction_column",
    "record_error",
    "string_column",
    "timestamp_column",
]

#: Timestamps further than this in the future are refused (clock skew allowance).
MAX_FUTURE_SECONDS = 300.0
_NUMBER_TYPES = {int, float}
_CATEGORY_TYPES = {str, int, bool}


class BatchRejected(InvalidInput):
    """A batch refused as a whole; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message, code=reason, status=status)
        self.reason = reason

    def __reduce__(self) -> tuple[type[BatchRejected], tuple[str, str, int]]:
        # Raised in ingest worker processes: pickled back with its reason and status.
        return (type(self), (self.reason, str(self), self.status))


def number_block(rows: Sequence[Sequence[Any]], booleans: bool) -> np.ndarray | None:
    """``rows`` as one float64 block if every value is an int or a float, else None.

    numpy's dtype discovery refuses strings, nulls and integers beyond 64 bits (they
    give another dtype), but it would take booleans as numbers: they are ruled out by
    the body (``booleans=False``) or by a type check of every value.
    """
    if booleans and not set(map(type, itertools.chain.from_iterable(rows))) <= _NUMBER_TYPES:
        return None
    try:
        block = np.array(rows)
    except (ValueError, OverflowError):  # ragged, or an integer numpy cannot hold
        return None
    if block.ndim != 2 or block.dtype.kind not in "fi":
        return None
    return block.astype(np.float64, copy=False)


# -- columns -----------------------------------------------------------------------------


def record_error(
    reason: str, ids: Sequence[object], i: int | np.integer, field: str, expected: str
) -> BatchRejected:
    i = int(i)
    rid = ids[i] if i < len(ids) else None
    return BatchRejected(reason, f"record {i} (id {rid!r}), field {field!r}: {expected}")


def id_column(ids: Sequence[object], field: str) -> np.ndarray:
    kinds = set(map(type, ids))
    if not kinds <= {str, int} or bool in kinds:
        i = next(i for i, v in enumerate(ids) if type(v) not in (str, int))
        raise record_error("wrong_type", ids, i, "id", "expected a non-empty string or an integer")
    out = np.array([str(v) for v in ids] if int in kinds else ids, dtype=object)
    empty = np.flatnonzero(out == "")
    if len(empty):
        raise record_error(
            "wrong_type", ids, empty[0], "id", "expected a non-empty string or an integer"
        )
    if len(set(out.tolist())) != len(out):  # the exact record only on the failure path
        seen: dict[str, int] = {}
        for i, rid in enumerate(out.tolist()):
            if rid in seen:
                raise record_error(
                    "duplicate_id",
                    ids,
                    i,
                    "id",
                    f"duplicate id within the batch (also record {seen[rid]})",
                )
            seen[rid] = i
    return out


def number_column(
    values: list[Any] | None, n: int, ids: Sequence[object], field: str, *, nullable: bool
) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    allowed = _NUMBER_TYPES | ({type(None)} if nullable else set())
    _check_types(values, allowed, ids, field, "a number or null" if nullable else "a number")
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        i = next(i for i, v in enumerate(values) if isinstance(v, int) and abs(v) > 1e308)
        raise record_error("wrong_type", ids, i, field, "number out of range") from None


def _check_types(
    values: Sequence[Any], allowed: set[type], ids: Sequence[object], field: str, expected: str
) -> set[type]:
    """The types of ``values``; BatchRejected naming the first value of another type."""
    kinds = set(map(type, values))
    if not kinds <= allowed:
        i = next(i for i, v in enumerate(values) if type(v) not in allowed)
        raise record_error("wrong_type", ids, i, field, f"expected {expected}, got {values[i]!r}")
    return kinds


def string_column(
    values: list[Any] | None, n: int, ids: Sequence[object], field: str
) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=object)
    _check_types(values, {str, type(None)}, ids, field, "a string")
    out = np.array(values, dtype=object)
    out[out == None] = ""  # noqa: E711 (element-wise)
    return out


def bool_column(values: list[Any] | None, n: int, ids: Sequence[object], field: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    kinds = _check_types(values, {bool, type(None)}, ids, field, "true or false")
    return (
        np.array([bool(v) for v in values], dtype=bool)
        if type(None) in kinds
        else np.array(values, dtype=bool)
    )


def category_column(
    values: Sequence[Any], ids: Sequence[object], field: str, *, nullable: bool
) -> np.ndarray:
    allowed = _CATEGORY_TYPES | ({type(None)} if nullable else set())
    what = "a string, an integer or null" if nullable else "a string or an integer"
    kinds = _check_types(values, allowed, ids, field, what)
    if kinds <= {str, type(None)}:
        return np.array(values, dtype=object)
    return np.array(
        [v if v is None or isinstance(v, str) else str(v) for v in values], dtype=object
    )


def prediction_column(
    values: list[Any], ids: Sequence[object], error: np.ndarray, task: str
) -> np.ndarray:
    if task == "classification":
        out = category_column(values, ids, "prediction", nullable=True)
        missing = (out == None) & ~error  # noqa: E711
    else:
        out = number_column(values, len(values), ids, "prediction", nullable=True)
        missing = np.array([v is None for v in values]) & ~error
    bad = np.flatnonzero(missing)
    if len(bad):
        raise record_error(
            "missing_field", ids, bad[0], "prediction", "required unless error is true"
        )
    return out


def timestamp_column(
    values: list[Any] | None, n: int, ids: Sequence[object], *, now: float, oldest: float
) -> np.ndarray:
    """Unix seconds from numbers or ISO 8601 strings (a missing or null ts means now)."""
    if values is None:
        return np.full(n, now)
    kinds = set(map(type, values))
    if kinds <= {int, float} and bool not in kinds:
        ts = np.asarray(values, dtype=np.float64)
    else:
        if not kinds <= {int, float, str, type(None)} or bool in kinds:
            i = next(
                i for i, v in enumerate(values) if type(v) not in (int, float, str, type(None))
            )
            raise record_error(
                "bad_timestamp",
                ids,
                i,
                "ts",
                f"expected unix seconds or ISO 8601, got {values[i]!r}",
            )
        ts = np.empty(n)
        for i, v in enumerate(values):  # the slow path: strings or nulls in the column
            if v is None:
                ts[i] = now
            elif isinstance(v, str):
                ts[i] = _parse_iso(v, ids, i)
            else:
                ts[i] = v
    bad = np.flatnonzero(~np.isfinite(ts))
    if len(bad):
        raise record_error("bad_timestamp", ids, bad[0], "ts", "expected a finite unix time")
    late = np.flatnonzero(ts < oldest)
    if len(late):
        raise record_error(
            "bad_timestamp", ids, late[0], "ts", f"older than the retention ({iso(oldest)})"
        )
    future = np.flatnonzero(ts > now + MAX_FUTURE_SECONDS)
    if len(future):
        raise record_error(
            "bad_timestamp", ids, future[0], "ts", f"in the future (now is {iso(now)})"
        )
    return ts


def _parse_iso(text: str, ids: Sequence[object], i: int) -> float:
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise record_error(
            "bad_timestamp", ids, i, "ts", f"not an ISO 8601 time: {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _numeric_block(columns: list[Sequence[Any]], booleans: bool) -> np.ndarray | None:
    """The ``(n, F)`` float64 block of numeric columns holding only numbers, or None.

    Columns that arrive typed (float64 arrays) are stacked as they are; lists of JSON
    values cost one dtype discovery (and a type pass when the body may hold booleans).
    None sends the caller to the column-by-column path, which also finds the exact
    record and field of a wrong value, and handles nulls and integers beyond float64.
    """
    if not columns:
        return None
    typed = [isinstance(c, np.ndarray) and c.dtype == np.float64 for c in columns]
    if all(typed):
        return np.stack(columns, axis=1)
    if any(typed):
        return None
    block = number_block(columns, booleans)
    return None if block is None else block.T


def feature_columns(
    features: dict[str, Sequence[Any]],
    layout: Layout,
    ids: Sequence[object],
    n: int,
    booleans: bool,
) -> Columns:
    numeric = _numeric_block([features[name] for name in layout.numeric], booleans)
    nulls: np.ndarray | None = None
    if numeric is None:
        numeric, nulls = _numeric_by_column(features, layout, ids, n)
    codes = np.empty((n, len(layout.categorical)), dtype=np.int32)
    for j, name in enumerate(layout.categorical):
        values = category_column(features[name], ids, f"features.{name}", nullable=True)
        codes[:, j] = layout.encode(j, values)
    return Columns(numeric, codes, nulls)


def _numeric_by_column(
    features: dict[str, Sequence[Any]], layout: Layout, ids: Sequence[object], n: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The numeric block column by column: nulls, huge integers, and the exact error."""
    numeric = np.empty((n, len(layout.numeric)), dtype=np.float64)
    nulls: np.ndarray | None = None
    for j, name in enumerate(layout.numeric):
        values = features[name]
        if isinstance(values, np.ndarray) and values.dtype == np.float64:
            numeric[:, j] = values  # typed by the decoder
            continue
        kinds = set(map(type, values))
        if not kinds <= {int, float, type(None)} or bool in kinds:
            i = next(i for i, v in enumerate(values) if type(v) not in (int, float, type(None)))
            raise record_error(
                "wrong_type",
                ids,
                i,
                f"features.{name}",
                f"expected a number or null, got {values[i]!r}",
            )
        try:
            numeric[:, j] = np.asarray(values, dtype=np.float64)  # None -> NaN
        except OverflowError:
            numeric[:, j] = [
                (math.inf if v > 0 else -math.inf)  # copysign would convert v: overflow
                if isinstance(v, int) and abs(v) > 1e308
                else (math.nan if v is None else v)
                for v in values
            ]
        if type(None) in kinds:
            if nulls is None:
                nulls = np.zeros(numeric.shape, dtype=bool)
            nulls[:, j] = np.fromiter((v is None for v in values), dtype=bool, count=n)
    return numeric, nulls
