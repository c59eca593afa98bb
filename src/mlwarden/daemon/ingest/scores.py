"""A classifier's scores on the wire: ``probability`` (binary) or ``probabilities``.

One place validates them, whatever the body's form: ``parse_scores`` takes the raw
field values (one per record: a record body's ``probability`` / ``probabilities``
fields, or a columnar body's arrays) and gives a :class:`Scores`, or raises
``BatchRejected`` naming the record, the field and what was expected:

- ``probability``: P(positive class) of a binary classifier, a number in [0, 1];
- ``probabilities``: an object class -> probability of a multiclass classifier, every
  value in [0, 1], summing to 1 within 1e-6, the same classes in every record;
- only classification models take them; a batch carries one of the two fields in every
  record or in none (a record without scores in a batch that has them is refused).

The Arrow and Parquet bodies (daemon/ingest/arrow_scores.py) gather their score columns
into float64 arrays with pyarrow and check them with the same two functions,
``check_probability`` and ``check_matrix`` (daemon/profiles/probabilities.py: range,
NaN, sums), which take the function that names a bad value's place (``field`` in a
JSON record, ``column`` in a table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..profiles.probabilities import SUM_TOLERANCE, check_matrix, check_probability
from .validate import BatchRejected, record_error

__all__ = ["SUM_TOLERANCE", "Scores", "parse_scores"]


@dataclass(frozen=True)
class Scores:
    """A batch's validated scores: ``values`` rows x classes (binary: one column, P(+))."""

    values: np.ndarray  # float64
    classes: tuple[str, ...]  # () for a binary model's ``probability``

    @property
    def binary(self) -> bool:
        return not self.classes

    def take(self, index: np.ndarray) -> Scores:
        return Scores(self.values[index], self.classes)

    def to_json(self) -> dict[str, Any]:
        """The form kept in a stored prediction batch (prepare.encode_predictions)."""
        if self.binary:
            return {"probability": self.values[:, 0].tolist()}
        return {
            "probabilities": {c: self.values[:, j].tolist() for j, c in enumerate(self.classes)}
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scores | None:
        """The scores of a stored prediction batch (None when it had none)."""
        if "probability" in data:
            return cls(np.asarray(data["probability"], dtype=np.float64)[:, None], ())
        if "probabilities" in data:
            by_class = data["probabilities"]
            classes = tuple(by_class)
            values = np.column_stack([np.asarray(by_class[c], dtype=np.float64) for c in classes])
            return cls(values, classes)
        return None


def parse_scores(
    probability: Sequence[object] | np.ndarray | None,
    probabilities: Sequence[object] | Mapping[str, Sequence[object]] | None,
    ids: Sequence[object],
    task: str,
    *,
    columnar: bool = False,
) -> Scores | None:
    """The batch's validated scores (None when it has none); see the module docstring."""
    if probability is None and probabilities is None:
        return None
    field = "probability" if probability is not None else "probabilities"
    if task != "classification":
        raise BatchRejected(
            "unknown_field",
            f"{'columns.' if columnar else ''}{field}: only a classification model takes "
            "scores (this model's task is regression)",
        )
    if probability is not None and probabilities is not None:
        raise BatchRejected(
            "malformed",
            "a batch carries either 'probability' (binary) or 'probabilities' (multiclass), "
            "not both",
        )
    n = len(ids)
    if probability is not None:
        return Scores(_binary(probability, ids, n)[:, None], ())
    assert probabilities is not None
    if isinstance(probabilities, Mapping):
        return _columnar_classes(probabilities, ids, n)
    return _records_classes(probabilities, ids, n)


def _missing(ids: Sequence[object], i: int, field: str) -> BatchRejected:
    return record_error(
        "missing_field", ids, i, field, "missing (other records of the batch carry scores)"
    )


def _binary(values: Sequence[object] | np.ndarray, ids: Sequence[object], n: int) -> np.ndarray:
    if len(values) != n:
        raise BatchRejected(
            "length_mismatch",
            f"columns.probability: expected an array of {n} values (as many as columns.id)",
        )
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        out = values
    else:
        kinds = set(map(type, values))
        if not kinds <= {int, float} or bool in kinds:
            i = next(i for i, v in enumerate(values) if type(v) not in (int, float))
            if values[i] is None:
                raise _missing(ids, i, "probability")
            raise record_error("wrong_type", ids, i, "probability", "expected a number in [0, 1]")
        out = np.asarray(values, dtype=np.float64)
    return check_probability(out, ids, "probability", record_error)


def _records_classes(values: Sequence[object], ids: Sequence[object], n: int) -> Scores:
    if len(values) != n:
        raise BatchRejected(
            "length_mismatch",
            f"columns.probabilities: expected an array of {n} objects (as many as columns.id)",
        )
    first = values[0]
    if not isinstance(first, dict) or len(first) < 2:
        i = 0
        if first is None:
            raise _missing(ids, i, "probabilities")
        raise record_error(
            "wrong_type", ids, i, "probabilities",
            "expected an object of at least 2 classes -> probability",
        )  # fmt: skip
    classes = tuple(str(c) for c in first)
    matrix = np.empty((n, len(classes)))
    for i, row in enumerate(values):
        if not isinstance(row, dict):
            if row is None:
                raise _missing(ids, i, "probabilities")
            raise record_error(
                "wrong_type", ids, i, "probabilities", "expected an object class -> probability"
            )
        if row.keys() != first.keys():
            raise record_error(
                "wrong_type", ids, i, "probabilities",
                f"expected the classes of the batch's first record ({', '.join(classes)})",
            )  # fmt: skip
        for j, c in enumerate(first):
            v = row[c]
            if type(v) not in (int, float):
                raise record_error(
                    "wrong_type", ids, i, f"probabilities.{c}", "expected a number in [0, 1]"
                )
            matrix[i, j] = v
    return Scores(check_matrix(matrix, classes, ids, record_error), classes)


def _columnar_classes(
    columns: Mapping[str, Sequence[object]], ids: Sequence[object], n: int
) -> Scores:
    if len(columns) < 2:
        raise BatchRejected(
            "malformed", "columns.probabilities: expected an object of at least 2 classes -> array"
        )
    classes = tuple(str(c) for c in columns)
    matrix = np.empty((n, len(classes)))
    for j, (c, values) in enumerate(columns.items()):
        if not isinstance(values, list | np.ndarray) or len(values) != n:
            raise BatchRejected(
                "length_mismatch",
                f"columns.probabilities.{c}: expected an array of {n} values (as many as "
                "columns.id)",
            )
        kinds = set(map(type, values)) if not isinstance(values, np.ndarray) else {float}
        if not kinds <= {int, float} or bool in kinds:
            i = next(i for i, v in enumerate(values) if type(v) not in (int, float))
            raise record_error(
                "wrong_type", ids, i, f"probabilities.{c}", "expected a number in [0, 1]"
            )
        matrix[:, j] = np.asarray(values, dtype=np.float64)
    return Scores(check_matrix(matrix, classes, ids, record_error), classes)
