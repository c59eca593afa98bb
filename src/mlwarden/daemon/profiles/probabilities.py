"""The checks of a classifier's scores, wherever they come from (wire or reference).

``check_probability`` (a binary model's P(positive class)) and ``check_matrix`` (a
multiclass model's rows x classes) are vectorised: every value in [0, 1] (NaN and
infinities are not), every row summing to 1 within ``SUM_TOLERANCE``. They raise the
error that ``error`` makes, so each caller names a bad value's place in its own words:
a JSON record's field, an Arrow body's column (daemon/ingest/scores.py,
daemon/ingest/arrow_scores.py) or a reference file's row and column
(daemon/monitoring/estimation_data.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["SUM_TOLERANCE", "PlaceError", "check_matrix", "check_probability"]

#: How far a row of ``probabilities`` may sum from 1.
SUM_TOLERANCE = 1e-6

#: ``(reason, ids, row, name, expected)`` -> the exception naming a value's place.
PlaceError = Callable[[str, Any, int, str, str], Exception]


def check_probability(values: np.ndarray, ids: Any, name: str, error: PlaceError) -> np.ndarray:
    """``values`` (float64) once every one is in [0, 1]; NaN and infinities are out of it."""
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if len(bad):
        raise error(
            "out_of_range", ids, int(bad[0]), name,
            f"expected a number in [0, 1], got {float(values[bad[0]])!r}",
        )  # fmt: skip
    return values


def check_matrix(
    matrix: np.ndarray,
    classes: tuple[str, ...],
    ids: Any,
    error: PlaceError,
    name: str = "probabilities",
    prefix: str = "probabilities.",
) -> np.ndarray:
    """``matrix`` (rows x ``classes``) once each value is in [0, 1] and each row sums to
    1 within ``SUM_TOLERANCE``; ``prefix`` + class names a value, ``name`` a row."""
    bad = np.argwhere(~((matrix >= 0.0) & (matrix <= 1.0)))
    if len(bad):
        i, j = bad[0]
        raise error(
            "out_of_range", ids, int(i), f"{prefix}{classes[j]}",
            f"expected a number in [0, 1], got {float(matrix[i, j])!r}",
        )  # fmt: skip
    total = matrix.sum(axis=1)
    off = np.flatnonzero(np.abs(total - 1.0) > SUM_TOLERANCE)
    if len(off):
        i = int(off[0])
        raise error(
            "out_of_range", ids, i, name,
            f"the probabilities must sum to 1 (within {SUM_TOLERANCE:g}), "
            f"got {float(total[i]):.9g}",
        )  # fmt: skip
    return matrix
