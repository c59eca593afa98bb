"""Helpers shared by the Arrow body's field and score columns (arrow.py, arrow_scores.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .validate import BatchRejected

__all__ = ["first_row", "float_column", "row_error"]


def row_error(
    reason: str, ids: pa.ChunkedArray, row: int, column: str, expected: str
) -> BatchRejected:
    """The error naming a bad value: its record (row and id) and its column."""
    rid = ids[row].as_py() if row < len(ids) else None
    return BatchRejected(reason, f"record {row} (id {rid!r}), column {column!r}: {expected}")


def first_row(mask: np.ndarray | pa.ChunkedArray | pa.Array) -> int:
    """The first row where ``mask`` is true."""
    if not isinstance(mask, np.ndarray):
        mask = mask.to_numpy(zero_copy_only=False)
    return int(np.flatnonzero(mask)[0])


def float_column(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """A numeric column as float64 (null as NaN) and its null mask (None without nulls)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    nulls = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float64), nulls
