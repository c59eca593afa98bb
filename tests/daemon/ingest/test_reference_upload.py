"""Reference data uploaded over the API: every bad body a 4xx storing nothing; a good
one in force (drift verdicts follow it), kept over restarts, removable, sealed."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from mlwarden.daemon.ingest.arrow import ARROW_STREAM, PARQUET
from mlwarden.daemon.ingest.reference_body import CSV
from mlwarden.daemon.profiles.reference import reference_table

from .test_arrow import parquet, stream
from .test_ingest import write_reference

PATH = "/api/models/{}/reference"


def config(reference, extra: str = "") -> str:
    return (
        "[monitoring]\nbucket_seconds = 60\ninterval_seconds = 3600\nmin_window_rows = 100\n"
        f"{extra}\n"
        f'[[models]]\nname = "m"\nreference = "{reference}"\n'
        'drift_methods = ["ks", "chi2"]\n'
        "[models.drift_options.ks]\nthreshold = 0.001\n"
        "[models.drift_options.chi2]\nthreshold = 0.001\n"
        '[[models]]\nname = "cls"\ntask = "classification"\nfeatures = ["x", "kind"]\n'
        'categorical = ["kind"]\n'
        '[[models]]\nname = "open"\n'
    )


def frame(n: int = 2000, seed: int = 3, shift: float = 0.0) -> pd.DataFrame:
    """Data of model ``m``: numeric x (shifted by ``shift``) and y, categorical kind."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n) + shift,
            "y": rng.uniform(size=n),
            "kind": rng.choice(["a", "b", "c"], n),
            "prediction": rng.normal(size=n),
            "label": rng.normal(size=n),
        }
    )


def table(n: int = 50, **columns) -> pa.Table:
    """A good reference table of model ``m``; ``columns`` replace (None: drop) columns."""
    return _with({k: pa.array(v) for k, v in frame(n).items()}, columns)


def scored(n: int = 20, **columns) -> pa.Table:
    """A good reference of the classifier ``cls``: x, kind, prediction, label, probability."""
    rng = np.random.default_rng(5)
    data = {
        "x": pa.array(rng.normal(size=n)),
        "kind": pa.array(rng.choice(["a", "b"], n)),
        "prediction": pa.array(rng.choice(["yes", "no"], n)),
        "label": pa.array(rng.choice(["yes", "no"], n)),
        "probability": pa.array(rng.uniform(size=n)),
    }
    return _with(data, columns)


def _with(data: dict, columns: dict) -> pa.Table:
    """``data`` with ``columns`` put in (arrays, or lists made arrays) or taken out (None)."""
    put = {
        k: v if isinstance(v, pa.Array) else pa.array(v)
        for k, v in columns.items()
        if v is not None
    }
    return pa.table({k: v for k, v in {**data, **put}.items() if columns.get(k, 0) is not None})


def _set(values: np.ndarray | list, row: int, value) -> list:
    out = list(values)
    out[row] = value
    return out


def csv(t: pa.Table) -> bytes:
    return t.to_pandas().to_csv(index=False).encode()


@pytest.fixture
def reference(tmp_path):
    return write_reference(tmp_path)


@pytest.fixture
async def daemon(make_warden, make_client, reference):
    warden = await make_warden(config(reference))
    for name in ("m", "cls", "open"):
        await warden.ingest.model_state(name).ready.wait()
    return warden, await make_client(warden)


async def put(client, model: str, body: bytes, media_type: str = ARROW_STREAM):
    return await client.put(PATH.format(model), data=body, headers={"Content-Type": media_type})


async def stored_row(warden, model: str = "m"):
    t = reference_table
    query = sa.select(t.c.source, t.c.sha256, t.c.params, t.c.upload).where(t.c.model == model)
    async with warden.store.connect() as conn:
        return (await conn.execute(query)).first()


