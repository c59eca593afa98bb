"""Parsing and validation of ingest batches (predictions and labels), record or columnar.

A batch is validated as a whole before anything is stored: the first problem found
raises ``BatchRejected`` (an ``InvalidInput``, HTTP 400) whose message names the record
(index and id) and the field, and whose ``reason`` labels
``mlwarden_ingest_rejected_total``. NaN, ``Infinity`` and ``null`` feature values are
data: they are counted in the profile, never rejected.

This module checks a batch's structure (fields, features, lengths) and gathers its
columns; daemon/ingest/validate.py checks and types each column's values.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from ..profiles.columns import Columns
from ..profiles.layout import Layout
from .scores import Scores, parse_scores
from .validate import (
    BatchRejected,
    bool_column,
    category_column,
    feature_columns,
    id_column,
    number_block,
    number_column,
    prediction_column,
    record_error,
    string_column,
    timestamp_column,
)

__all__ = [
    "BatchRejected",
    "LabelBatch",
    "PredictionBatch",
    "check_size",
    "parse_labels",
    "parse_predictions",
]

#: A classifier's scores, optional fields of a prediction record (daemon/ingest/scores.py).
SCORES = ("probability", "probabilities")


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
    scores: Scores | None = None  # a classifier's probability / probabilities (scores.py)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class LabelBatch:
    ids: np.ndarray
    labels: np.ndarray  # float64 or str objects

    def __len__(self) -> int:
        return len(self.ids)


def parse_predictions(
    payload: object,
    layout: Layout | None,
    *,
    task: str,
    now: float,
    oldest: float,
    max_batch: int,
    booleans: bool = True,
) -> PredictionBatch:
    """Validate ``payload`` (record or columnar form) into a PredictionBatch.

    Feature columns may come as float64 arrays (daemon/ingest/decode.py) or as lists of
    decoded JSON values. ``booleans=False`` says that the body held no JSON boolean
    (``decode.may_hold_booleans``): numbers are then told from the rest by
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
    id_array = id_column(ids, "id")
    ts = timestamp_column(fields.get("ts"), n, ids, now=now, oldest=oldest)
    versions = string_column(fields.get("version"), n, ids, "version")
    error = bool_column(fields.get("error"), n, ids, "error")
    latency = number_column(fields.get("latency_ms"), n, ids, "latency_ms", nullable=True) / 1000.0
    bad = np.flatnonzero(latency < 0)
    if len(bad):
        raise record_error("wrong_type", ids, bad[0], "latency_ms", "expected a number >= 0")
    prediction = prediction_column(fields["prediction"], ids, error, task)
    columns = None
    if layout is not None:
        features = dict(fields["features"])
        if layout.prediction:  # the prediction is profiled like a feature
            features[layout.prediction] = (
                prediction if prediction.dtype == np.float64 else prediction.tolist()
            )
        columns = feature_columns(features, layout, ids, n, booleans)
    scores = parse_scores(
        fields.get("probability"),
        fields.get("probabilities"),
        ids,
        task,
        columnar="columns" in payload,
    )
    return PredictionBatch(id_array, ts, versions, prediction, latency, error, columns, scores)


def parse_labels(payload: object, *, task: str, max_batch: int) -> LabelBatch:
    if not isinstance(payload, dict) or not isinstance(payload.get("labels"), list):
        raise BatchRejected(
            "malformed", 'expected a JSON object {"labels": [{"id", "label"}, ...]}'
        )
    if set(payload) != {"labels"}:
        extra = sorted(set(payload) - {"labels"})[0]
        raise BatchRejected("unknown_field", f"unknown field {extra!r} (expected: labels)")
    records = payload["labels"]
    check_size(len(records), max_batch, "labels")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record or "label" not in record:
            raise BatchRejected(
                "malformed", f'labels[{i}]: expected an object with "id" and "label"'
            )
        if len(record) != 2:  # as predictions: a misspelt field is refused, not dropped
            extra = sorted(set(record) - {"id", "label"})[0]
            raise BatchRejected(
                "unknown_field", f"labels[{i}]: unknown field {extra!r} (expected: id, label)"
            )
    ids = [r["id"] for r in records]
    id_array = id_column(ids, "labels")
    raw = [r["label"] for r in records]
    if task == "classification":
        labels = category_column(raw, ids, "label", nullable=False)
    else:
        labels = number_column(raw, len(raw), ids, "label", nullable=False)
        bad = np.flatnonzero(~np.isfinite(labels))
        if len(bad):
            raise record_error("wrong_type", ids, bad[0], "label", "expected a finite number")
    return LabelBatch(id_array, labels)


