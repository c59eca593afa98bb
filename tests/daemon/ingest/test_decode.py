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

from mlwarden.daemon.ingest.batches import PredictionBatch, parse_predictions
from mlwarden.daemon.ingest.decode import decode_batch, decode_json, may_hold_booleans
from mlwarden.daemon.ingest.records import decode_records
from mlwarden.daemon.profiles.layout import Layout
from mlwarden.errors import InvalidInput

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
    except InvalidInput as exc:  # BatchRejected, or a body that is not JSON
        return (exc.code, str(exc))


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


# -- record bodies: the typed decode (msgspec) -------------------------------------------


def records(*rows: str, extra: str = "") -> bytes:
    return ('{"records": [' + ", ".join(rows) + "]" + extra + "}").encode()


def taken(body: bytes, layout: Layout) -> bool:
    return decode_records(body, layout) is not None


@pytest.mark.parametrize("layout", [NUMERIC, MIXED], ids=["numeric", "mixed"])
def test_the_typed_decode_takes_clean_record_bodies(layout):
    kind = ['"a"', '"b"', "3", "null"] if layout is MIXED else None
    for x in (CLEAN, ["1", "2", "3", "4"], ["0.5", "null", "1.0", "2.0"]):
        body = record_body(x, CLEAN, kind=kind, extra=', "ts": 1.5e9, "error": false')
        assert taken(body, layout), body
        same(outcome(body, layout, fast=True), outcome(body, layout, fast=False))


REC = '"features": {"x": 1.5, "y": 2}'
EDGES = {
    # what the typed decode leaves to the plain path
    "unknown record field": (records(f'{{"id": "a", {REC}, "other": 1}}'), False),
    "missing id": (records(f"{{{REC}}}"), False),
    "missing feature": (records('{"id": "a", "features": {"x": 1.5}}'), False),
    "unknown feature": (records('{"id": "a", "features": {"x": 1, "y": 2, "z": 3}}'), False),
    "features not an object": (records('{"id": "a", "features": [1, 2]}'), False),
    "record not an object": (records(f'{{"id": "a", {REC}}}', "[1]"), False),
    "columns too": (records(f'{{"id": "a", {REC}}}', extra=', "columns": {}'), False),
    "other top-level key": (records(f'{{"id": "a", {REC}}}', extra=', "model": "m"'), False),
    "empty batch": (records(), False),
    "id beyond int64": (records(f'{{"id": {10**30}, {REC}}}'), False),
    "id below int64": (records(f'{{"id": {-(2**63) - 1}, {REC}}}'), False),
    "nested id": (records(f'{{"id": ["a"], {REC}}}'), False),
    "NaN literal": (records('{"id": "a", "features": {"x": NaN, "y": 2}}'), False),
    "beyond float64": (records('{"id": "a", "features": {"x": 1e400, "y": 2}}'), False),
    "invalid utf-8": (b'{"records": [{"id": "\xff", "features": {"x": 1, "y": 2}}]}', False),
    # what it takes, with the plain path's outcome
    "id up to uint64": (records(f'{{"id": {2**64 - 1}, {REC}}}'), True),
    "integer feature beyond int64": (
        records(f'{{"id": "a", "features": {{"x": {10**30}, "y": {-(2**63) - 1}}}}}'),
        True,
    ),
    "duplicate feature key": (records('{"id": "a", "features": {"x": 1, "y": 2, "x": 3}}'), True),
    "escaped id": (records(f'{{"id": "\\u00e9\\n\\ud83d\\ude00", {REC}}}'), True),
    "duplicate ids": (records(f'{{"id": "a", {REC}}}', f'{{"id": "a", {REC}}}'), True),
    "bad timestamp": (records(f'{{"id": "a", {REC}, "ts": "yesterday"}}'), True),
    "boolean prediction": (records(f'{{"id": "a", {REC}, "prediction": true}}'), True),
    "null version": (records(f'{{"id": "a", {REC}, "version": null}}'), True),
    "some records with latency": (
        records(f'{{"id": "a", {REC}, "latency_ms": 3}}', f'{{"id": "b", {REC}}}'),
        True,
    ),
}


@pytest.mark.parametrize("case", sorted(EDGES))
def test_record_edge_cases_agree_with_the_plain_path(case):
    body, fast_way = EDGES[case]
    layout = Layout(("x", "y"), ())
    assert taken(body, layout) is fast_way
    same(outcome(body, layout, fast=True), outcome(body, layout, fast=False))


def test_record_values_are_read_bit_for_bit():
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.normal(size=300), rng.normal(scale=1e-300, size=50), rng.normal(scale=1e300, size=50)]
    )
    texts = [repr(float(v)) for v in values] + ["-0.0", "5e-324", "1E5", "123456789012345678"]
    texts += [f"{v:.17e}" for v in values[:50]] + [str(int(v * 1e6)) for v in values[:50]]
    rows = [
        f'{{"id": "r{i}", "features": {{"x": {t}, "y": 1}}, "prediction": 0}}'
        for i, t in enumerate(texts)
    ]
    body = records(*rows)
    layout = Layout(("x", "y"), ())
    assert taken(body, layout)
    payload, _ = decode_batch(body, layout)
    fast = parse_predictions(
        payload, layout, task="regression", now=NOW, oldest=NOW - 86400, max_batch=1000
    )
    expected = [float(json.loads(t)) for t in texts]
    assert fast.columns.numeric[:, 0].tobytes() == np.array(expected).tobytes()
