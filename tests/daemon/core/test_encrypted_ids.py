"""Prediction and label ids at rest: digested with encryption on (daemon/ingest/ids.py).

Over the real HTTP API, on SQLite and PostgreSQL: the clear ids are nowhere in the
store's bytes, while the label join, the duplicate-id refusal, unknown ids, late labels,
the batch-id retry and the performance metrics answer exactly as with encryption off;
a store with clear ids is rewritten when encryption is turned on (resumably); a
rotation re-wraps the id key without changing it; a lost or altered id key, and turning
encryption off again, stop the start.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from mlwarden.daemon.core.encryption import Sealer, is_row_sealed, key_id_of, set_current_sealer
from mlwarden.daemon.core.keys import load_keyring, new_key, write_key_file
from mlwarden.daemon.core.store import Store
from mlwarden.daemon.ingest import id_migration
from mlwarden.daemon.ingest.batches import BatchRejected
from mlwarden.daemon.ingest.ids import IdDigests
from mlwarden.daemon.ingest.tables import INGEST_SCHEMA
from mlwarden.daemon.warden import Warden
from mlwarden.errors import DecryptionFailed
from tests.daemon.core.test_encryption import _disk_bytes, _postgres_rows
from tests.helpers import store_sql

pytestmark = pytest.mark.both_backends

NOW = time.time()
IDS = [f"customer-{4700 + n}-secret" for n in range(24)]  # "customer-4711-secret" among them
NEEDLE = b"-secret"
DIGEST = re.compile(r"^[A-Za-z0-9+/]{22}$")  # 128 bits, base64 without padding


def _config(key_file: Path, enabled: bool) -> str:
    return f"""
[[models]]
name = "cls"
task = "classification"
features = ["x"]
[[models]]
name = "reg"
features = ["x"]
[encryption]
enabled = {"true" if enabled else "false"}
key_file = "{key_file}"
"""


async def _started(make_config, key_file: Path, enabled: bool, **overrides: str) -> Warden:
    if not key_file.exists():
        write_key_file(key_file, {"k1": new_key()})
    warden = Warden(make_config(_config(key_file, enabled), **overrides), clock=lambda: NOW)
    await warden.start()
    for name in ("cls", "reg"):
        await warden.ingest.model_state(name).ready.wait()
    return warden


def _records(ids: list[str], version: str = "1") -> list[dict[str, Any]]:
    return [
        {"id": i, "version": version, "features": {"x": n / 10}, "prediction": str(n % 2),
         "probability": 0.2 + 0.6 * (n % 2), "latency_ms": 5 + n}
        for n, i in enumerate(ids)
    ]  # fmt: skip


async def _post(client, path: str, body: dict, **headers: str) -> tuple[int, dict]:
    resp = await client.post(path, json=body, headers=headers)
    return resp.status, await resp.json()


async def _scenario(warden: Warden, make_client) -> dict[str, Any]:
    """What a client and the monitor see of predictions and labels with these ids."""
    client = await make_client(warden)
    seen: dict[str, Any] = {}
    cls, reg = "/api/models/cls", "/api/models/reg"
    seen["first"] = await _post(
        client, f"{cls}/predictions", {"records": _records(IDS[:16])}, **{"Mlwarden-Batch-Id": "b1"}
    )
    # The same ids for another model: its own rows, no clash.
    reg_records = [{**r, "prediction": float(n)} for n, r in enumerate(_records(IDS[:16]))]
    for r in reg_records:
        r.pop("probability")
    seen["other model"] = await _post(client, f"{reg}/predictions", {"records": reg_records})
    # A sender's retry of batch b1: acknowledged again, stored once.
    seen["retry"] = await _post(
        client, f"{cls}/predictions", {"records": _records(IDS[:16])}, **{"Mlwarden-Batch-Id": "b1"}
    )
    # A stored id again: 409, naming the id the client sent.
    seen["duplicate"] = await _post(
        client, f"{cls}/predictions", {"records": _records([IDS[20], IDS[11]])}
    )
    # A label before its prediction (late prediction), then its prediction, then again.
    seen["early label"] = await _post(
        client, f"{cls}/labels", {"labels": [{"id": IDS[20], "label": "1"}]}
    )
    seen["late prediction"] = await _post(
        client, f"{cls}/predictions", {"records": _records(IDS[16:22])}
    )
    labels = [{"id": i, "label": str((n // 3) % 2)} for n, i in enumerate(IDS[:22])]
    labels.append({"id": "customer-9999-secret-unknown", "label": "0"})
    seen["labels"] = await _post(client, f"{cls}/labels", {"labels": labels})
    seen["relabel"] = await _post(
        client, f"{cls}/labels", {"labels": [{"id": IDS[0], "label": "1"}]}
    )
    seen["reg labels"] = await _post(
        client,
        f"{reg}/labels",
        {"labels": [{"id": i, "label": n * 1.5} for n, i in enumerate(IDS[:10])]},
    )
    for model in ("cls", "reg"):
        out = await warden.ingest.outcomes(model)
        order = sorted(range(len(out)), key=lambda k: out.id[k])
        seen[f"{model} outcomes"] = [
            (out.id[k], out.version[k], out.prediction[k], out.label[k], out.scores[k])
            for k in order
        ]
        seen[f"{model} metrics"] = await warden.performance.window_metrics(
            model, "1", since=NOW - 3600, until=NOW + 1
        )
    seen["unmatched"] = warden.ingest.unmatched_labels
    return seen


async def _store_bytes(warden: Warden, base: Path) -> bytes:
    """Every byte of the store: the SQLite files under the base path, or PostgreSQL's rows."""
    return b"".join(_disk_bytes(base, skip=base / "none").values()) + await _postgres_rows(
        warden.config.database_url
    )


