"""Ingest: validation of every bad input (whole batch refused), outcomes, durability."""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pandas as pd
import pytest

from mlwarden.daemon.warden import Warden

#: The store-level tests run on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_backends

NOW = time.time()


@pytest.fixture
def reference(tmp_path):
    return write_reference(tmp_path)


def write_reference(tmp_path):
    """A Parquet reference: numeric x and y, categorical kind, prediction and label."""
    rng = np.random.default_rng(1)
    n = 4000
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.uniform(size=n),
            "kind": rng.choice(["a", "b", "c"], n),
            "prediction": rng.normal(size=n),
            "label": rng.normal(size=n),
        }
    )
    path = tmp_path / "reference.parquet"
    frame.to_parquet(path)
    return path


def config(reference, extra: str = "") -> str:
    return (
        f'[monitoring]\nbucket_seconds = 60\n{extra}\n[[models]]\nname = "m"\n'
        f'reference = "{reference}"\n'
        '[[models]]\nname = "open"\n'
        '[[models]]\nname = "cls"\ntask = "classification"\nfeatures = ["x", "kind"]\n'
        'categorical = ["kind"]\n'
    )


def records(n: int, start: int = 0, **overrides):
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        rec = {
            "id": f"r{i}",
            "features": {"x": float(rng.normal()), "y": float(rng.uniform()), "kind": "a"},
            "prediction": float(rng.normal()),
        }
        rec.update(overrides)
        out.append(rec)
    return out


async def ready(warden: Warden, model: str = "m"):
    ingest = warden.ingest
    await ingest.model_state(model).ready.wait()
    return ingest


def rejected(warden: Warden, reason: str, model: str = "m") -> float:
    value = warden.metrics.registry.get_sample_value(
        "mlwarden_ingest_rejected_total", {"model": model, "reason": reason}
    )
    return value or 0.0


async def stored(warden: Warden, model: str = "m") -> int:
    return await warden.ingest.count_predictions(model)


def _bad(recs, index, path, value):
    target = recs[index]
    *parents, last = path
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return recs


BAD_RECORDS = [
    ("unknown_feature", lambda r: _bad(r, 2, ["features", "z"], 1.0), "features.z"),
    ("missing_feature", lambda r: _bad(r, 2, ["features", "y"], KeyError), "features.y"),
    ("wrong_type", lambda r: _bad(r, 2, ["features", "x"], "1.5"), "features.x"),
    ("wrong_type", lambda r: _bad(r, 2, ["features", "x"], True), "features.x"),
    ("wrong_type", lambda r: _bad(r, 2, ["features", "kind"], 1.5), "features.kind"),
    ("wrong_type", lambda r: _bad(r, 2, ["features", "kind"], ["a"]), "features.kind"),
    ("duplicate_id", lambda r: _bad(r, 2, ["id"], "r0"), "'id'"),
    ("wrong_type", lambda r: _bad(r, 2, ["id"], 1.5), "'id'"),
    ("wrong_type", lambda r: _bad(r, 2, ["id"], ""), "'id'"),
    ("bad_timestamp", lambda r: _bad(r, 2, ["ts"], "yesterday"), "'ts'"),
    ("bad_timestamp", lambda r: _bad(r, 2, ["ts"], NOW + 86400), "'ts'"),
    ("bad_timestamp", lambda r: _bad(r, 2, ["ts"], NOW - 90 * 86400), "'ts'"),
    ("bad_timestamp", lambda r: _bad(r, 2, ["ts"], True), "'ts'"),
    ("wrong_type", lambda r: _bad(r, 2, ["prediction"], "up"), "prediction"),
    ("missing_field", lambda r: _bad(r, 2, ["prediction"], None), "prediction"),
    ("wrong_type", lambda r: _bad(r, 2, ["version"], 3), "version"),
    ("wrong_type", lambda r: _bad(r, 2, ["latency_ms"], -1), "latency_ms"),
    ("wrong_type", lambda r: _bad(r, 2, ["error"], "no"), "error"),
    ("unknown_field", lambda r: _bad(r, 2, ["extra"], 1), "records[2]"),
    ("missing_field", lambda r: _bad(r, 2, ["features"], KeyError), "records[2]"),
    ("malformed", lambda r: _bad(r, 2, ["features"], [1, 2]), "features"),
]


