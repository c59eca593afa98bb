"""An uploaded reference body: read, checked against the model's features, profiled.

``PUT /api/models/{name}/reference`` sends a model's reference data as an Arrow IPC
stream, a Parquet file or a CSV file. Before anything is stored, the whole table is
checked (``check_reference``), column-wise with pyarrow and numpy:

- the body is readable and has rows;
- the model's features are the ones in force (``models.features``, else those of the
  reference in force; a model with neither takes the body's columns): none may be
  missing, and no column may be other than a feature, the prediction, the label or,
  for a classifier, its scores (``models.probability_column``,
  ``models.probabilities_prefix<class>``);
- each column's type: a numeric feature is numbers, a categorical one strings or
  integers (as on the ingest path), a feature of a model without a schema numbers or
  strings; the prediction and label a category (classifier) or numbers (regressor);
- a classifier's scores as the reference file's are checked for estimation
  (daemon/profiles/probabilities.py): every score of a labelled row in [0, 1] (NaN and
  infinities are not), each multiclass row summing to 1.

NaN, infinities and nulls in a feature are data, as in a reference file and on the
ingest path (counted in the profile). Each problem raises ``BatchRejected`` (400)
naming the column and, for a value, its row (0-based, the first data row is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import ConfigError
from ..core.config import ModelConfig, MonitoringConfig
from ..profiles.layout import Layout
from ..profiles.probabilities import check_matrix, check_probability
from ..profiles.reference import Reference, build_reference
from .arrow import ARROW_STREAM, PARQUET, TableBody, kind_of, read_table
from .validate import BatchRejected

__all__ = [
    "CSV",
    "UPLOAD_TYPES",
    "Schema",
    "build_uploaded",
    "check_reference",
    "read_reference_body",
]

CSV = "text/csv"
#: The media types of a reference body.
UPLOAD_TYPES = (ARROW_STREAM, PARQUET, CSV)

_NUMBER = {"integer", "floating", "null"}
_CATEGORY = {"string", "integer", "null"}


@dataclass(frozen=True)
class Schema:
    """The features an uploaded reference must have: the ones in force for the model.

    ``features`` empty: the model has no schema yet, the body's columns make it.
    """

    features: tuple[str, ...] = ()
    categorical: frozenset[str] = frozenset()

    @classmethod
    def in_force(cls, model: ModelConfig, layout: Layout | None) -> Schema:
        """The schema of ``layout`` (the one ingest checks batches against), else none."""
        if layout is None:
            return cls(tuple(model.features), frozenset(model.categorical))
        categorical = {c for c in layout.categorical if c != layout.prediction}
        return cls(layout.features, frozenset(categorical | set(model.categorical)))


def read_reference_body(data: bytes, media_type: str) -> pa.Table:
    """The table of a body; BatchRejected (400) when it is empty or not readable."""
    if media_type != CSV:
        return read_table(TableBody(data, media_type))
    if not data:
        raise BatchRejected("empty_body", "request body is empty; expected a CSV file")
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        message = f"request body is not a readable CSV file: {exc}"
        raise BatchRejected("malformed", message) from None


def _scores(table: pa.Table, model: ModelConfig) -> list[str]:
    if model.task != "classification":
        return []
    prefix = model.probabilities_prefix
    return [n for n in table.column_names if n == model.probability_column or n.startswith(prefix)]


def check_reference(table: pa.Table, model: ModelConfig, schema: Schema) -> tuple[str, ...]:
    """The features of ``table`` once it may be the model's reference (see the module doc)."""
    names = table.column_names
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise BatchRejected("malformed", f"column {twice!r} appears twice in the table")
    if table.num_rows == 0:
        raise BatchRejected("empty_reference", "the reference has no rows")
    special = {model.prediction_column, model.label_column, *_scores(table, model)}
    features = schema.features or tuple(n for n in names if n not in special)
    unknown = [n for n in names if n not in special and n not in features]
    if unknown:
        raise BatchRejected(
            "unknown_feature",
            f"column {unknown[0]!r}: unknown column (the model's features: "
            f"{', '.join(features)}; besides them: {model.prediction_column!r}, "
            f"{model.label_column!r} and a classifier's scores)",
        )
    missing = [f for f in features if f not in names]
    if missing:
        raise BatchRejected("missing_feature", f"column {missing[0]!r}: missing feature")
    if not features:
        raise BatchRejected("missing_feature", "the reference has no feature column")
    for name in features:
        if name in schema.categorical:
            _check_kind(table, name, _CATEGORY, "a string or an integer (a categorical feature)")
        elif schema.features:
            _check_kind(table, name, _NUMBER, "a number (a numeric feature)")
        else:
            _check_kind(table, name, _NUMBER | {"string", "bool"}, "a number or a string")
    classifier = model.task == "classification"
    for name in (model.prediction_column, model.label_column):
        if name in names:
            if classifier:
                _check_kind(table, name, _CATEGORY | {"bool"}, "a class (string or integer)")
            else:
                _check_kind(table, name, _NUMBER, "a number")
    _check_scores(table, model)
    return features