# -- structure ---------------------------------------------------------------------------


def check_size(n: int, max_batch: int, what: str) -> None:
    if n == 0:
        raise BatchRejected("empty_batch", f"the batch has no {what}")
    if n > max_batch:
        raise BatchRejected(
            "batch_too_large",
            f"the batch has {n} {what}; at most {max_batch} per request "
            "(monitoring.max_batch_records)",
            status=413,
        )


def _records_to_columns(
    records: object, layout: Layout | None, max_batch: int, booleans: bool
) -> dict[str, Any]:
    if not isinstance(records, list):
        raise BatchRejected("malformed", '"records" must be an array of objects')
    check_size(len(records), max_batch, "records")
    if set(map(type, records)) != {dict}:
        i = next(i for i, r in enumerate(records) if not isinstance(r, dict))
        raise BatchRejected("malformed", f"records[{i}]: expected an object")
    # Every check below is on the distinct field orders (senders use one or a few), or a
    # C-level map over the records; a Python loop runs only to name a bad record.
    orders = set(map(tuple, records))
    present = set().union(*orders)
    allowed = {"id", "ts", "version", "features", "prediction", "latency_ms", "error", *SCORES}
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
    for key in ("ts", "version", "latency_ms", "error", "prediction", *SCORES):
        if key in present:
            out[key] = [r.get(key) for r in records]
    out.setdefault("prediction", [None] * len(records))
    features = list(map(operator.itemgetter("features"), records))
    if set(map(type, features)) != {dict}:
        i = next(i for i, f in enumerate(features) if not isinstance(f, dict))
        raise record_error("malformed", ids, i, "features", "expected an object")
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
    block = number_block(rows, booleans) if all(n in numeric for n in names) else None
    if block is not None:  # typed columns: views of one (n, F) block
        out["features"] = {name: block[:, j] for j, name in enumerate(names)}
    else:
        out["features"] = dict(zip(names, zip(*rows, strict=True), strict=True))
    return out


def _feature_rows(
    features: list[dict[str, Any]], names: tuple[str, ...]
) -> list[tuple[Any, ...]] | None:
    """Each record's feature values in ``names`` order, or None if a record's set differs."""
    if not names:
        return None if any(features) else [() for _ in features]
    if set(map(len, features)) != {len(names)}:
        return None
    # The decoder's own key objects: a lookup by the same object skips comparing the
    # strings (a third of the time at 50 features).
    keys = {key: key for key in features[0]}
    names = tuple(keys.get(name, name) for name in names)
    try:  # with every record of len(names) keys, finding every name proves the set
        rows = list(map(operator.itemgetter(*names), features))
    except KeyError:
        return None
    return rows if len(names) > 1 else [(value,) for value in rows]


def _columnar(columns: object, layout: Layout | None, max_batch: int) -> dict[str, Any]:
    if not isinstance(columns, dict):
        raise BatchRejected("malformed", '"columns" must be an object of arrays')
    allowed = {"id", "ts", "version", "features", "prediction", "latency_ms", "error", *SCORES}
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
    check_size(n, max_batch, "records")
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
    for key in SCORES:  # their shape is checked by scores.parse_scores
        if key in columns:
            out[key] = columns[key]
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


def _feature_set_problem(
    got: set[str], expected: set[str], ids: Sequence[object], i: int
) -> NoReturn:
    unknown, missing = sorted(got - expected), sorted(expected - got)
    if unknown:
        raise record_error(
            "unknown_feature",
            ids,
            i,
            f"features.{unknown[0]}",
            f"unknown feature (the model's features: {', '.join(sorted(expected))})",
        )
    raise record_error("missing_feature", ids, i, f"features.{missing[0]}", "missing feature")