async def test_one_bad_record_rejects_the_whole_batch(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    await ready(warden)
    client = await make_client(warden)
    for reason, spoil, where in BAD_RECORDS:
        before = rejected(warden, reason)
        batch = spoil(records(5))
        resp = await client.post("/api/models/m/predictions", json={"records": batch})
        body = await resp.json()
        assert resp.status == 400, (reason, where, body)
        assert body["error"]["code"] == reason, (where, body)
        message = body["error"]["message"]
        assert where in message, message
        if "records[" not in where:
            assert "record 2" in message, message
        assert await stored(warden) == 0, where
        assert rejected(warden, reason) == before + 1
    # Nothing half-stored: the same batch, unspoilt, is accepted in full.
    resp = await client.post("/api/models/m/predictions", json={"records": records(5)})
    assert resp.status == 201, await resp.text()
    assert await stored(warden) == 5


BAD_BATCHES = [
    ({"records": []}, "empty_batch"),
    ({"columns": {"id": [], "features": {"x": [], "y": [], "kind": []}}}, "empty_batch"),
    ({}, "malformed"),
    ({"records": [], "columns": {}}, "malformed"),
    ({"records": {"id": 1}}, "malformed"),
    ({"records": [1, 2]}, "malformed"),
    ({"columns": {"id": ["a", "b"], "features": {"x": [1.0], "y": [1, 2], "kind": ["a", "b"]}}},
     "length_mismatch"),
    ({"columns": {"id": ["a"], "features": {"x": [1.0], "y": [1], "kind": ["a"]},
                  "prediction": [1, 2]}}, "length_mismatch"),
    ({"columns": {"id": ["a"], "features": {"x": [1.0], "y": [1]}}}, "missing_feature"),
    ({"columns": {"id": ["a"], "features": {"x": [1.0], "y": [1], "kind": ["a"], "q": [1]}}},
     "unknown_feature"),
    ({"columns": {"id": ["a"], "features": {"x": [1.0], "y": [1], "kind": ["a"]}, "z": [1]}},
     "unknown_field"),
    ({"columns": {"id": ["a", "a"], "features": {"x": [1, 2], "y": [1, 2], "kind": ["a", "b"]},
                  "prediction": [1, 2]}}, "duplicate_id"),
    ({"columns": {"id": ["a"], "features": {"x": ["1"], "y": [1], "kind": ["a"]},
                  "prediction": [1]}}, "wrong_type"),
]  # fmt: skip


async def test_bad_batches(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    await ready(warden)
    client = await make_client(warden)
    for payload, reason in BAD_BATCHES:
        before = rejected(warden, reason)
        resp = await client.post("/api/models/m/predictions", json=payload)
        body = await resp.json()
        assert resp.status == 400, (payload, body)
        assert body["error"]["code"] == reason, (payload, body)
        assert await stored(warden) == 0
        assert rejected(warden, reason) == before + 1


async def test_batch_over_the_limit_is_413(make_warden, make_client, reference):
    warden = await make_warden(config(reference, "max_batch_records = 3"))
    await ready(warden)
    client = await make_client(warden)
    resp = await client.post("/api/models/m/predictions", json={"records": records(4)})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "batch_too_large"


async def test_unknown_model_and_bad_json(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    client = await make_client(warden)
    resp = await client.post("/api/models/nope/predictions", json={"records": records(1)})
    assert resp.status == 404
    assert "nope" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/models/nope/labels", json={"labels": []})
    assert resp.status == 404
    resp = await client.post("/api/models/m/predictions", data=b"{not json")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"


async def test_duplicate_against_stored_ids_is_409_and_stores_nothing(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    await ingest.record_predictions("m", {"records": records(3)})
    batch = records(3, start=2)  # r2 is stored already, r3 and r4 are new
    with pytest.raises(Exception) as info:
        await ingest.record_predictions("m", {"records": batch})
    assert info.value.status == 409 and "'r2'" in str(info.value)
    assert await stored(warden) == 3
    assert rejected(warden, "duplicate_id") == 1


async def test_nan_inf_and_null_are_data(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    batch = records(6)
    batch[0]["features"]["x"] = None
    batch[1]["features"]["x"] = math.nan
    batch[2]["features"]["x"] = math.inf
    batch[3]["features"]["x"] = -math.inf
    batch[4]["features"]["kind"] = None
    batch[5]["features"]["kind"] = "never-seen"
    result = await ingest.record_predictions("m", {"records": batch})
    assert result["accepted"] == 6
    profile = await ingest.window("m", NOW - 3600, NOW + 3600)
    i = profile.layout.numeric.index("x")
    assert (profile.nulls[i], profile.nans[i], profile.infs[i], profile.count[i]) == (1, 1, 2, 2)
    c = profile.layout.categorical.index("kind")
    assert profile.cat_nulls[c] == 1 and profile.cat_unseen[c] == 1
    assert profile.cat_counts[c].sum() == 5  # the unseen one is counted under __other__


async def test_columnar_and_record_forms_build_the_same_profile(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    batch = records(50)
    await ingest.record_predictions("m", {"records": batch})
    columns = {
        "id": [f"c{i}" for i in range(50)],
        "features": {k: [r["features"][k] for r in batch] for k in ("x", "y", "kind")},
        "prediction": [r["prediction"] for r in batch],
    }
    await ingest.record_predictions("m", {"columns": columns})
    profile = await ingest.window("m", NOW - 3600, NOW + 3600)
    assert profile.rows == 100
    assert (profile.hist % 2 == 0).all()  # every value twice
    x = np.array([r["features"]["x"] for r in batch])
    i = profile.layout.numeric.index("x")
    assert profile.mean[i] == pytest.approx(x.mean(), rel=1e-12)
    assert profile.m2[i] / (profile.count[i] - 1) == pytest.approx(
        np.var(np.concatenate([x, x]), ddof=1), rel=1e-10
    )


async def test_labels_join_by_id_and_outcomes_filter(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    await ingest.record_predictions(
        "m", {"records": records(3, version="1.0.0", ts=NOW - 100, latency_ms=20)}
    )
    await ingest.record_predictions("m", {"records": records(2, start=10, version="2.0.0")})
    with pytest.raises(Exception) as info:
        await ingest.record_labels(
            "m", {"labels": [{"id": "r0", "label": 1}, {"id": "r0", "label": 2}]}
        )
    assert info.value.code == "duplicate_id"
    with pytest.raises(Exception) as info:
        await ingest.record_labels("m", {"labels": [{"id": "r0", "label": "high"}]})
    assert info.value.code == "wrong_type"
    with pytest.raises(Exception) as info:
        await ingest.record_labels("m", {"labels": [{"id": "r0"}]})
    assert info.value.code == "malformed"
    assert len(await ingest.outcomes("m")) == 0
    result = await ingest.record_labels(
        "m",
        {
            "labels": [
                {"id": "r0", "label": 1.5},
                {"id": "r10", "label": 2},
                {"id": "zz", "label": 0},
            ]
        },
    )
    assert result == {"accepted": 3, "matched": 2, "unmatched": 1}
    everything = await ingest.outcomes("m")
    assert list(everything.id) == ["r0", "r10"]
    v1 = await ingest.outcomes("m", version="1.0.0")
    assert list(v1.label) == [1.5] and v1.latency[0] == pytest.approx(0.02)
    assert v1.ts[0] == pytest.approx(NOW - 100) and not v1.error[0]
    assert len(await ingest.outcomes("m", since=NOW - 50)) == 1
    assert len(await ingest.outcomes("m", until=NOW - 50)) == 1
    # A late correction replaces the label.
    await ingest.record_labels("m", {"labels": [{"id": "r0", "label": 3.0}]})
    assert list((await ingest.outcomes("m", version="1.0.0")).label) == [3.0]
    assert warden.metrics.registry.get_sample_value("mlwarden_labels_total", {"model": "m"}) == 4


@pytest.mark.parametrize("workers", [0, 1])  # in threads, and in a worker process
async def test_classification_and_open_schema_models(make_warden, reference, workers):
    warden = await make_warden(config(reference, f"ingest_workers = {workers}"))
    ingest = await ready(warden, "cls")
    await ready(warden, "open")
    batch = [
        {"id": 1, "features": {"x": 1.0, "kind": "a"}, "prediction": "up"},
        {"id": 2, "features": {"x": 2.0, "kind": 7}, "prediction": 1, "error": False},
        {"id": 3, "features": {"x": 2.0, "kind": "b"}, "prediction": None, "error": True},
    ]
    assert (await ingest.record_predictions("cls", {"records": batch}))["profiled"]
    await ingest.record_labels(
        "cls", {"labels": [{"id": 1, "label": "down"}, {"id": 3, "label": 1}]}
    )
    out = await ingest.outcomes("cls")
    assert list(out.prediction) == ["up", None] and list(out.label) == ["down", "1"]
    assert list(out.error) == [False, True]
    # No reference and no features: anything goes in "features", nothing is profiled.
    result = await ingest.record_predictions(
        "open", {"records": [{"id": "a", "features": {"anything": 1}, "prediction": 0.5}]}
    )
    assert result == {"accepted": 1, "profiled": False}
    assert await ingest.count_predictions("open") == 1
    # Health says the same (it said profiled for every model: a layout is never None).
    models = (await ingest.health())["models"]
    assert models["open"]["profiled"] is False and models["cls"]["profiled"] is True


async def test_operator_role_required(make_warden, make_client, reference):
    viewer, operator = "viewer-token", "operator-token"
    tokens = "".join(
        f'[[auth.tokens]]\nname = "{t}"\nsha256 = "{hashlib.sha256(t.encode()).hexdigest()}"\n'
        f'role = "{role}"\n'
        for t, role in ((viewer, "viewer"), (operator, "operator"))
    )
    warden = await make_warden(tokens + config(reference))
    await ready(warden)
    client = await make_client(warden)
    body = {"records": records(2)}
    resp = await client.post("/api/models/m/predictions", json=body)
    assert resp.status == 401
    resp = await client.post(
        "/api/models/m/predictions", json=body, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert resp.status == 403
    resp = await client.post(
        "/api/models/m/predictions", json=body, headers={"Authorization": f"Bearer {operator}"}
    )
    assert resp.status == 201
    assert await stored(warden) == 2


async def test_acknowledged_batches_survive_a_restart_without_flush(make_config, reference):
    config_obj = make_config(config(reference))
    async with Warden(config_obj) as first:
        ingest = await ready(first)
        await ingest.record_predictions("m", {"records": records(40)})
        before = await ingest.window("m", NOW - 3600, NOW + 3600)
        assert before.rows == 40
        # Stop without flushing: the open bucket lives only in the journal now.
    async with Warden(config_obj) as second:
        ingest = await ready(second)
        assert ingest.model_state("m").reference_status == "ready (stored profile)"
        after = await ingest.window("m", NOW - 3600, NOW + 3600)
        assert after.rows == 40
        np.testing.assert_array_equal(after.hist, before.hist)
        np.testing.assert_allclose(after.mean, before.mean, rtol=1e-12)
        # Flushing writes the bucket and empties the journal; the window is unchanged.
        assert await ingest.ledger.flush(everything=True) == 1
        again = await ingest.window("m", NOW - 3600, NOW + 3600)
        np.testing.assert_array_equal(again.hist, before.hist)
        assert await ingest.count_predictions("m") == 40


async def test_changed_reference_is_rebuilt(make_config, reference, monkeypatch):
    import mlwarden.daemon.ingest.startup as startup

    config_obj = make_config(config(reference))
    async with Warden(config_obj) as first:
        await ready(first)
        assert first.ingest.model_state("m").reference_status == "ready (built)"
    frame = pd.read_parquet(reference)
    frame["x"] = frame["x"] + 10
    frame.to_parquet(reference)
    hashed = []
    sha256 = startup.source_sha256
    monkeypatch.setattr(
        startup, "source_sha256", lambda source: hashed.append(source) or sha256(source)
    )
    async with Warden(config_obj) as second:
        state = (await ready(second)).model_state("m")
        assert state.reference_status == "ready (built)"
        assert state.layout.edges[state.layout.numeric.index("x")][0] > 5
    assert hashed == [str(reference)]  # once: the hash that found the change is kept


async def test_concurrent_batches_share_commits_and_duplicates_lose(make_warden, reference):
    import asyncio

    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    batches = [records(50, start=100 * b) for b in range(12)]
    twins = [records(5, start=5000), records(5, start=5003)]  # r5003 and r5004 in both
    results = await asyncio.gather(
        *(ingest.record_predictions("m", {"records": b}) for b in (*batches, *twins)),
        return_exceptions=True,
    )
    assert all(r == {"accepted": 50, "profiled": True} for r in results[:12])
    outcome = results[12:]
    failed = [r for r in outcome if isinstance(r, Exception)]
    assert len(failed) == 1 and failed[0].code == "duplicate_id" and failed[0].status == 409
    assert await stored(warden) == 600 + 5
    profile = await ingest.window("m", NOW - 3600, NOW + 3600)
    assert profile.rows == 605


async def test_nan_and_infinity_literals_over_http(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    await ready(warden)
    client = await make_client(warden)
    body = (
        b'{"records": [{"id": "a", "features": {"x": NaN, "y": Infinity, "kind": "a"},'
        b' "prediction": 1.0}, {"id": "b", "features": {"kind": "b", "y": 0.5, "x": -Infinity},'
        b' "prediction": 2.0}]}'
    )
    resp = await client.post(
        "/api/models/m/predictions", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 201, await resp.text()
    profile = await warden.ingest.window("m", NOW - 3600, NOW + 3600)
    x, y = profile.layout.numeric.index("x"), profile.layout.numeric.index("y")
    assert (profile.nans[x], profile.infs[x], profile.infs[y], profile.count[y]) == (1, 1, 1, 1)


async def test_records_in_different_key_orders_build_one_profile(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    batch = records(20)
    mixed = records(20)
    for r in mixed[::2]:  # every other record lists its features in reverse order
        r["features"] = dict(reversed(list(r["features"].items())))
        r["id"] = "m" + r["id"]
    for r in mixed[1::2]:
        r["id"] = "m" + r["id"]
    await ingest.record_predictions("m", {"records": batch})
    await ingest.record_predictions("m", {"records": mixed})
    profile = await ingest.window("m", NOW - 3600, NOW + 3600)
    assert (profile.hist % 2 == 0).all()  # every value twice, whatever the key order
    assert (profile.cat_counts % 2 == 0).all()
    spoilt = records(4, start=100)
    spoilt[3]["features"] = dict(reversed(list(spoilt[3]["features"].items())))
    spoilt[3]["features"]["y"] = False
    with pytest.raises(Exception) as info:
        await ingest.record_predictions("m", {"records": spoilt})
    assert info.value.code == "wrong_type"
    assert "record 3" in str(info.value) and "features.y" in str(info.value)


async def test_label_ttl_purge_removes_predictions_and_their_ids(make_warden, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    await ingest.record_predictions("m", {"records": records(3, ts=NOW - 7200)})
    await ingest.record_predictions("m", {"records": records(2, start=10)})
    assert await ingest.count_predictions("m", since=NOW - 7300) == 5
    assert await ingest.count_predictions("m", since=NOW - 3600) == 2
    # The default label TTL is 24 h: a purge an hour past it expires the first batch only.
    await ingest.ledger.purge(NOW - 7200 + 25 * 3600)
    result = await ingest.record_labels(
        "m", {"labels": [{"id": "r0", "label": 1.0}, {"id": "r10", "label": 2.0}]}
    )
    assert result == {"accepted": 2, "matched": 1, "unmatched": 1}
    assert list((await ingest.outcomes("m")).id) == ["r10"]
    # Its ids are free again; the second batch's are still taken.
    await ingest.record_predictions("m", {"records": records(1, ts=NOW)})
    with pytest.raises(Exception) as info:
        await ingest.record_predictions("m", {"records": records(1, start=11)})
    assert info.value.status == 409


async def test_predictions_stored_one_row_each_move_to_batches(make_config, reference):
    """A database written by the first schema (one row per prediction) is migrated."""
    import sqlalchemy as sa

    from mlwarden.daemon.core.store import Schema, Store
    from mlwarden.daemon.ingest import tables as ingest_tables

    config_obj = make_config(config(reference))
    legacy = ingest_tables.INGEST_SCHEMA.steps[0]
    store = Store(config_obj.database_url)
    await store.open([Schema("ingest", [legacy])])
    table = ingest_tables._legacy_predictions_table
    rows = [
        {"model": "m", "id": f"r{i}", "version": "1.0.0", "ts": NOW - 60 + i,
         "prediction_num": float(i), "prediction_cls": None,
         "latency": 0.01 if i % 2 else None, "error": False}
        for i in range(1500)
    ] + [
        {"model": "cls", "id": "1", "version": "2", "ts": NOW, "prediction_num": None,
         "prediction_cls": "up", "latency": None, "error": False}
    ]  # fmt: skip
    async with store.begin() as conn:
        await conn.execute(table.insert(), rows)
    await store.close()
    async with Warden(config_obj) as warden:
        ingest = await ready(warden)
        await ready(warden, "cls")
        assert (await warden.store.schema_versions())["ingest"] == len(
            ingest_tables.INGEST_SCHEMA.steps
        )
        async with warden.store.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "predictions" not in names
        assert await ingest.count_predictions("m", since=NOW - 3600) == 1500
        result = await ingest.record_labels(
            "m", {"labels": [{"id": "r1", "label": 5.0}, {"id": "r1498", "label": 6.0}]}
        )
        assert result["matched"] == 2
        out = await ingest.outcomes("m")
        assert list(out.id) == ["r1", "r1498"] and list(out.prediction) == [1.0, 1498.0]
        assert out.latency[0] == pytest.approx(0.01) and np.isnan(out.latency[1])
        await ingest.record_labels("cls", {"labels": [{"id": "1", "label": "down"}]})
        assert list((await ingest.outcomes("cls")).prediction) == ["up"]
        with pytest.raises(Exception) as info:
            await ingest.record_predictions("m", {"records": records(1, start=7)})
        assert info.value.status == 409