#: (model, table, status, code, what the message names). Bodies in each encoding.
BAD_TABLES = [
    ("m", table(y=None), 400, "missing_feature", "column 'y': missing feature"),
    ("m", table(z=[1.0] * 50), 400, "unknown_feature", "column 'z': unknown column"),
    ("m", table(x=["a"] * 50), 400, "wrong_type", "column 'x': expected a number"),
    ("m", table(x=pa.array([[1]] * 50)), 400, "wrong_type", "column 'x': expected a number"),
    ("m", table(kind=[1.5] * 50), 400, "wrong_type", "column 'kind': expected a string"),
    ("m", table(kind=[True] * 50), 400, "wrong_type", "column 'kind': expected a string"),
    ("m", table(label=["a"] * 50), 400, "wrong_type", "column 'label': expected a number"),
    ("m", table(0), 400, "empty_reference", "the reference has no rows"),
    ("cls", scored(probability=_set(np.full(20, 0.5), 3, 1.5)), 400, "bad_score",
     "row 3, column 'probability': expected a number in [0, 1], got 1.5"),
    ("cls", scored(probability=_set(np.full(20, 0.5), 7, np.nan)), 400, "bad_score",
     "row 7, column 'probability'"),
    ("cls", scored(probability=_set(np.full(20, 0.5), 2, np.inf)), 400, "bad_score",
     "row 2, column 'probability'"),
    ("cls", scored(probability=["0.5"] * 20), 400, "wrong_type",
     "column 'probability': expected probabilities"),
    ("cls", scored(probability=None, **{"probabilities.yes": [0.5] * 20,
                                        "probabilities.no": _set([0.5] * 20, 4, 0.9)}),
     400, "bad_score", "row 4"),
    ("cls", scored(kind=[2.5] * 20), 400, "wrong_type", "column 'kind': expected a string"),
    ("cls", scored(extra=[1] * 20), 400, "unknown_feature", "column 'extra': unknown column"),
]  # fmt: skip