async def test_ids_are_digested_at_rest_and_everything_answers_as_in_clear(
    make_config, make_client, tmp_path, base_path, new_store_overrides
):
    clear_base = tmp_path / "clear-state"
    clear_base.mkdir()
    shutil.copy(base_path / "mlflow.db", clear_base / "mlflow.db")
    key_file = tmp_path / "keys"
    results, stored = {}, {}
    for enabled in (False, True):
        overrides = {} if enabled else {"daemon.base_path": str(clear_base)}
        if not enabled:
            overrides.update(await new_store_overrides())
        warden = await _started(make_config, key_file, enabled, **overrides)
        try:
            results[enabled] = await _scenario(warden, make_client)
            url = warden.config.database_url
            stored[enabled] = {
                table: {r["id"] for r in await store_sql(url, f"SELECT id FROM {table}")}
                for table in ("prediction_ids", "outcomes")
            }
            raw = "prediction_num, prediction_cls, label_num, label_cls, probability"
            values = await store_sql(url, f"SELECT {raw} FROM outcomes")
            # With encryption on an outcome's raw values are sealed with its batch only.
            assert all(v is None for r in values for v in r.values()) == enabled
        finally:
            await warden.stop()
        hay = await _store_bytes(warden, base_path if enabled else clear_base)
        if enabled:
            assert NEEDLE not in hay  # no clear id anywhere in the store
        else:  # the control: the same search finds them when encryption is off
            assert hay.count(NEEDLE) > 10
    off, on = results[False], results[True]
    assert json.dumps(on, default=str, sort_keys=True) == json.dumps(
        off, default=str, sort_keys=True
    )
    # What the scenario saw, once (the same both ways, as just asserted):
    assert on["first"] == (201, {"model": "cls", "accepted": 16, "profiled": True})
    assert on["retry"][1]["replayed"] is True
    status, body = on["duplicate"]
    assert status == 409 and body["error"]["code"] == "duplicate_id"
    assert f"record 1 (id '{IDS[11]}')" in body["error"]["message"]
    assert on["early label"][1] == {"model": "cls", "accepted": 1, "matched": 0, "unmatched": 1}
    assert on["labels"][1] == {"model": "cls", "accepted": 23, "matched": 22, "unmatched": 1}
    assert [o[0] for o in on["cls outcomes"]] == sorted(IDS[:22])  # clear ids come back
    assert on["cls metrics"]["samples"] == 22 and on["reg metrics"]["samples"] == 10
    # At rest: digests (32 hex characters) with encryption on, the ids as sent without.
    assert stored[False]["prediction_ids"] == set(IDS[:22])
    for table in ("prediction_ids", "outcomes"):
        assert all(DIGEST.match(i) for i in stored[True][table]), table
    # Equal ids of two models do not link: 22 cls ids + 16 reg ids, all distinct.
    assert len(stored[True]["prediction_ids"]) == 22 + 16


