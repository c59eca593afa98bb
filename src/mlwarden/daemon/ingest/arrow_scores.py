"""A classifier's scores in an Arrow or Parquet body: which columns, and their values.

The forms, each what some sender naturally writes:

- ``probability``: a numeric column, a binary model's P(positive class);
- ``probabilities.<class>``: one numeric column per class (a pandas DataFrame with
  ``frame[f"probabilities.{c}"] = proba[:, j]``, the form of the reference file);
- ``probabilities``: one struct column with a numeric field per class (what pyarrow
  makes of a DataFrame column of dicts, or of records ``{"probabilities": {...}}``), or
  a map column (class -> probability) whose rows each hold every class once.

``score_roles`` says which columns of a schema are scores (and refuses a mistyped one);
``table_scores`` gathers them into a rows x classes float64 matrix with pyarrow and
numpy, no Python per value, and checks it with the JSON path's own functions
(daemon/profiles/probabilities.py: range, NaN, sums to 1 within 1e-6). A record without
scores in a batch that has them, or without one of the batch's classes, is refused
as in the JSON forms; every error names the column and the record.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..profiles.probabilities import PlaceError, check_matrix, check_probability
from .arrow_columns import first_row, float_column
from .scores import Scores
from .validate import BatchRejected

__all__ = ["PREFIX", "SCORE_ROLES", "score_roles", "table_scores"]

PREFIX = "probabilities."

#: The roles of score columns in ``arrow.check_schema``'s answer.
SCORE_ROLES = frozenset({"probability", "class", "probabilities"})

_NUMBER = "a number in [0, 1] (integer or floating point)"


def _numeric(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_null(dtype)


def score_roles(schema: pa.Schema, skip: Container[str] = ()) -> dict[str, str]:
    """The score columns of ``schema`` by role; BatchRejected for one of a wrong type.

    ``probability`` and ``probabilities.<class>`` columns are numeric; ``probabilities``
    is a struct of numeric fields or a map of string (or integer) keys to numbers.
    Columns in ``skip`` (the model's features) are not scores.
    """
    roles: dict[str, str] = {}
    for field in schema:
        name, dtype = field.name, field.type
        if name in skip:
            continue
        if name == "probability" or name.startswith(PREFIX):
            if name == PREFIX:
                raise BatchRejected(
                    "malformed", f"column {name!r}: expected a class name after {PREFIX!r}"
                )
            if not _numeric(dtype):
                raise BatchRejected(
                    "wrong_type", f"column {name!r}: expected {_NUMBER}, got {dtype}"
                )
            roles[name] = "probability" if name == "probability" else "class"
        elif name == "probabilities":
            if pa.types.is_struct(dtype):
                bad = [f for f in dtype if not _numeric(f.type)]
                if bad:
                    raise BatchRejected(
                        "wrong_type",
                        f"column 'probabilities.{bad[0].name}': expected {_NUMBER}, "
                        f"got {bad[0].type}",
                    )
            elif pa.types.is_map(dtype):
                key = dtype.key_type
                if not (pa.types.is_string(key) or pa.types.is_large_string(key)) and not (
                    pa.types.is_integer(key)
                ):
                    raise BatchRejected(
                        "wrong_type",
                        f"column 'probabilities': expected class names (strings) as the "
                        f"map's keys, got {key}",
                    )
                if not _numeric(dtype.item_type):
                    raise BatchRejected(
                        "wrong_type",
                        f"column 'probabilities': expected {_NUMBER} as the map's values, "
                        f"got {dtype.item_type}",
                    )
            else:
                raise BatchRejected(
                    "wrong_type",
                    "column 'probabilities': expected a struct of one number per class or a "
                    f"map class -> probability (or columns probabilities.<class>), got {dtype}",
                )
            roles[name] = "probabilities"
    return roles


def table_scores(
    table: pa.Table, roles: Mapping[str, str], ids: pa.ChunkedArray, task: str, error: PlaceError
) -> Scores | None:
    """The batch's validated scores (None without score columns); see the module doc."""
    if not roles:
        return None
    kinds = set(roles.values())
    first = next(iter(roles))
    if task != "classification":
        raise BatchRejected(
            "unknown_field",
            f"column {first!r}: only a classification model takes scores (this model's task "
            "is regression)",
        )
    if len(kinds) > 1:
        raise BatchRejected(
            "malformed",
            "a batch carries its scores in one form: a 'probability' column (binary), "
            "probabilities.<class> columns or a 'probabilities' column (multiclass), not "
            f"several (got: {', '.join(roles)})",
        )
    if "probability" in kinds:
        values, nulls = float_column(table.column("probability"))
        if nulls is not None:
            raise _missing(ids, int(np.flatnonzero(nulls)[0]), "probability", error)
        return Scores(check_probability(values, ids, "probability", error)[:, None], ())
    if "class" in kinds:
        columns = {name[len(PREFIX) :]: table.column(name) for name in roles}
        return _classes(columns, ids, error, "probabilities.*")
    column = table.column("probabilities")
    if column.null_count:
        raise _missing(ids, first_row(column.is_null()), "probabilities", error)
    if pa.types.is_map(column.type):
        return _map(column, ids, error)
    fields = column.flatten()
    names = [f.name for f in column.type]
    return _classes(dict(zip(names, fields, strict=True)), ids, error, "probabilities")


def _missing(ids: pa.ChunkedArray, row: int, name: str, error: PlaceError) -> Exception:
    return error(
        "missing_field", ids, row, name, "missing (other records of the batch carry scores)"
    )


def _classes(
    columns: Mapping[str, pa.ChunkedArray], ids: pa.ChunkedArray, error: PlaceError, row_name: str
) -> Scores:
    """One column per class (``probabilities.<class>`` columns or a struct's fields)."""
    if len(columns) < 2:
        raise BatchRejected(
            "malformed",
            f"column {'probabilities.' + next(iter(columns), '')!r}: expected the "
            "probabilities of at least 2 classes",
        )
    classes = tuple(columns)
    n = len(ids)
    matrix = np.empty((n, len(classes)))
    nulls = np.zeros((n, len(classes)), dtype=bool)
    for j, column in enumerate(columns.values()):
        matrix[:, j], null_mask = float_column(column)
        if null_mask is not None:
            nulls[:, j] = null_mask
    if nulls.any():
        none = np.flatnonzero(nulls.all(axis=1))
        if len(none):  # a record without scores
            raise _missing(ids, int(none[0]), row_name, error)
        i, j = np.argwhere(nulls)[0]
        raise error(
            "wrong_type", ids, int(i), f"probabilities.{classes[j]}",
            f"expected {_NUMBER}, got null (every record carries the batch's classes: "
            f"{', '.join(classes)})",
        )  # fmt: skip
    return Scores(check_matrix(matrix, classes, ids, error, row_name), classes)


def _map(column: pa.ChunkedArray, ids: pa.ChunkedArray, error: PlaceError) -> Scores:
    """A map column: every row holds the first row's classes, each once, in any order."""
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    lengths = np.diff(offsets)
    start, stop = int(offsets[0]), int(offsets[-1])
    keys = array.keys.slice(start, stop - start)
    if not pa.types.is_string(keys.type):
        keys = keys.cast(pa.string())
    k = int(lengths[0])
    classes = tuple(keys.slice(0, k).to_pylist())
    if k < 2 or len(set(classes)) != k:
        raise error(
            "wrong_type", ids, 0, "probabilities",
            "expected the probabilities of at least 2 distinct classes",
        )  # fmt: skip
    other = np.flatnonzero(lengths != k)
    if len(other):
        i = int(other[0])
        raise error(
            "wrong_type", ids, i, "probabilities",
            f"expected the classes of the batch's first record ({', '.join(classes)}), "
            f"got {int(lengths[i])} classes",
        )  # fmt: skip
    codes = pc.index_in(keys, value_set=pa.array(classes, pa.string()))
    if codes.null_count:
        at = first_row(codes.is_null())
        raise error(
            "wrong_type", ids, at // k, f"probabilities.{keys[at].as_py()}",
            f"unknown class (the batch's first record has: {', '.join(classes)})",
        )  # fmt: skip
    index = codes.to_numpy(zero_copy_only=False).astype(np.intp).reshape(-1, k)
    repeated = np.flatnonzero((np.sort(index, axis=1) != np.arange(k)).any(axis=1))
    if len(repeated):  # k known classes of which one twice: another one is missing
        i = int(repeated[0])
        missing = sorted(set(classes) - {classes[c] for c in index[i]})[0]
        raise error(
            "wrong_type", ids, i, f"probabilities.{missing}",
            f"missing class (every record carries the batch's classes: {', '.join(classes)})",
        )  # fmt: skip
    values, nulls = float_column(array.items.slice(start, stop - start))
    if nulls is not None:
        at = int(np.flatnonzero(nulls)[0])
        raise error(
            "wrong_type", ids, at // k, f"probabilities.{keys[at].as_py()}",
            f"expected {_NUMBER}, got null",
        )  # fmt: skip
    matrix = np.empty((len(index), k))
    np.put_along_axis(matrix, index, values.reshape(-1, k), axis=1)
    return Scores(check_matrix(matrix, classes, ids, error), classes)
