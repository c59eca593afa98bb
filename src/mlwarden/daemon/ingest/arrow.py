"""Arrow and Parquet ingest bodies: one table per batch, checked and typed column-wise.

A bulk sender (``mlwarden.client``, ``mlwarden backfill``) sends a batch as an Arrow
IPC stream (``application/vnd.apache.arrow.stream``) or a Parquet file
(``application/vnd.apache.parquet``): one column per field (``id``, ``ts``,
``version``, ``prediction``, ``latency_ms``, ``error``) and one per feature, named as
the feature. The schema is checked first, against the model's features, in one
function (``check_schema``: unknown and missing columns, each column's type); then the
values, column by column with pyarrow.compute and numpy (nulls where none may be,
empty or duplicate ids, times, negative latencies): no Python per value. The first
problem raises ``BatchRejected`` naming the column and, for a value, its row and id,
as the JSON forms do; nothing is stored.

NaN, infinities and nulls in a feature are data (counted in the profile), as in the
JSON forms; a categorical value outside the reference is counted as unseen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..profiles.columns import Columns
from ..profiles.layout import NULL, UNSEEN, Layout
from .arrow_columns import first_row, float_column, row_error
from .arrow_scores import SCORE_ROLES, score_roles, table_scores
from .batches import LabelBatch, PredictionBatch, check_size
from .validate import MAX_FUTURE_SECONDS, BatchRejected, iso

__all__ = [
    "ARROW_STREAM",
    "PARQUET",
    "TableBody",
    "check_schema",
    "kind_of",
    "read_table",
    "table_labels",
    "table_predictions",
]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class TableBody:
    """A raw Arrow IPC stream or Parquet body (read where the batch is prepared)."""

    data: bytes
    media_type: str = ARROW_STREAM


#: The fields of a prediction besides the features: which types each takes.
_FIELDS: Mapping[str, str] = {
    "id": "id",
    "ts": "time",
    "version": "string",
    "prediction": "prediction",
    "latency_ms": "number",
    "error": "bool",
}
_EXPECTED = {
    "id": "a string or an integer",
    "time": "unix seconds (a number) or a timestamp",
    "string": "a string",
    "number": "a number (integer or floating point)",
    "bool": "a boolean",
    "category": "a string or an integer",
}


def read_table(body: TableBody) -> pa.Table:
    """The table of ``body``; BatchRejected (400) when it is empty or not readable."""
    what = "a Parquet file" if body.media_type == PARQUET else "an Arrow IPC stream"
    if not body.data:
        raise BatchRejected("empty_body", f"request body is empty; expected {what}")
    try:
        if body.media_type == PARQUET:
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(body.data))
        with pa.ipc.open_stream(pa.py_buffer(body.data)) as reader:
            return reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BatchRejected(
            "malformed", f"request body is not {what} (truncated or corrupt?): {exc}"
        ) from None


def kind_of(dtype: pa.DataType) -> str:
    """The kind of a column type as the checks name it (``integer``, ``string``, ...)."""
    if pa.types.is_dictionary(dtype):
        return kind_of(dtype.value_type)
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype):
        return "floating"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_null(dtype):
        return "null"
    return str(dtype)


_ACCEPTS = {
    "id": {"string", "integer"},
    "time": {"integer", "floating", "timestamp", "null"},
    "string": {"string", "null"},
    "number": {"integer", "floating", "null"},
    "bool": {"bool", "null"},
    "category": {"string", "integer", "null"},
}


def check_schema(schema: pa.Schema, layout: Layout | None, task: str) -> dict[str, str]:
    """Each column's role (a field's kind, ``number`` or ``category`` for a feature).

    The one place that says which columns a batch may have and of which types:
    BatchRejected names the first unknown, missing or mistyped column. With no
    ``layout`` (a model without a feature schema) other columns are ignored.
    """
    names = schema.names
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise BatchRejected("malformed", f"column {twice!r} appears twice in the table")
    roles: dict[str, str] = {}
    for name in names:
        if name in _FIELDS:
            role = _FIELDS[name]
            if role == "prediction":
                role = "category" if task == "classification" else "number"
            roles[name] = role
    features: tuple[str, ...] = ()
    if layout is not None:
        features = layout.features
        categorical = set(layout.categorical)
        for name in features:
            if name in names:
                roles[name] = "category" if name in categorical else "number"
    # A classifier's scores (arrow_scores.py); a feature of the same name stays a feature.
    roles.update(score_roles(schema, skip=roles))
    if layout is not None:
        unknown = [n for n in names if n not in roles]
        if unknown:
            raise BatchRejected(
                "unknown_feature",
                f"column {unknown[0]!r}: unknown column (the model's features: "
                f"{', '.join(sorted(features))}; fields: {', '.join(_FIELDS)}; scores: "
                "probability, probabilities.<class>)",
            )
        missing = [n for n in features if n not in names]
        if missing:
            raise BatchRejected("missing_feature", f"column {missing[0]!r}: missing feature")
    if "id" not in names:
        raise BatchRejected("missing_field", "column 'id': missing (every prediction has an id)")
    for name, role in roles.items():
        if role in SCORE_ROLES:  # typed by score_roles
            continue
        kind = kind_of(schema.field(name).type)
        if kind not in _ACCEPTS[role]:
            raise BatchRejected(
                "wrong_type",
                f"column {name!r}: expected {_EXPECTED[role]}, got {schema.field(name).type}",
            )
    return roles


# -- values -------------------------------------------------------------------------------


def _ids(table: pa.Table) -> np.ndarray:
    column = table.column("id")
    if column.null_count:
        raise row_error(
            "wrong_type", column, first_row(column.is_null()), "id", "expected an id, got null"
        )
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if kind_of(column.type) == "integer":
        column = column.cast(pa.string())
    empty = pc.equal(pc.utf8_length(column), 0)
    if pc.any(empty).as_py():
        raise row_error("wrong_type", column, first_row(empty), "id", "expected a non-empty id")
    if pc.count_distinct(column).as_py() != len(column):
        counts = pc.value_counts(column)
        twice = counts.field("values").filter(pc.greater(counts.field("counts"), 1))[0]
        rows = np.flatnonzero(pc.equal(column, twice).to_numpy(zero_copy_only=False))
        raise row_error(
            "duplicate_id",
            column,
            int(rows[1]),
            "id",
            f"duplicate id within the batch (also record {int(rows[0])})",
        )
    return column.to_numpy(zero_copy_only=False).astype(object, copy=False)


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A categorical column as strings (integers written in decimal, as JSON's are)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    return column


def _codes(column: pa.ChunkedArray, categories: tuple[str, ...]) -> np.ndarray:
    """Layout codes of a categorical column: category index, UNSEEN or NULL."""
    strings = _strings(column)
    index = pc.index_in(strings, value_set=pa.array(categories, pa.string()))
    codes = pc.fill_null(index, UNSEEN).to_numpy(zero_copy_only=False).astype(np.int32)
    if strings.null_count:
        codes[strings.is_null().to_numpy(zero_copy_only=False)] = NULL
    return codes


def _times(
    table: pa.Table, ids: pa.ChunkedArray, n: int, *, now: float, oldest: float
) -> np.ndarray:
    if "ts" not in table.column_names:
        return np.full(n, now)
    column = table.column("ts")
    if pa.types.is_timestamp(column.type):
        unit = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[column.type.unit]
        ts = column.cast(pa.int64()).cast(pa.float64()).to_numpy(zero_copy_only=False) / unit
    else:
        ts, _ = float_column(column)
    if column.null_count:  # a null time means now, as in the JSON forms
        ts[column.is_null().to_numpy(zero_copy_only=False)] = now
    bad = np.flatnonzero(~np.isfinite(ts))
    if len(bad):
        raise row_error("bad_timestamp", ids, bad[0], "ts", "expected a finite unix time")
    late = np.flatnonzero(ts < oldest)
    if len(late):
        raise row_error(
            "bad_timestamp", ids, late[0], "ts", f"older than the retention ({iso(oldest)})"
        )
    future = np.flatnonzero(ts > now + MAX_FUTURE_SECONDS)
    if len(future):
        raise row_error("bad_timestamp", ids, future[0], "ts", f"in the future (now is {iso(now)})")
    return ts


def table_predictions(
    table: pa.Table,
    layout: Layout | None,
    *,
    task: str,
    now: float,
    oldest: float,
    max_batch: int,
) -> PredictionBatch:
    """Validate an Arrow table of predictions into a PredictionBatch (see the module doc)."""
    n = table.num_rows
    check_size(n, max_batch, "records")
    roles = check_schema(table.schema, layout, task)
    id_array = _ids(table)
    ids = table.column("id")
    names = table.column_names
    ts = _times(table, ids, n, now=now, oldest=oldest)
    if "version" in names:
        versions = _strings(table.column("version")).fill_null("")
        version_array = versions.to_numpy(zero_copy_only=False).astype(object, copy=False)
    else:
        version_array = np.full(n, "", dtype=object)
    if "error" in names:
        error = table.column("error").fill_null(False).to_numpy(zero_copy_only=False)
        error = np.asarray(error, dtype=bool)
    else:
        error = np.zeros(n, dtype=bool)
    latency = np.full(n, np.nan)
    if "latency_ms" in names:
        latency = float_column(table.column("latency_ms"))[0] / 1000.0
        bad = np.flatnonzero(latency < 0)
        if len(bad):
            raise row_error("wrong_type", ids, bad[0], "latency_ms", "expected a number >= 0")
    prediction, missing = _prediction(table, n, roles, error, task)
    if len(missing):
        raise row_error(
            "missing_field", ids, missing[0], "prediction", "required unless error is true"
        )
    columns = None
    if layout is not None:
        columns = _feature_columns(table, layout, n)
    scored = {name: role for name, role in roles.items() if role in SCORE_ROLES}
    scores = table_scores(table, scored, ids, task, row_error)
    return PredictionBatch(id_array, ts, version_array, prediction, latency, error, columns, scores)


def _prediction(
    table: pa.Table, n: int, roles: Mapping[str, str], error: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """The prediction column and the rows missing one (no error flagged)."""
    if "prediction" not in table.column_names:
        missing = np.flatnonzero(~error)
        if roles.get("prediction") == "category" or task == "classification":
            return np.full(n, None, dtype=object), missing
        return np.full(n, np.nan), missing
    column = table.column("prediction")
    if roles["prediction"] == "category":
        strings = _strings(column)
        nulls = strings.is_null().to_numpy(zero_copy_only=False)
        values = strings.to_numpy(zero_copy_only=False).astype(object, copy=False)
    else:
        values, null_mask = float_column(column)
        nulls = null_mask if null_mask is not None else np.zeros(n, dtype=bool)
    return values, np.flatnonzero(nulls & ~error)


def _feature_columns(table: pa.Table, layout: Layout, n: int) -> Columns:
    numeric = np.empty((n, len(layout.numeric)), dtype=np.float64)
    nulls: np.ndarray | None = None
    for j, name in enumerate(layout.numeric):
        source = "prediction" if name == layout.prediction else name
        if source not in table.column_names:  # a prediction not sent: null
            numeric[:, j] = np.nan
            nulls = np.zeros(numeric.shape, dtype=bool) if nulls is None else nulls
            nulls[:, j] = True
            continue
        values, null_mask = float_column(table.column(source))
        numeric[:, j] = values
        if null_mask is not None:
            nulls = np.zeros(numeric.shape, dtype=bool) if nulls is None else nulls
            nulls[:, j] = null_mask
    codes = np.empty((n, len(layout.categorical)), dtype=np.int32)
    for j, name in enumerate(layout.categorical):
        source = "prediction" if name == layout.prediction else name
        categories = layout.categories[j] if layout.categories else ()
        if source not in table.column_names:
            codes[:, j] = NULL
            continue
        codes[:, j] = _codes(table.column(source), categories)
    return Columns(numeric, codes, nulls)


def table_labels(table: pa.Table, *, task: str, max_batch: int) -> LabelBatch:
    """Validate an Arrow table of labels (columns ``id`` and ``label``)."""
    names = table.column_names
    for name in names:
        if name not in ("id", "label"):
            raise BatchRejected(
                "unknown_field", f"column {name!r}: unknown column (expected: id, label)"
            )
    for name in ("id", "label"):
        if name not in names:
            raise BatchRejected("missing_field", f"column {name!r}: missing")
    role = "category" if task == "classification" else "number"
    for name, want in (("id", "id"), ("label", role)):
        dtype = table.schema.field(name).type
        if kind_of(dtype) not in _ACCEPTS[want]:
            raise BatchRejected(
                "wrong_type", f"column {name!r}: expected {_EXPECTED[want]}, got {dtype}"
            )
    check_size(table.num_rows, max_batch, "labels")
    id_array = _ids(table)
    ids = table.column("id")
    column = table.column("label")
    if column.null_count:
        raise row_error(
            "wrong_type", ids, first_row(column.is_null()), "label", "expected a label, got null"
        )
    if task == "classification":
        labels = _strings(column).to_numpy(zero_copy_only=False).astype(object, copy=False)
    else:
        labels = float_column(column)[0]
        bad = np.flatnonzero(~np.isfinite(labels))
        if len(bad):
            raise row_error("wrong_type", ids, bad[0], "label", "expected a finite number")
    return LabelBatch(id_array, labels)
