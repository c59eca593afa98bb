"""Parsing and validation of ingest batches (predictions and labels), record or columnar.

A batch is validated as a whole before anything is stored: the first problem found
raises ``BatchRejected`` (an ``InvalidInput``, HTTP 400) whose message names the record
(index and id) and the field, and whose ``reason`` labels
``mlwarden_ingest_rejected_total``. NaN, ``Infinity`` and ``null`` feature values are
data: they are counted in the profile, never rejected.

Work is column-wise: each feature column is checked with a handful of C-level passes
(``map(type, ...)``, ``np.asarray``) rather than a Python loop per value.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInput
from .profiles import Columns, Layout

__all__ = ["BatchRejected", "LabelBatch", "PredictionBatch", "parse_labels", "parse_predictions"]

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


@dataclass
class PredictionBatch:
    """A validated batch of predictions, column-wise."""

    ids: np.ndarray  # str (object)
    ts: np.ndarray  # float64, unix seconds
    versions: np.ndarray  # str (object); "" where the sender gave none
    prediction: np.ndarray  # float64 (regression) or str objects (classification)
    latency: np.ndarray  # float64 seconds, NaN when not reported
    error: np.ndarray  # bool
    columns: Columns | None  # None when the model has no feature schema

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class LabelBatch:
    ids: np.ndarray
    labels: np.ndarray  # float64 or str objects

    def __len__(self) -> int:
        return len(self.ids)


def parse_predictions(
    payload: Any,
    layout: Layout | None,
    *,
    task: str,
    now: float,
    oldest: float,
    max_batch: int,
    booleans: bool = True,
) -> PredictionBatch:
    """Validate ``payload`` (record or columnar form) into a PredictionBatch.

    Feature columns may come as float64 arrays (daemon/batch_decode.py) or as lists of
    decoded JSON values. ``booleans=False`` says that the body held no JSON boolean
    (``batch_decode.may_hold_booleans``): numbers are then told from the rest by
    numpy's dtype discovery alone, without a type check of every value.
    """
    if not isinstance(payload, dict) or ("records" in payload) == ("columns" in payload):
        raise BatchRejected(
            "malformed", 'expected a JSON object with either "records": [...] or "columns": {...}'
        )
    if "records" in payload:
        fields = _records_to_columns(payload["records"], layout, max_batch, booleans)
    else:
        fields = _columnar(payload["columns"], layout, max_batch)
    ids, n = fields["id"], len(fields["id"])
    id_array = _ids(ids, "id")
    ts = _timestamps(fields.get("ts"), n, ids, now=now, oldest=oldest)
    versions = _strings(fields.get("version"), n, ids, "version")
    error = _booleans(fields.get("error"), n, ids, "error")
    latency = _numbers(fields.get("latency_ms"), n, ids, "latency_ms", nullable=True) / 1000.0
    bad = np.flatnonzero(latency < 0)
    if len(bad):
        raise _at("wrong_type", ids, bad[0], "latency_ms", "expected a number >= 0")
    prediction = _predictions(fields["prediction"], ids, error, task)
    columns = None
    if layout is not None:
        features = dict(fields["features"])
        if layout.prediction:  # the prediction is profiled like a feature
            features[layout.prediction] = (
                prediction if prediction.dtype == np.float64 else prediction.tolist()
            )
        columns = _feature_columns(features, layout, ids, n, booleans)
    return PredictionBatch(id_array, ts, versions, prediction, latency, error, columns)


def parse_labels(payload: Any, *, task: str, max_batch: int) -> LabelBatch:
    if not isinstance(payload, dict) or not isinstance(payload.get("labels"), list):
        raise BatchRejected(
            "malformed", 'expected a JSON object {"labels": [{"id", "label"}, ...]}'
        )
    records = payload["labels"]
    _check_size(len(records), max_batch, "labels")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record or "label" not in record:
            raise BatchRejected(
                "malformed", f'labels[{i}]: expected an object with "id" and "label"'
            )
    ids = [r["id"] for r in records]
    id_array = _ids(ids, "labels")
    raw = [r["label"] for r in records]
    if task == "classification":
        labels = _categories(raw, ids, "label", nullable=False)
    else:
        labels = _numbers(raw, len(raw), ids, "label", nullable=False)
        bad = np.flatnonzero(~np.isfinite(labels))
        if len(bad):
            raise _at("wrong_type", ids, bad[0], "label", "expected a finite number")
    return LabelBatch(id_array, labels)


# -- structure ---------------------------------------------------------------------------


def _check_size(n: int, max_batch: int, what: str) -> None:
    if n == 0:
        raise BatchRejected("empty_batch", f"the batch has no {what}")
    if n > max_batch:
        raise BatchRejected(
            "batch_too_large",
            f"the batch has {n} {what}; at most {max_batch} per request (ingest.max_batch)",
            status=413,
        )


def _records_to_columns(
    records: Any, layout: Layout | None, max_batch: int, booleans: bool
) -> dict[str, Any]:
    if not isinstance(records, list):
        raise BatchRejected("malformed", '"records" must be an array of objects')
    _check_size(len(records), max_batch, "records")
    if set(map(type, records)) != {dict}:
        i = next(i for i, r in enumerate(records) if not isinstance(r, dict))
        raise BatchRejected("malformed", f"records[{i}]: expected an object")
    # Every check below is on the distinct field orders (senders use one or a few), or a
    # C-level map over the records; a Python loop runs only to name a bad record.
    orders = set(map(tuple, records))
    present = set().union(*orders)
    allowed = {"id", "ts", "version", "features", "prediction", "latency_ms", "error"}
    if present - allowed:
        i = next(i for i, r in enumerate(records) if set(r) - allowed)
        raise BatchRejected(
            "unknown_field",
            f"records[{i}]: unknown field {sorted(set(records[i]) - allowed)[0]!r} "
            f"(expected: {', '.join(sorted(allowed))})",
        )
    for key in ("id", "features"):
        if any(key not in order for order in orders):
            i = next(i for i, r in enumerate(records) if key not in r)
            raise BatchRejected("missing_field", f"records[{i}]: missing {key!r}")
    ids = list(map(operator.itemgetter("id"), records))
    out: dict[str, Any] = {"id": ids}
    for key in ("ts", "version", "latency_ms", "error", "prediction"):
        if key in present:
            out[key] = [r.get(key) for r in records]
    out.setdefault("prediction", [None] * len(records))
    features = list(map(operator.itemgetter("features"), records))
    if set(map(type, features)) != {dict}:
        i = next(i for i, f in enumerate(features) if not isinstance(f, dict))
        raise _at("malformed", ids, i, "features", "expected an object")
    if layout is None:
        out["features"] = None
        return out
    names = layout.features
    rows = _feature_rows(features, names)
    if rows is None:
        expected = set(names)
        i = next(i for i, f in enumerate(features) if f.keys() != expected)
        _feature_set_problem(set(features[i]), expected, ids, i)
    numeric = set(layout.numeric)
    block = _number_rows(rows, booleans) if all(n in numeric for n in names) else None
    if block is not None:  # typed columns: views of one (n, F) block
        out["features"] = {name: block[:, j] for j, name in enumerate(names)}
    else:
        out["features"] = dict(zip(names, zip(*rows, strict=True), strict=True))
    return out


def _feature_rows(features: list[dict[str, Any]], names: tuple[str, ...]) -> list[Any] | None:
    """Each record's feature values in ``names`` order, or None if a record's set differs."""
    if not names:
        return None if any(features) else [() for _ in features]
    if set(map(len, features)) != {len(names)}:
        return None
    try:  # with every record of len(names) keys, finding every name proves the set
        rows = list(map(operator.itemgetter(*names), features))
    except KeyError:
        return None
    return rows if len(names) > 1 else [(value,) for value in rows]


def _number_rows(rows: Sequence[Sequence[Any]], booleans: bool) -> np.ndarray | None:
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


def _columnar(columns: Any, layout: Layout | None, max_batch: int) -> dict[str, Any]:
    if not isinstance(columns, dict):
        raise BatchRejected("malformed", '"columns" must be an object of arrays')
    allowed = {"id", "ts", "version", "features", "prediction", "latency_ms", "error"}
    extra = set(columns) - allowed
    if extra:
        raise BatchRejected(
            "unknown_field",
            f"columns: unknown field {sorted(extra)[0]!r} (expected: {', '.join(sorted(allowed))})",
        )
    for key in ("id", "features"):
        if key not in columns:
            raise BatchRejected("missing_field", f"columns: missing {key!r}")
    ids = columns["id"]
    if not isinstance(ids, list):
        raise BatchRejected("malformed", "columns.id: expected an array")
    n = len(ids)
    _check_size(n, max_batch, "records")
    out: dict[str, Any] = {"id": ids}
    for key in ("ts", "version", "latency_ms", "error", "prediction"):
        if key in columns:
            value = columns[key]
            if not isinstance(value, list) or len(value) != n:
                raise BatchRejected(
                    "length_mismatch",
                    f"columns.{key}: expected an array of {n} values (as many as columns.id)",
                )
            out[key] = value
    out.setdefault("prediction", [None] * n)
    features = columns["features"]
    if not isinstance(features, dict):
        raise BatchRejected("malformed", "columns.features: expected an object of arrays")
    if layout is None:
        out["features"] = None
        return out
    expected = set(layout.features)
    if set(features) != expected:
        unknown, missing = sorted(set(features) - expected), sorted(expected - set(features))
        if unknown:
            raise BatchRejected(
                "unknown_feature",
                f"columns.features: unknown feature {unknown[0]!r} "
                f"(the model's features: {', '.join(sorted(expected))})",
            )
        raise BatchRejected("missing_feature", f"columns.features: missing feature {missing[0]!r}")
    for name, values in features.items():
        if not isinstance(values, list | np.ndarray) or len(values) != n:
            raise BatchRejected(
                "length_mismatch",
                f"columns.features.{name}: expected an array of {n} values (as many as columns.id)",
            )
    out["features"] = features
    return out


def _feature_set_problem(got: set[str], expected: set[str], ids: list[Any], i: int) -> None:
    unknown, missing = sorted(got - expected), sorted(expected - got)
    if unknown:
        raise _at(
            "unknown_feature",
            ids,
            i,
            f"features.{unknown[0]}",
            f"unknown feature (the model's features: {', '.join(sorted(expected))})",
        )
    raise _at("missing_feature", ids, i, f"features.{missing[0]}", "missing feature")


# -- columns -----------------------------------------------------------------------------


def _at(
    reason: str, ids: list[Any], i: int | np.integer, field: str, expected: str
) -> BatchRejected:
    i = int(i)
    rid = ids[i] if i < len(ids) else None
    return BatchRejected(reason, f"record {i} (id {rid!r}), field {field!r}: {expected}")


def _ids(ids: list[Any], field: str) -> np.ndarray:
    kinds = set(map(type, ids))
    if not kinds <= {str, int} or bool in kinds:
        i = next(i for i, v in enumerate(ids) if type(v) not in (str, int))
        raise _at("wrong_type", ids, i, "id", "expected a non-empty string or an integer")
    out = np.array([str(v) for v in ids] if int in kinds else ids, dtype=object)
    empty = np.flatnonzero(out == "")
    if len(empty):
        raise _at("wrong_type", ids, empty[0], "id", "expected a non-empty string or an integer")
    if len(set(out.tolist())) != len(out):  # the exact record only on the failure path
        seen: dict[str, int] = {}
        for i, rid in enumerate(out.tolist()):
            if rid in seen:
                raise _at(
                    "duplicate_id",
                    ids,
                    i,
                    "id",
                    f"duplicate id within the batch (also record {seen[rid]})",
                )
            seen[rid] = i
    return out


def _numbers(
    values: list[Any] | None, n: int, ids: list[Any], field: str, *, nullable: bool
) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    kinds = set(map(type, values))
    allowed = _NUMBER_TYPES | ({type(None)} if nullable else set())
    if not kinds <= allowed:
        i = next(i for i, v in enumerate(values) if type(v) not in allowed)
        what = "a number or null" if nullable else "a number"
        raise _at("wrong_type", ids, i, field, f"expected {what}, got {values[i]!r}")
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        i = next(i for i, v in enumerate(values) if isinstance(v, int) and abs(v) > 1e308)
        raise _at("wrong_type", ids, i, field, "number out of range") from None


def _strings(values: list[Any] | None, n: int, ids: list[Any], field: str) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=object)
    kinds = set(map(type, values))
    if not kinds <= {str, type(None)}:
        i = next(i for i, v in enumerate(values) if v is not None and not isinstance(v, str))
        raise _at("wrong_type", ids, i, field, f"expected a string, got {values[i]!r}")
    out = np.array(values, dtype=object)
    out[out == None] = ""  # noqa: E711 (element-wise)
    return out


def _booleans(values: list[Any] | None, n: int, ids: list[Any], field: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    kinds = set(map(type, values))
    if not kinds <= {bool, type(None)}:
        i = next(i for i, v in enumerate(values) if v is not None and not isinstance(v, bool))
        raise _at("wrong_type", ids, i, field, f"expected true or false, got {values[i]!r}")
    return (
        np.array([bool(v) for v in values], dtype=bool)
        if type(None) in kinds
        else np.array(values, dtype=bool)
    )


def _categories(values: Sequence[Any], ids: list[Any], field: str, *, nullable: bool) -> np.ndarray:
    kinds = set(map(type, values))
    allowed = _CATEGORY_TYPES | ({type(None)} if nullable else set())
    if not kinds <= allowed:
        i = next(i for i, v in enumerate(values) if type(v) not in allowed)
        what = "a string, an integer or null" if nullable else "a string or an integer"
        raise _at("wrong_type", ids, i, field, f"expected {what}, got {values[i]!r}")
    if kinds <= {str, type(None)}:
        return np.array(values, dtype=object)
    return np.array(
        [v if v is None or isinstance(v, str) else str(v) for v in values], dtype=object
    )


def _predictions(values: list[Any], ids: list[Any], error: np.ndarray, task: str) -> np.ndarray:
    if task == "classification":
        out = _categories(values, ids, "prediction", nullable=True)
        missing = (out == None) & ~error  # noqa: E711
    else:
        out = _numbers(values, len(values), ids, "prediction", nullable=True)
        missing = np.array([v is None for v in values]) & ~error
    bad = np.flatnonzero(missing)
    if len(bad):
        raise _at("missing_field", ids, bad[0], "prediction", "required unless error is true")
    return out


def _timestamps(
    values: list[Any] | None, n: int, ids: list[Any], *, now: float, oldest: float
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
            raise _at(
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
        raise _at("bad_timestamp", ids, bad[0], "ts", "expected a finite unix time")
    late = np.flatnonzero(ts < oldest)
    if len(late):
        raise _at("bad_timestamp", ids, late[0], "ts", f"older than the retention ({_iso(oldest)})")
    future = np.flatnonzero(ts > now + MAX_FUTURE_SECONDS)
    if len(future):
        raise _at("bad_timestamp", ids, future[0], "ts", f"in the future (now is {_iso(now)})")
    return ts


def _parse_iso(text: str, ids: list[Any], i: int) -> float:
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _at("bad_timestamp", ids, i, "ts", f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _iso(ts: float) -> str:
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
    block = _number_rows(columns, booleans)
    return None if block is None else block.T


def _feature_columns(
    features: dict[str, Sequence[Any]], layout: Layout, ids: list[Any], n: int, booleans: bool
) -> Columns:
    numeric = _numeric_block([features[name] for name in layout.numeric], booleans)
    nulls: np.ndarray | None = None
    if numeric is None:
        numeric, nulls = _numeric_by_column(features, layout, ids, n)
    codes = np.empty((n, len(layout.categorical)), dtype=np.int32)
    for j, name in enumerate(layout.categorical):
        values = _categories(features[name], ids, f"features.{name}", nullable=True)
        codes[:, j] = layout.encode(j, values)
    return Columns(numeric, codes, nulls)


def _numeric_by_column(
    features: dict[str, Sequence[Any]], layout: Layout, ids: list[Any], n: int
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
            raise _at(
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