@pytest.mark.parametrize("encode,media_type", [(stream, ARROW_STREAM), (parquet, PARQUET)])
async def test_every_bad_body_is_a_4xx_naming_it_and_stores_nothing(daemon, encode, media_type):
    warden, client = daemon
    before = {name: await stored_row(warden, name) for name in ("m", "cls")}
    prints = {name: warden.ingest.model_state(name).layout.fingerprint for name in ("m", "cls")}
    good = encode(table())
    bodies = [(m, encode(t), s, c, w) for m, t, s, c, w in BAD_TABLES] + [
        ("m", b"", 400, "empty_body", "request body is empty"),
        ("m", good[: len(good) // 2], 400, "malformed", "truncated or corrupt"),
        ("m", b"not a table at all", 400, "malformed", "truncated or corrupt"),
    ]
    for model, body, status, code, where in bodies:
        resp = await put(client, model, body, media_type)
        answer = await resp.json()
        assert resp.status == status, (where, answer)
        assert answer["error"]["code"] == code, (where, answer)
        assert where in answer["error"]["message"], answer
        assert await stored_row(warden, model) == before[model], where
        state = warden.ingest.model_state(model)
        assert state.layout.fingerprint == prints[model] and state.uploaded == ""
    info = await (await client.get(PATH.format("m"))).json()
    assert info["in_force"] == "config" and info["upload"] is None


async def test_csv_bodies_other_media_types_and_unknown_models(daemon):
    warden, client = daemon
    before = await stored_row(warden)
    bad = table(x=pa.array(_set([str(v) for v in np.arange(50.0)], 7, "abc")))
    resp = await put(client, "m", csv(bad), CSV)
    assert resp.status == 400
    message = (await resp.json())["error"]["message"]
    assert "row 7, column 'x': expected a number" in message and "'abc'" in message
    resp = await put(client, "m", csv(table()), "application/json")
    assert resp.status == 415
    assert "application/vnd.apache.arrow.stream" in (await resp.json())["error"]["message"]
    assert (await put(client, "nope", stream(table()))).status == 404
    assert (await client.delete(PATH.format("m"))).status == 404  # nothing uploaded
    assert await stored_row(warden) == before
    resp = await put(client, "m", csv(table()), CSV)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["upload"]["media_type"] == CSV


async def test_oversized_body_is_413_and_stores_nothing(make_warden, make_client, reference):
    warden = await make_warden(config(reference), **{"daemon.max_body_bytes": 20000})
    await warden.ingest.model_state("m").ready.wait()
    client = await make_client(warden)
    before = await stored_row(warden)
    resp = await put(client, "m", parquet(table(2000)), PARQUET)
    assert resp.status == 413
    assert "daemon.max_body_bytes" in (await resp.json())["error"]["message"]
    assert await stored_row(warden) == before


async def test_nan_inf_and_nulls_in_features_are_data(daemon):
    warden, client = daemon
    x = pa.array(_set(_set(_set(np.arange(50.0), 1, np.nan), 2, np.inf), 3, None))
    resp = await put(client, "m", stream(table(x=x, kind=_set(["a"] * 50, 4, None))))
    assert resp.status == 200, await resp.text()
    profile = warden.ingest.model_state("m").reference
    assert profile is not None and profile.rows == 50


async def _traffic(client, n: int, prefix: str, shift: float) -> None:
    data = frame(n, seed=hash(prefix) % 1000, shift=shift).drop(columns=["label"])
    data.insert(0, "id", [f"{prefix}{i}" for i in range(n)])
    t = pa.Table.from_pandas(data, preserve_index=False)
    resp = await client.post(
        "/api/models/m/predictions", data=stream(t), headers={"Content-Type": ARROW_STREAM}
    )
    assert resp.status == 201, await resp.text()


@pytest.mark.both_backends
async def test_an_upload_is_in_force_survives_a_restart_and_delete_reverts(
    make_warden, make_client, reference
):
    text = config(reference)
    warden = await make_warden(text)
    await warden.ingest.model_state("m").ready.wait()
    client = await make_client(warden)
    configured = warden.ingest.model_state("m").layout.fingerprint
    await _traffic(client, 600, "a", shift=3.0)
    assert "x" in (await warden.check_drift("m"))["drifted_features"]
    # The traffic as it is now becomes the reference: x no longer drifts.
    resp = await put(client, "m", parquet(pa.Table.from_pandas(frame(5000, 9, 3.0))), PARQUET)
    info = await resp.json()
    assert resp.status == 200, info
    assert info["in_force"] == "upload" and info["rows"] == 5000
    assert info["features"] == ["x", "y", "kind"]
    assert info["fingerprint"] != configured and info["upload"]["media_type"] == PARQUET
    uploaded = info["fingerprint"]
    await _traffic(client, 600, "b", shift=3.0)
    assert (await warden.check_drift("m"))["drifted_features"] == []
    entries = await (await client.get("/api/audit")).json()
    assert any(e["action"] == "PUT /api/models/{name}/reference" for e in entries["entries"])
    await warden.stop()

    warden = await make_warden(text)  # the same store: the upload is still in force
    state = warden.ingest.model_state("m")
    await state.ready.wait()
    assert state.layout.fingerprint == uploaded
    assert state.reference_status == "ready (uploaded, stored profile)"
    client = await make_client(warden)
    await _traffic(client, 600, "c", shift=3.0)
    assert (await warden.check_drift("m"))["drifted_features"] == []
    resp = await client.delete(PATH.format("m"))
    info = await resp.json()
    assert resp.status == 200, info
    assert info["in_force"] == "config" and info["fingerprint"] == configured
    assert info["upload"] is None
    await _traffic(client, 600, "d", shift=3.0)
    assert "x" in (await warden.check_drift("m"))["drifted_features"]
    assert (await client.delete(PATH.format("m"))).status == 404


async def test_a_model_without_schema_takes_the_uploads_columns(daemon):
    _, client = daemon
    resp = await put(client, "open", stream(table().drop(["label"])))
    info = await resp.json()
    assert resp.status == 200, info
    assert info["in_force"] == "upload" and info["configured"] is None
    assert info["features"] == ["x", "y", "kind"]
    # Its features are now in force: the next upload must have them.
    resp = await put(client, "open", stream(table(y=None)))
    assert resp.status == 400
    assert "column 'y': missing feature" in (await resp.json())["error"]["message"]
    # Removed, the model is back to no reference and no schema.
    info = await (await client.delete(PATH.format("open"))).json()
    assert info["in_force"] == "none" and info["features"] is None and info["rows"] is None
    assert (await client.get(PATH.format("open"))).status == 200


async def test_arrow_and_feather_reference_files(make_warden, tmp_path):
    import pyarrow.feather as feather

    data = pa.Table.from_pandas(frame(500))
    for suffix in (".arrow", ".feather"):
        path = tmp_path / f"reference{suffix}"
        feather.write_feather(data, path)
        warden = await make_warden(config(path).replace('name = "m"', f'name = "m{suffix[1:]}"'))
        state = warden.ingest.model_state(f"m{suffix[1:]}")
        await state.ready.wait()
        assert state.reference is not None and state.reference.rows == 500, state.reference_status
        assert state.layout.features == ("x", "y", "kind")
        await warden.stop()


MARKER = "zebra-7f3a-plaintext"


async def _raw_upload(warden) -> bytes:
    t = reference_table
    raw = sa.type_coerce(t.c.upload, sa.LargeBinary())
    async with warden.store.connect() as conn:
        value = (await conn.execute(sa.select(raw).where(t.c.model == "m"))).scalar()
    assert value is not None
    return bytes(value)


@pytest.mark.both_backends
async def test_the_stored_body_is_sealed_counted_and_rotated(
    make_warden, make_client, reference, tmp_path
):
    from mlwarden.daemon.core.encryption import key_id_of
    from mlwarden.daemon.core.keys import load_keyring, new_key, write_key_file

    key_file = tmp_path / "keys"
    write_key_file(key_file, {"k1": new_key()})
    text = config(reference, f'[encryption]\nenabled = true\nkey_file = "{key_file}"\n')
    warden = await make_warden(text)
    await warden.ingest.model_state("m").ready.wait()
    client = await make_client(warden)
    before = (await warden.at_rest.status())["keys"]["k1"]
    body = stream(table(200, kind=[MARKER] * 200))
    assert MARKER.encode() in body
    resp = await put(client, "m", body)
    assert resp.status == 200, await resp.text()
    raw = await _raw_upload(warden)
    assert MARKER.encode() not in raw and key_id_of(raw) == "k1"
    assert (await stored_row(warden)).upload == body  # opened through the Sealer
    # The body is one more sealed object (the profile row's columns were counted before).
    assert (await warden.at_rest.status())["keys"]["k1"] == before + 1
    ring = load_keyring(str(key_file))
    write_key_file(key_file, {**ring.keys, "k2": new_key()})
    await warden.at_rest.rotate()
    for _ in range(600):
        progress = (await warden.at_rest.status())["rotation"]
        if progress["state"] != "running":
            break
        await asyncio.sleep(0.05)
    assert progress["state"] == "done", progress
    raw = await _raw_upload(warden)
    assert key_id_of(raw) == "k2" and MARKER.encode() not in raw
    status = await warden.at_rest.status()
    assert status["keys"]["k1"] == 0 and status["keys"]["k2"] == before + 1
    await warden.stop()
    write_key_file(key_file, {"k2": load_keyring(str(key_file)).keys["k2"]})
    warden = await make_warden(text)  # k2 alone opens the upload at the next start
    state = warden.ingest.model_state("m")
    await state.ready.wait()
    assert state.uploaded and state.reference_status == "ready (uploaded, stored profile)"
    assert (await stored_row(warden)).upload == body


async def _until(predicate, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


async def test_other_daemons_on_postgresql_follow_an_upload_and_its_removal(
    make_config, make_client, reference, tmp_path, postgres_url
):
    from mlwarden.daemon.warden import Warden

    text = config(reference)
    fast = {"cluster.heartbeat_seconds": 0.3, "cluster.lease_ttl_seconds": 3.0}
    wardens = []
    for name in ("a", "b"):
        overrides = {"daemon.base_path": str(tmp_path / name), "store.url": postgres_url}
        w = Warden(make_config(text, **overrides, **fast, **{"cluster.instance": name}))
        await w.start()
        wardens.append(w)
    a, b = wardens
    try:
        for w in wardens:
            await w.ingest.model_state("m").ready.wait()
        configured = b.ingest.model_state("m").layout.fingerprint
        client_a, client_b = await make_client(a), await make_client(b)
        resp = await put(client_a, "m", parquet(pa.Table.from_pandas(frame(3000, 9, 3.0))), PARQUET)
        info = await resp.json()
        assert resp.status == 200, info
        await _until(lambda: b.ingest.model_state("m").layout.fingerprint == info["fingerprint"])
        state = b.ingest.model_state("m")
        await state.ready.wait()
        assert state.uploaded == info["upload"]["sha256"]
        shown = await (await client_b.get(PATH.format("m"))).json()
        assert shown["in_force"] == "upload" and shown["upload"] == info["upload"]
        # B checks its traffic against the uploaded reference, fitted from the store.
        await _traffic(client_b, 600, "b", shift=3.0)
        assert (await b.check_drift("m"))["drifted_features"] == []
        assert (await client_a.delete(PATH.format("m"))).status == 200
        await _until(lambda: b.ingest.model_state("m").layout.fingerprint == configured)
        await b.ingest.model_state("m").ready.wait()
        assert b.ingest.model_state("m").uploaded == ""
    finally:
        for w in reversed(wardens):
            await w.stop()


async def test_performance_estimation_reads_the_uploaded_reference(daemon):
    warden, client = daemon
    resp = await put(client, "m", stream(table(500, label=None)))
    assert resp.status == 200, await resp.text()
    await _traffic(client, 300, "e", shift=0.0)
    resp = await client.post("/api/models/m/performance-estimate")
    assert resp.status == 409
    message = (await resp.json())["error"]["message"]
    assert "the uploaded reference has no label column 'label'" in message
    resp = await put(client, "m", stream(table(500)))  # with labels now
    assert resp.status == 200, await resp.text()
    await _traffic(client, 300, "f", shift=0.0)
    resp = await client.post("/api/models/m/performance-estimate")
    assert resp.status == 200, await resp.text()
    assert warden.estimation.status("m") == "ready"


async def test_a_feature_keeps_its_kind_whatever_type_carries_it(daemon):
    warden, client = daemon
    # kind is categorical in force (strings in the file): integers stay categories;
    # an all-null y stays numeric.
    t = table(60, kind=pa.array([1, 2, 3] * 20, pa.int32()), y=pa.nulls(60))
    resp = await put(client, "m", parquet(t), PARQUET)
    assert resp.status == 200, await resp.text()
    layout = warden.ingest.model_state("m").layout
    assert "kind" in layout.categorical and "y" in layout.numeric
    assert set(layout.categories[layout.categorical.index("kind")]) == {"1", "2", "3"}


async def test_a_batch_journalled_under_the_previous_reference_does_not_stall_flushes(daemon):
    """A batch acknowledged while the reference changed, journalled under the previous
    layout after the new state's replay: the open bucket still flushes."""
    from mlwarden.daemon.ingest.tables import journal_table, profile_table

    warden, client = daemon
    await _traffic(client, 50, "j", shift=0.0)
    j = journal_table
    async with warden.store.begin() as conn:
        row = (await conn.execute(sa.select(j).where(j.c.model == "m"))).first()
        stale = {c: row._mapping[c] for c in row._mapping if c != "seq"}
        await conn.execute(j.insert(), {**stale, "layout": "the-previous-reference"})
    assert await warden.ingest.ledger.flush(everything=True) == 1
    async with warden.store.connect() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(j))).scalar()
        written = (await conn.execute(sa.select(profile_table.c.rows))).scalars().all()
    assert left == 0 and written == [50]