def _check_kind(table: pa.Table, name: str, accepted: set[str], expected: str) -> None:
    column = table.column(name)
    if kind_of(column.type) in accepted:
        return
    where = f"column {name!r}"
    if kind_of(column.type) == "string" and "floating" in accepted:  # a CSV's stray text
        row = _first_non_number(column)
        if row is not None:
            where = f"row {row}, {where}"
            raise BatchRejected(
                "wrong_type", f"{where}: expected {expected}, got {column[row].as_py()!r}"
            )
    raise BatchRejected("wrong_type", f"{where}: expected {expected}, got {column.type}")


def _first_non_number(column: pa.ChunkedArray) -> int | None:
    import pandas as pd

    values = column.to_pandas()
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero((numbers.isna() & values.notna()).to_numpy())
    return int(bad[0]) if len(bad) else None


def _check_scores(table: pa.Table, model: ModelConfig) -> None:
    """A classifier's scores, checked on its labelled rows as estimation checks them."""
    scores = _scores(table, model)
    if not scores:
        return
    for name in scores:
        _check_kind(table, name, {"integer", "floating"}, "probabilities (numbers in [0, 1])")
    rows = np.arange(table.num_rows)
    if model.label_column in table.column_names:
        labelled = pc.is_valid(table.column(model.label_column))
        rows = np.flatnonzero(labelled.to_numpy(zero_copy_only=False))

    def error(reason: str, ids: np.ndarray, i: int, column: str, expected: str) -> Exception:
        return BatchRejected("bad_score", f"row {int(ids[i])}, column {column!r}: {expected}")

    def values(name: str) -> np.ndarray:
        column = table.column(name).cast(pa.float64())
        array = column.to_numpy(zero_copy_only=False)
        return np.asarray(array, dtype=np.float64)[rows]

    prefix = model.probabilities_prefix
    multi = [n for n in scores if n.startswith(prefix)]
    if multi:
        classes = tuple(n[len(prefix) :] for n in multi)
        matrix = np.column_stack([values(n) for n in multi])
        check_matrix(matrix, classes, rows, error, f"{prefix}*", prefix)
    elif model.probability_column in scores:
        check_probability(values(model.probability_column), rows, model.probability_column, error)


def _as_in_force(table: pa.Table, features: tuple[str, ...], schema: Schema) -> pa.Table:
    """Columns whose type alone would give a feature another kind than the one in force:
    integers or nulls of a categorical feature become strings (as ingest reads them),
    nulls of any other feature numbers."""
    for name in features:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        kind = kind_of(column.type)
        if name in schema.categorical and kind in ("integer", "null"):
            column = column.cast(pa.string())
        elif kind == "null":
            column = column.cast(pa.float64())
        else:
            continue
        table = table.set_column(table.column_names.index(name), name, column)
    return table


def build_uploaded(
    data: bytes,
    media_type: str,
    model: ModelConfig,
    monitoring: MonitoringConfig,
    schema: Schema,
    fingerprint: str,
) -> Reference:
    """Read, check and profile an uploaded reference (blocking: call it in a thread)."""
    table = read_reference_body(data, media_type)
    features = check_reference(table, model, schema)
    keep = [*features, model.prediction_column, model.label_column, *_scores(table, model)]
    table = table.select([n for n in dict.fromkeys(keep) if n in table.column_names])
    table = _as_in_force(table, features, schema)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    try:
        return build_reference(frame, model, monitoring, fingerprint)
    except (ConfigError, ValueError, TypeError) as exc:  # checked above; kept as a 400
        raise BatchRejected("malformed", f"the reference cannot be profiled: {exc}") from None
