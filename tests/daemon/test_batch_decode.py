"""The fast decode of ingest bodies gives the batch, or the error, of the plain path.

The plain path is ``decode_json`` (orjson, then json for NaN literals) and a type check
of every value; the fast one reads numeric columns as float64 buffers (simdjson) and
skips the per-value type check when the body holds no boolean. Every body below goes
through both, and the batches (or the refusals, reason and message) must be the same.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from mlwarden.daemon.batch_decode import decode_batch, decode_json, may_hold_booleans
from mlwarden.daemon.batches import BatchRejected, PredictionBatch, parse_predictions
from mlwarden.daemon.profiles import Layout

NOW = time.time()
NUMERIC = Layout(("x", "y", "prediction"), (), prediction="prediction")
MIXED = Layout(("x", "y"), ("kind",), categories=(("a", "b", "3"),), prediction="")


def parse(payload, booleans, layout):
    return parse_predictions(
        payload, layout, task="regression", now=NOW, oldest=NOW - 86400, max_batch=100,
        booleans=booleans,
    )  # fmt: skip


def outcome(body: bytes, layout: Layout, fast: bool):
    try:
        if fast:
            return parse(*decode_batch(body, layout), layout)
        return parse(decode_json(body), True, layout)
    except BatchRejected as exc:
        return (exc.reason, str(exc))


def same(a, b) -> None:
    if not isinstance(a, PredictionBatch):
        assert a == b
        return
    assert isinstance(b, PredictionBatch), b
    for name in ("ids", "ts", "versions", "prediction", "latency", "error"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.columns.numeric, b.columns.numeric)
    np.testing.assert_array_equal(a.columns.codes, b.columns.codes)
    if a.columns.nulls is None:
        assert b.columns.nulls is None
    else:
        np.testing.assert_array_equal(a.columns.nulls, b.columns.nulls)


def record_body(x: list[str], y: list[str], ids=None, kind=None, extra: str = "") -> bytes:
    rows = []
    for i, (xv, yv) in enumerate(zip(x, y, strict=True)):
        rid = json.dumps(ids[i] if ids else f"r{i}")
        feats = f'"x": {xv}, "y": {yv}'
        if kind is not None:
            feats += f', "kind": {kind[i]}'
        rows.append(f'{{"id": {rid}, "features": {{{feats}}}, "prediction": {i}.5{extra}}}')
    return ('{"records": [' + ", ".join(rows) + "]}").encode()


def column_body(x: list[str], y: list[str], ids=None, kind=None, extra: str = "") -> bytes:
    rid = json.dumps(ids or [f"c{i}" for i in range(len(x))])
    feats = f'"x": [{", ".join(x)}], "y": [{", ".join(y)}]'
    if kind is not None:
        feats += f', "kind": [{", ".join(kind)}]'
    preds = ", ".join(f"{i}.5" for i in range(len(x)))
    columns = f'"id": {rid}, "features": {{{feats}}}, "prediction": [{preds}]{extra}'
    return ("{" + f'"columns": {{{columns}}}' + "}").encode()


CLEAN = ["0.25", "-1.5", "3", "1e-3"]
VARIANTS = {
    "clean": (CLEAN, CLEAN),
    "integers": (["1", "2", "3", "4"], CLEAN),
    "null": (["0.5", "null", "1.0", "2.0"], CLEAN),
    "boolean": (["0.5", "true", "1.0", "2.0"], CLEAN),
    "string": (["0.5", '"1.5"', "1.0", "2.0"], CLEAN),
    "beyond int64": (["0.5", str(10**30), "1.0", "2.0"], CLEAN),
    "beyond float64": (["0.5", str(10**400), "1.0", "2.0"], CLEAN),
    "nan literal": (["NaN", "Infinity", "-Infinity", "2.0"], CLEAN),
    "array in a value": (["0.5", "[1]", "1.0", "2.0"], CLEAN),
    "object in a value": (["0.5", '{"a": 1}', "1.0", "2.0"], CLEAN),
}


@pytest.mark.parametrize("form", [record_body, column_body])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("layout", [NUMERIC, MIXED], ids=["numeric", "mixed"])
def test_fast_and_plain_decode_agree(form, variant, layout):
    x, y = VARIANTS[variant]
    kind = ['"a"', '"b"', "3", "null"] if layout is MIXED else None
    body = form(x, y, kind=kind)
    fast, plain = outcome(body, layout, fast=True), outcome(body, layout, fast=False)
    same(fast, plain)
    if variant in ("boolean", "string", "array in a value", "object in a value"):
        assert fast[0] == "wrong_type" and "record 1" in fast[1] and "features.x" in fast[1]
    else:
        assert isinstance(fast, PredictionBatch), fast


@pytest.mark.parametrize("form", [record_body, column_body])
def test_values_land_where_they_belong(form):
    body = form(["0.5", "null", "NaN", str(10**400)], ["1", "2", "3", "4"])
    batch = outcome(body, NUMERIC, fast=True)
    x, y, prediction = batch.columns.numeric.T
    np.testing.assert_array_equal(x, [0.5, np.nan, np.nan, np.inf])
    np.testing.assert_array_equal(batch.columns.nulls[:, 0], [False, True, False, False])
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(prediction, [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(batch.prediction, prediction)


@pytest.mark.parametrize("form", [record_body, column_body])
def test_a_boolean_elsewhere_in_the_body_keeps_the_type_check(form):
    # "true" in an id (a string) makes the body suspect: the check runs, finds nothing.
    body = form(CLEAN, CLEAN, ids=["true-0", "r1", "r2", "r3"])
    assert may_hold_booleans(body)
    same(outcome(body, NUMERIC, fast=True), outcome(body, NUMERIC, fast=False))
    # A real boolean in another field is refused there, not taken for a number.
    body = form(CLEAN, CLEAN, extra=', "error": [false, false, false, true]')
    if form is record_body:
        body = form(CLEAN, CLEAN, extra=', "error": false')
    fast = outcome(body, NUMERIC, fast=True)
    same(fast, outcome(body, NUMERIC, fast=False))
    assert isinstance(fast, PredictionBatch)


def test_structure_problems_are_worded_by_the_plain_path():
    for body in (
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"columns": [1]}',
        b'{"columns": {"id": ["a"], "features": {"x": [1.0], "y": [2.0]}}, "records": []}',
        b'{"columns": {"id": ["a"], "features": [1.0]}}',
        b'{"columns": {"id": ["a", "b"], "features": {"x": [1.0], "y": [2.0, 3.0]}}}',
        b'{"columns": {"id": ["a"], "features": {"x": 1.0, "y": [2.0]}}}',
    ):
        try:
            fast = outcome(body, NUMERIC, fast=True)
        except Exception as exc:  # compared with the plain path's
            fast = (type(exc).__name__, str(exc))
        try:
            plain = outcome(body, NUMERIC, fast=False)
        except Exception as exc:
            plain = (type(exc).__name__, str(exc))
        same(fast, plain)
        assert not isinstance(fast, PredictionBatch), body