def test_the_digest_is_keyed_per_model_and_the_identity_when_off():
    on = IdDigests(b"k" * 32)
    a, b = on.of("cls", ["customer-4711-secret"]), on.of("reg", ["customer-4711-secret"])
    assert a != b and DIGEST.match(a[0]) and on.of("cls", ["customer-4711-secret"]) == a
    assert IdDigests(b"j" * 32).of("cls", ["customer-4711-secret"]) != a
    assert IdDigests().of("cls", ["customer-4711-secret"]) == ["customer-4711-secret"]


async def _label(warden: Warden, ids: list[str]) -> dict[str, Any]:
    labels = [{"id": i, "label": "1"} for i in ids]
    return await warden.ingest.record_labels("cls", {"labels": labels})


class Killed(Exception):
    pass


async def test_turning_encryption_on_rewrites_clear_ids_and_resumes_after_a_kill(
    make_config, tmp_path, monkeypatch
):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=False)
    try:
        for start in range(0, 20, 4):  # five stored batches
            await warden.ingest.record_predictions(
                "cls", {"records": _records(IDS[start : start + 4])}
            )
        assert (await _label(warden, IDS[:6]))["matched"] == 6
    finally:
        await warden.stop()
    url = warden.config.database_url

    # Killed midway: the second chunk's transaction dies after rewriting one batch.
    ring = load_keyring(str(key_file))
    sealer = Sealer(ring)
    set_current_sealer(sealer)
    store = Store(url)
    monkeypatch.setattr(id_migration, "_BATCHES_PER_CHUNK", 2)
    calls, real_of = [0], IdDigests.of

    def dying_of(self, model, ids):
        calls[0] += 1
        if calls[0] == 4:
            raise Killed  # a kill: the transaction never commits
        return real_of(self, model, ids)

    monkeypatch.setattr(IdDigests, "of", dying_of)
    try:
        await store.open([INGEST_SCHEMA])
        with pytest.raises(Killed):
            await id_migration.prepare_ids(store, sealer)
    finally:
        await store.close()
        set_current_sealer(None)
        monkeypatch.undo()
    progress = (await store_sql(url, "SELECT migrated_batch, state FROM ingest_id_key"))[0]
    seqs = [
        r["seq"] for r in await store_sql(url, "SELECT seq FROM prediction_batches ORDER BY seq")
    ]
    assert progress == {"migrated_batch": seqs[1], "state": "migrating"}
    ids = {r["id"] for r in await store_sql(url, "SELECT id FROM prediction_ids")}
    assert len([i for i in ids if DIGEST.match(i)]) == 8  # two batches, the third rolled back

    warden = await _started(make_config, key_file, enabled=True)
    try:
        # Old predictions join their labels; old outcomes keep theirs; old ids are known.
        assert (await _label(warden, IDS[6:20]))["matched"] == 14
        out = await warden.ingest.outcomes("cls")
        assert sorted(out.id) == sorted(IDS[:20]) and len(out) == 20
        with pytest.raises(BatchRejected, match=f"id '{IDS[3]}'.*already stored"):
            await warden.ingest.record_predictions("cls", {"records": _records([IDS[3]])})
    finally:
        await warden.stop()
    progress = (await store_sql(url, "SELECT migrated_batch, state FROM ingest_id_key"))[0]
    assert progress == {"migrated_batch": seqs[-1], "state": "done"}
    for table in ("prediction_ids", "outcomes"):
        rows = await store_sql(url, f"SELECT id FROM {table}")
        assert rows and all(DIGEST.match(r["id"]) for r in rows), table
    outcome = (await store_sql(url, "SELECT label_cls, sealed, sealed_key FROM outcomes"))[0]
    assert outcome["label_cls"] is None and outcome["sealed"] is None
    keys = await store_sql(url, "SELECT seq, key, sealed FROM outcome_keys")
    assert outcome["sealed_key"] in {k["seq"] for k in keys}  # one data key per chunk
    assert all(key_id_of(bytes(k["key"])) == "k1" for k in keys)
    assert all(is_row_sealed(bytes(k["sealed"])) for k in keys)  # the chunk's outcomes
    for row in await store_sql(url, "SELECT data FROM prediction_batches"):
        assert key_id_of(bytes(row["data"])) == "k1"  # sealed on the way


