"""Arrow IPC and Parquet ingest bodies: the same batches as JSON, every bad input a 4xx."""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlwarden.daemon.ingest.arrow import ARROW_STREAM, PARQUET

from .test_ingest import config, ready, records, rejected, stored, write_reference

NOW = time.time()


@pytest.fixture
def reference(tmp_path):
    return write_reference(tmp_path)


def table(n: int = 5, start: int = 0, **columns) -> pa.Table:
    """A valid batch of model ``m`` (x, y numeric; kind categorical); ``columns`` override."""
    rng = np.random.default_rng(start)
    data = {
        "id": pa.array([f"r{i}" for i in range(start, start + n)]),
        "x": pa.array(rng.normal(size=n)),
        "y": pa.array(rng.uniform(size=n)),
        "kind": pa.array(["a"] * n),
        "prediction": pa.array(rng.normal(size=n)),
    }
    for name, value in columns.items():
        if value is None:
            del data[name]
        else:
            data[name] = value if isinstance(value, pa.Array) else pa.array(value)
    return pa.table(data)


def stream(t: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, t.schema) as writer:
        writer.write_table(t)
    return sink.getvalue()


def parquet(t: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(t, sink)
    return sink.getvalue()


async def post(client, body: bytes, media_type: str = ARROW_STREAM, path="predictions", **kw):
    headers = {"Content-Type": media_type, **kw.pop("headers", {})}
    return await client.post(f"/api/models/m/{path}", data=body, headers=headers, **kw)


@pytest.fixture
async def daemon(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    await ready(warden)
    await ready(warden, "cls")
    await ready(warden, "open")
    return warden, await make_client(warden)


@pytest.mark.parametrize("encode,media_type", [(stream, ARROW_STREAM), (parquet, PARQUET)])
async def test_arrow_batch_gives_the_same_profile_as_json(
    make_warden, make_client, reference, encode, media_type
):
    twin = f'\n[[models]]\nname = "m2"\nreference = "{reference}"\n'
    warden = await make_warden(config(reference) + twin)
    await ready(warden)
    await ready(warden, "m2")
    client = await make_client(warden)
    recs = records(200)
    for rec in recs:
        rec["ts"] = NOW - 5
    resp = await client.post("/api/models/m/predictions", json={"records": recs})
    assert resp.status == 201, await resp.text()
    t = pa.table(
        {
            "id": [r["id"] for r in recs],
            "ts": [r["ts"] for r in recs],
            "x": [r["features"]["x"] for r in recs],
            "y": [r["features"]["y"] for r in recs],
            "kind": [r["features"]["kind"] for r in recs],
            "prediction": [r["prediction"] for r in recs],
        }
    )
    resp = await client.post(
        "/api/models/m2/predictions", data=encode(t), headers={"Content-Type": media_type}
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["accepted"] == 200
    pj = await warden.ingest.window("m", NOW - 3600, NOW + 3600)
    pt = await warden.ingest.window("m2", NOW - 3600, NOW + 3600)
    assert pj.rows == pt.rows == 200
    for name in ("count", "nulls", "hist", "cat_counts", "cat_unseen", "minimum", "maximum"):
        np.testing.assert_array_equal(getattr(pj, name), getattr(pt, name), err_msg=name)
    np.testing.assert_allclose(pj.mean, pt.mean)


async def test_arrow_types_nulls_and_categories(daemon):
    warden, client = daemon
    t = table(
        4,
        id=pa.array([1, 2, 3, 4], pa.int64()),  # integer ids are written as strings
        x=pa.array([1, None, np.nan, np.inf], pa.float32()),  # null, NaN, inf: data
        y=pa.array([1, 2, 3, 4], pa.int16()),
        kind=pa.array(["a", "zz", None, "b"]).dictionary_encode(),
        ts=pa.array([int((NOW - 10) * 1e6)] * 4, pa.timestamp("us", tz="UTC")),
        version=["v1", None, "v1", "v1"],
        latency_ms=[1.0, None, 2, 3],
        error=[False, None, True, False],
    )
    resp = await post(client, stream(t))
    assert resp.status == 201, await resp.text()
    profile = await warden.ingest.window("m", NOW - 3600, NOW + 3600)
    assert profile.rows == 4
    # The labels of the integer ids join.
    labels = pa.table({"id": pa.array([1, 4, 99]), "label": pa.array([0.5, 1.0, 2.0])})
    resp = await post(client, stream(labels), path="labels")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["matched"] == 2


BAD_TABLES = [
    # wrong schema: unknown and missing columns, duplicate names
    (lambda: table(z=[1.0] * 5), "unknown_feature", "'z'"),
    (lambda: table(y=None), "missing_feature", "'y'"),
    (lambda: table(id=None), "missing_field", "'id'"),
    # wrong types
    (lambda: table(x=["1.5"] * 5), "wrong_type", "'x'"),
    (lambda: table(x=[True] * 5), "wrong_type", "'x'"),
    (lambda: table(kind=[1.5] * 5), "wrong_type", "'kind'"),
    (lambda: table(id=[1.5] * 5), "wrong_type", "'id'"),
    (lambda: table(ts=["yesterday"] * 5), "wrong_type", "'ts'"),
    (lambda: table(prediction=["up"] * 5), "wrong_type", "'prediction'"),
    (lambda: table(version=[3] * 5), "wrong_type", "'version'"),
    (lambda: table(error=["no"] * 5), "wrong_type", "'error'"),
    (lambda: table(x=pa.array([[1.0]] * 5)), "wrong_type", "'x'"),
    # values, named by row
    (lambda: table(id=["a", "b", "a", "c", "d"]), "duplicate_id", "record 2"),
    (lambda: table(id=["a", "b", None, "c", "d"]), "wrong_type", "record 2"),
    (lambda: table(id=["a", "b", "", "c", "d"]), "wrong_type", "record 2"),
    (lambda: table(ts=[NOW, NOW, np.nan, NOW, NOW]), "bad_timestamp", "record 2"),
    (lambda: table(ts=[NOW, NOW, np.inf, NOW, NOW]), "bad_timestamp", "record 2"),
    (lambda: table(ts=[NOW, NOW, NOW + 86400, NOW, NOW]), "bad_timestamp", "record 2"),
    (lambda: table(ts=[NOW, NOW, NOW - 90 * 86400, NOW, NOW]), "bad_timestamp", "record 2"),
    (lambda: table(prediction=[1.0, 2.0, None, 1.0, 1.0]), "missing_field", "record 2"),
    (lambda: table(latency_ms=[1.0, 2.0, -1.0, 1.0, 1.0]), "wrong_type", "record 2"),
    # empty
    (lambda: table(0), "empty_batch", "no records"),
]


@pytest.mark.parametrize("encode,media_type", [(stream, ARROW_STREAM), (parquet, PARQUET)])
async def test_bad_tables_are_refused_whole(daemon, encode, media_type):
    warden, client = daemon
    for make, reason, where in BAD_TABLES:
        before = rejected(warden, reason)
        resp = await post(client, encode(make()), media_type)
        body = await resp.json()
        assert resp.status == 400, (reason, where, body)
        assert body["error"]["code"] == reason, (where, body)
        assert where in body["error"]["message"], body
        assert await stored(warden) == 0, where
        assert rejected(warden, reason) == before + 1
    resp = await post(client, encode(table()), media_type)
    assert resp.status == 201, await resp.text()
    assert await stored(warden) == 5


async def test_unreadable_bodies(daemon):
    warden, client = daemon
    body = stream(table(100))
    for data, media_type in [
        (b"", ARROW_STREAM),  # empty
        (body[: len(body) // 2], ARROW_STREAM),  # truncated stream
        (b"not arrow at all" * 10, ARROW_STREAM),
        (b"", PARQUET),
        (parquet(table(100))[:-100], PARQUET),  # truncated file
        (body, PARQUET),  # an Arrow stream sent as Parquet
    ]:
        resp = await post(client, data, media_type)
        payload = await resp.json()
        assert resp.status == 400, payload
        assert payload["error"]["code"] in ("empty_body", "malformed"), payload
        message = payload["error"]["message"]
        assert "Arrow" in message or "Parquet" in message, message
    assert await stored(warden) == 0


async def test_oversized_batches(make_warden, make_client, reference):
    warden = await make_warden(
        config(reference, "max_batch_records = 3"),
    )
    await ready(warden)
    client = await make_client(warden)
    resp = await post(client, stream(table(4)))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "batch_too_large"
    resp = await post(client, stream(table(4)), path="labels")
    assert resp.status in (400, 413)
    assert await stored(warden) == 0


async def test_oversized_body_is_413(make_warden, make_client, reference):
    warden = await make_warden(config(reference) + "\n[daemon]\nmax_body_bytes = 2000\n")
    await ready(warden)
    client = await make_client(warden)
    resp = await post(client, stream(table(200)))
    assert resp.status == 413
    assert "max_body_bytes" in (await resp.json())["error"]["message"]
    assert await stored(warden) == 0


async def test_model_without_schema_and_classification(daemon):
    warden, client = daemon
    t = table(3, anything=[1, 2, 3])  # an open schema takes any column
    resp = await client.post(
        "/api/models/open/predictions", data=stream(t), headers={"Content-Type": ARROW_STREAM}
    )
    assert resp.status == 201, await resp.text()
    t = pa.table({"id": ["a", "b"], "x": [1.0, 2.0], "kind": ["a", "b"], "prediction": [1, 0]})
    resp = await client.post(
        "/api/models/cls/predictions", data=stream(t), headers={"Content-Type": ARROW_STREAM}
    )
    assert resp.status == 201, await resp.text()
    labels = pa.table({"id": ["a", "b"], "label": ["1", "1"]})
    resp = await client.post(
        "/api/models/cls/labels", data=stream(labels), headers={"Content-Type": ARROW_STREAM}
    )
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["matched"] == 2
    outcomes = await warden.ingest.outcomes("cls")
    assert sorted(outcomes.prediction.tolist()) == ["0", "1"]


BAD_LABELS = [
    (pa.table({"id": ["r0"]}), "missing_field", "'label'"),
    (pa.table({"id": ["r0"], "label": [1.0], "z": [1]}), "unknown_field", "'z'"),
    (pa.table({"id": ["r0"], "label": ["x"]}), "wrong_type", "'label'"),
    (pa.table({"id": ["r0", "r1"], "label": [1.0, np.nan]}), "wrong_type", "record 1"),
    (pa.table({"id": ["r0", "r1"], "label": [1.0, None]}), "wrong_type", "record 1"),
    (pa.table({"id": ["r0", "r0"], "label": [1.0, 2.0]}), "duplicate_id", "record 1"),
    (pa.table({"id": pa.array([], pa.string()), "label": pa.array([], pa.float64())}),
     "empty_batch", "no labels"),
]  # fmt: skip


async def test_bad_label_tables(daemon):
    warden, client = daemon
    resp = await post(client, stream(table()))
    assert resp.status == 201
    for t, reason, where in BAD_LABELS:
        resp = await post(client, stream(t), path="labels")
        body = await resp.json()
        assert resp.status == 400, body
        assert body["error"]["code"] == reason, body
        assert where in body["error"]["message"], body
    assert len((await warden.ingest.outcomes("m")).id) == 0


async def test_a_retried_batch_id_counts_once(daemon):
    warden, client = daemon
    body = stream(table(5))
    headers = {"Mlwarden-Batch-Id": "batch-1"}
    first = await post(client, body, headers=headers)
    assert first.status == 201
    again = await post(client, body, headers=headers)
    assert again.status == 201, await again.text()
    assert (await again.json())["replayed"] is True
    assert await stored(warden) == 5
    profile = await warden.ingest.window("m", NOW - 3600, NOW + 3600)
    assert profile.rows == 5
    # Without the header the same ids are duplicates (409), as documented.
    resp = await post(client, body)
    assert resp.status == 409
    # A batch refused as a duplicate keeps no trace of its batch id: once its ids are
    # new, the same batch id stores it.
    resp = await post(client, body, headers={"Mlwarden-Batch-Id": "batch-2"})
    assert resp.status == 409
    fresh = stream(table(5, start=100))
    resp = await post(client, fresh, headers={"Mlwarden-Batch-Id": "batch-2"})
    assert resp.status == 201
    assert "replayed" not in await resp.json()
    assert await stored(warden) == 10
    resp = await post(client, body, headers={"Mlwarden-Batch-Id": ""})
    assert resp.status == 400


# -- a classifier's scores -----------------------------------------------------------------


def scored(n: int = 4, **columns) -> pa.Table:
    """A valid batch of the classifier ``cls`` (x numeric, kind categorical); ``columns``
    add or override (None removes)."""
    data = {
        "id": pa.array([f"s{i}" for i in range(n)]),
        "x": pa.array(np.linspace(0.0, 1.0, n)),
        "kind": pa.array(["a"] * n),
        "prediction": pa.array(["up", "down"] * (n // 2)),
    }
    data.update({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    return pa.table({k: v for k, v in data.items() if v is not None})


PROBA = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])


def class_map(rows) -> pa.Array:
    return pa.array(rows, pa.map_(pa.string(), pa.float64()))


@pytest.mark.parametrize("encode,media_type", [(stream, ARROW_STREAM), (parquet, PARQUET)])
async def test_scores_in_every_form_are_stored_as_from_json(daemon, encode, media_type):
    warden, client = daemon
    binary = scored(probability=PROBA[:, 1], ts=[NOW - 1800] * 4)
    assert (await post_cls(client, encode(binary), media_type)).status == 201
    found = await warden.ingest.scored_predictions("cls", NOW - 3600, NOW - 900)
    assert found.classes == () and found.scores[:, 0].tolist() == PROBA[:, 1].tolist()
    frame = scored().to_pandas()  # what a pandas user writes: one column per class
    frame["probabilities.down"], frame["probabilities.up"] = PROBA[:, 0], PROBA[:, 1]
    forms = [
        pa.Table.from_pandas(frame, preserve_index=False),
        # a DataFrame column of dicts (pyarrow makes it a struct), or a map column
        scored(probabilities=[{"down": a, "up": b} for a, b in PROBA]),
        scored(probabilities=class_map([[("up", b), ("down", a)] for a, b in PROBA])),
    ]
    for i, form in enumerate(forms):
        form = form.set_column(0, "id", pa.array([f"f{i}-{j}" for j in range(4)]))
        resp = await post_cls(client, encode(form), media_type)
        assert resp.status == 201, await resp.text()
    json_body = {"columns": {
        "id": [f"j{j}" for j in range(4)], "features": {"x": [0.0] * 4, "kind": ["a"] * 4},
        "prediction": ["up", "down"] * 2,
        "probabilities": {"down": PROBA[:, 0].tolist(), "up": PROBA[:, 1].tolist()},
    }}  # fmt: skip
    resp = await client.post("/api/models/cls/predictions", json=json_body)
    assert resp.status == 201, await resp.text()
    found = await warden.ingest.scored_predictions("cls", NOW - 900, NOW + 3600)
    assert found.unscored == 0 and set(found.classes) == {"down", "up"}
    order = [found.classes.index(c) for c in ("down", "up")]
    np.testing.assert_array_equal(found.scores[:, order], np.tile(PROBA, (4, 1)))


async def post_cls(client, body: bytes, media_type: str = ARROW_STREAM):
    return await client.post(
        "/api/models/cls/predictions", data=body, headers={"Content-Type": media_type}
    )


P = [0.2, 0.6, 0.5, 1.0]

BAD_SCORES = [
    # wrong types
    (lambda: scored(probability=["0.2"] * 4), "wrong_type", "column 'probability'"),
    (lambda: scored(probability=[True] * 4), "wrong_type", "column 'probability'"),
    (lambda: scored(**{"probabilities.up": ["x"] * 4, "probabilities.down": P}),
     "wrong_type", "column 'probabilities.up'"),
    (lambda: scored(probabilities=[{"up": "x", "down": 0.5}] * 4),
     "wrong_type", "column 'probabilities.up'"),
    (lambda: scored(probabilities=[0.5] * 4), "wrong_type", "column 'probabilities'"),
    (lambda: scored(probabilities=pa.array([[(1.5, 0.5)]] * 4, pa.map_(pa.float64(),
                                                                       pa.float64()))),
     "wrong_type", "map's keys"),
    # out of range, NaN, infinity, sums
    (lambda: scored(probability=[0.2, -0.1, 0.5, 1.0]), "out_of_range", "record 1 (id 's1')"),
    (lambda: scored(probability=[0.2, 0.6, 1.5, 1.0]), "out_of_range", "record 2 (id 's2')"),
    (lambda: scored(probability=[0.2, np.nan, 0.5, 1.0]), "out_of_range", "got nan"),
    (lambda: scored(probability=[0.2, 0.6, np.inf, 1.0]), "out_of_range", "record 2"),
    (lambda: scored(**{"probabilities.up": P, "probabilities.down": [0.8, 0.4, 0.6, 0.0]}),
     "out_of_range", "record 2 (id 's2'), column 'probabilities.*': the probabilities must sum"),
    (lambda: scored(**{"probabilities.up": [0.2, 0.6, 0.5, np.nan], "probabilities.down": P}),
     "out_of_range", "record 3 (id 's3'), column 'probabilities.up'"),
    (lambda: scored(probabilities=[{"up": p, "down": 1 - p + (i == 1) * 1e-5}
                                   for i, p in enumerate(P)]),
     "out_of_range", "record 1 (id 's1'), column 'probabilities': the probabilities must sum"),
    # a record without scores, or without one of the batch's classes
    (lambda: scored(probability=[0.2, None, 0.5, 1.0]), "missing_field", "record 1"),
    (lambda: scored(probabilities=[{"up": 0.5, "down": 0.5}, None, None, None]),
     "missing_field", "record 1 (id 's1'), column 'probabilities': missing"),
    (lambda: scored(**{"probabilities.up": [0.2, None, 0.5, 1.0], "probabilities.down": P}),
     "wrong_type", "record 1 (id 's1'), column 'probabilities.up'"),
    (lambda: scored(probabilities=[{"up": 0.5, "down": 0.5}] * 3 + [{"up": 1.0}]),
     "wrong_type", "record 3 (id 's3'), column 'probabilities.down'"),
    # a map: unknown class, missing class, a class twice
    (lambda: scored(probabilities=class_map([[("up", 0.5), ("down", 0.5)]] * 3
                                            + [[("up", 0.5), ("flat", 0.5)]])),
     "wrong_type", "record 3 (id 's3'), column 'probabilities.flat': unknown class"),
    (lambda: scored(probabilities=class_map([[("up", 0.5), ("down", 0.5)], [("up", 1.0)]] * 2)),
     "wrong_type", "record 1 (id 's1'), column 'probabilities'"),
    (lambda: scored(probabilities=class_map([[("up", 0.5), ("down", 0.5)]] * 3
                                            + [[("up", 0.5), ("up", 0.5)]])),
     "wrong_type", "record 3 (id 's3'), column 'probabilities.down': missing class"),
    # the form of the batch
    (lambda: scored(probability=P, **{"probabilities.up": P, "probabilities.down": P}),
     "malformed", "not several"),
    (lambda: scored(**{"probabilities.up": [1.0] * 4}), "malformed", "at least 2 classes"),
    (lambda: scored(**{"probabilities.": P}), "malformed", "a class name"),
]  # fmt: skip


@pytest.mark.parametrize("encode,media_type", [(stream, ARROW_STREAM), (parquet, PARQUET)])
async def test_bad_scores_are_refused_naming_column_and_row(daemon, encode, media_type):
    warden, client = daemon
    for make, reason, where in BAD_SCORES:
        before = rejected(warden, reason, "cls")
        resp = await post_cls(client, encode(make()), media_type)
        body = await resp.json()
        assert resp.status == 400, (reason, where, body)
        assert body["error"]["code"] == reason, (where, body)
        assert where in body["error"]["message"], (where, body)
        assert await stored(warden, "cls") == 0, where
        assert rejected(warden, reason, "cls") == before + 1
    # A regression model takes no scores.
    resp = await post(client, encode(table(probability=[0.5] * 5)), media_type)
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "unknown_field", body
    assert "only a classification model" in body["error"]["message"]
    assert await stored(warden) == 0