async def test_rotation_rewraps_the_id_key_and_joins_survive_the_old_key(make_config, tmp_path):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=True)
    url = warden.config.database_url
    try:
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[:8])})
        assert (await _label(warden, IDS[:4]))["matched"] == 4
        before = await store_sql(url, "SELECT model, id FROM prediction_ids ORDER BY id")
        keys = {"k1": load_keyring(str(key_file)).keys["k1"], "k2": new_key()}
        write_key_file(key_file, keys)
        await warden.at_rest.rotate()
        while warden.at_rest.rotation.progress.state == "running":
            await asyncio.sleep(0.05)
        assert warden.at_rest.rotation.progress.state == "done"
        status = await warden.at_rest.status()
        assert status["keys"]["k1"] == 0 and status["keys"]["k2"] > 0
    finally:
        await warden.stop()
    (row,) = await store_sql(url, "SELECT key FROM ingest_id_key")
    assert key_id_of(bytes(row["key"])) == "k2"
    write_key_file(key_file, {"k2": keys["k2"]})  # the old key removed
    warden = await _started(make_config, key_file, enabled=True)
    try:
        assert (await _label(warden, IDS[4:8]))["matched"] == 4  # same digests as before
        assert sorted((await warden.ingest.outcomes("cls")).id) == sorted(IDS[:8])
    finally:
        await warden.stop()
    assert await store_sql(url, "SELECT model, id FROM prediction_ids ORDER BY id") == before


async def _refused(make_config, key_file: Path, enabled: bool, match: str) -> None:
    warden = Warden(make_config(_config(key_file, enabled)), clock=lambda: NOW)
    try:
        with pytest.raises(DecryptionFailed, match=match):
            await warden.start()
    finally:
        await warden.stop()


async def test_a_lost_or_altered_id_key_and_encryption_off_again_stop_the_start(
    make_config, tmp_path
):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=True)
    url = warden.config.database_url
    try:
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[:4])})
        assert (await _label(warden, IDS[:4]))["matched"] == 4
    finally:
        await warden.stop()
    # Encryption off again: the sealed rows, the id key among them, need the ring.
    await _refused(make_config, key_file, False, r"cannot decrypt .*encryption is not enabled")
    (saved,) = await store_sql(url, "SELECT * FROM ingest_id_key")
    key = bytearray(saved["key"])
    key[-3] ^= 0x01
    await store_sql(url, "UPDATE ingest_id_key SET key = :k", {"k": bytes(key)})
    await _refused(
        make_config, key_file, True,
        r"cannot decrypt the id key \(ingest_id_key row name='ids'\): its authentication tag",
    )  # fmt: skip
    await store_sql(url, "DELETE FROM ingest_id_key")
    await _refused(
        make_config, key_file, True,
        r"cannot decrypt the id key .*missing, but 4 stored outcomes hold ids digested",
    )  # fmt: skip
    # Nothing was changed by the refusals: the key put back, the store starts and joins.
    await store_sql(url, "INSERT INTO ingest_id_key VALUES (:name, :key, :created_at, "
                    ":migrated_batch, :state)", saved)  # fmt: skip
    warden = await _started(make_config, key_file, enabled=True)
    try:
        assert sorted((await warden.ingest.outcomes("cls")).id) == sorted(IDS[:4])
    finally:
        await warden.stop()
