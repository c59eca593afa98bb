"""Sealed outcomes, one data key per label batch (daemon/ingest/ids.py).

On SQLite and PostgreSQL, with encryption on: a label batch's outcomes are sealed
together in one ``outcome_keys`` row under its data key (itself sealed by the key ring)
and nothing of them is in clear in the store; a flipped byte, another batch's outcomes
copied in, and a row pointed at another batch all fail, named by table, column and row
key, and audited; a rotation re-wraps the outcome keys and the rows sealed one envelope
each by the release before step 8, after which the old key can be retired. Stores of
the releases before (each outcome sealed in its own row: one envelope each, step 7, or
under its batch's key, step 8) migrate and their old rows read back as before, side by
side with new ones.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest

from mlwarden.daemon.core.encryption import (
    Sealer,
    is_row_sealed,
    is_sealed,
    key_id_of,
    set_current_sealer,
)
from mlwarden.daemon.core.keys import load_keyring, new_key, write_key_file
from mlwarden.daemon.ingest.batches import BatchRejected
from mlwarden.daemon.ingest.ids import RAW_OUTCOME, RowCipher
from mlwarden.daemon.ingest.tables import INGEST_SCHEMA
from mlwarden.daemon.warden import Warden
from mlwarden.errors import DecryptionFailed
from tests.daemon.core.test_encrypted_ids import IDS, NEEDLE, NOW, _records, _started, _store_bytes
from tests.helpers import store_sql

pytestmark = pytest.mark.both_backends

LABEL = "churned-marker"  # a label value that must not be in clear on disk


async def _label(warden: Warden, ids: list[str], label: str = LABEL) -> int:
    body = {"labels": [{"id": i, "label": label} for i in ids]}
    return int((await warden.ingest.record_labels("cls", body))["matched"])


async def _seen(warden: Warden) -> list[tuple[str, str, object]]:
    out = await warden.ingest.outcomes("cls")
    return sorted(zip(out.id, out.label, out.prediction, strict=True))


async def _labelled(make_config, key_file: Path, batches: list[list[str]]) -> Warden:
    """A started encrypted daemon with predictions for these ids, labelled batch by batch."""
    warden = await _started(make_config, key_file, enabled=True)
    ids = [i for batch in batches for i in batch]
    await warden.ingest.record_predictions("cls", {"records": _records(ids)})
    for batch in batches:
        assert await _label(warden, batch) == len(batch)
    return warden


async def _rotate(warden: Warden, key_file: Path, new_id: str) -> dict:
    keys = dict(load_keyring(str(key_file)).keys)
    keys[new_id] = new_key()
    write_key_file(key_file, keys)
    await warden.at_rest.rotate()
    while warden.at_rest.rotation.progress.state == "running":
        await asyncio.sleep(0.05)
    assert warden.at_rest.rotation.progress.state == "done"
    return keys


async def test_a_label_batch_shares_one_sealed_data_key_and_nothing_is_clear(
    make_config, tmp_path, base_path
):
    key_file = tmp_path / "keys"
    warden = await _labelled(make_config, key_file, [IDS[:8], IDS[8:12]])
    url = warden.config.database_url
    try:
        seen = await _seen(warden)
        assert [s[0] for s in seen] == sorted(IDS[:12]) and {s[1] for s in seen} == {LABEL}
        # Relabelled: the earlier batch's key still seals the other seven.
        assert await _label(warden, IDS[:1], "other") == 1
        status = await warden.at_rest.status()
    finally:
        await warden.stop()
    keys = await store_sql(url, "SELECT seq, model, key FROM outcome_keys ORDER BY seq")
    assert len(keys) == 3 and all(k["model"] == "cls" for k in keys)
    assert all(key_id_of(bytes(k["key"])) == "k1" for k in keys)  # wrapped by the ring
    rows = await store_sql(url, "SELECT sealed, sealed_key, label_cls FROM outcomes")
    by_key: dict[int, int] = {}
    for row in rows:
        assert row["sealed"] is None and row["label_cls"] is None
        by_key[row["sealed_key"]] = by_key.get(row["sealed_key"], 0) + 1
    assert sorted(by_key.values()) == [1, 4, 7]
    # Each batch's outcomes sealed together in its key's row (the relabelled one too).
    batches = await store_sql(url, "SELECT sealed FROM outcome_keys")
    assert all(is_row_sealed(bytes(b["sealed"])) for b in batches)
    # The status counts the data keys (and the id key), not each outcome.
    assert status["keys"] == {"k1": status["keys"]["k1"]} and status["clear_objects"] == 0
    hay = await _store_bytes(warden, base_path)
    assert NEEDLE not in hay and LABEL.encode() not in hay

    # Unused keys are purged with the outcomes that used them.
    warden = await _started(make_config, key_file, enabled=True)
    try:
        await store_sql(url, f"DELETE FROM outcomes WHERE sealed_key = {keys[1]['seq']}")
        await warden.ingest.ledger.purge(NOW)
    finally:
        await warden.stop()
    left = [k["seq"] for k in await store_sql(url, "SELECT seq FROM outcome_keys ORDER BY seq")]
    assert left == [keys[0]["seq"], keys[2]["seq"]]


async def _refused_read(warden: Warden, what: str, reason: str) -> None:
    with pytest.raises(DecryptionFailed) as caught:
        await warden.ingest.outcomes("cls")
    assert caught.value.what == what
    assert reason in str(caught.value)
    for _ in range(50):
        entries = await warden.audit.entries(limit=20)
        if any(e["action"] == "decryption_failed" and e["target"] == what for e in entries):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no audit entry for {what}")


TAG = "authentication tag does not match"


async def test_a_tampered_outcome_is_refused_by_name_and_audited(make_config, tmp_path):
    key_file = tmp_path / "keys"
    warden = await _labelled(make_config, key_file, [IDS[:3], IDS[3:6]])
    url = warden.config.database_url
    try:
        before = await _seen(warden)
        rows = await store_sql(url, "SELECT id, sealed_key FROM outcomes ORDER BY id")
        a, b = rows[0], next(r for r in rows if r["sealed_key"] != rows[0]["sealed_key"])
        batches = {
            k["seq"]: bytes(k["sealed"])
            for k in await store_sql(url, "SELECT seq, sealed FROM outcome_keys")
        }
        put = "UPDATE outcome_keys SET sealed = :s WHERE seq = :k"
        batch = f"outcome_keys.sealed row (seq={a['sealed_key']})"

        flipped = bytearray(batches[a["sealed_key"]])
        flipped[-5] ^= 0x01
        for sealed in (bytes(flipped), batches[b["sealed_key"]]):  # another batch's copied in
            await store_sql(url, put, {"s": sealed, "k": a["sealed_key"]})
            await _refused_read(warden, batch, TAG)
        await store_sql(url, put, {"s": batches[a["sealed_key"]], "k": a["sealed_key"]})
        # A row pointed at another batch (or whose id was changed) is not in it.
        point = "UPDATE outcomes SET sealed_key = :k WHERE id = :i"
        await store_sql(url, point, {"k": b["sealed_key"], "i": a["id"]})
        named = f"outcomes.sealed row (model='cls', id='{a['id']}')"
        await _refused_read(warden, named, "not among the outcomes sealed with its data key")
        # Put back, the read is whole again.
        await store_sql(url, point, {"k": a["sealed_key"], "i": a["id"]})
        assert await _seen(warden) == before
        # An altered data key: its row named, as for any sealed column.
        (key,) = await store_sql(url, f"SELECT key FROM outcome_keys WHERE seq = {a['sealed_key']}")
        altered = bytearray(key["key"])
        altered[-2] ^= 0x01
        await store_sql(
            url, "UPDATE outcome_keys SET key = :k WHERE seq = :s",
            {"k": bytes(altered), "s": a["sealed_key"]},
        )  # fmt: skip
        with pytest.raises(DecryptionFailed, match="authentication tag") as caught:
            await warden.ingest.outcomes("cls")
        named = await warden.at_rest.name_stored_row(caught.value)
        assert named.what == f"outcome_keys.key row (seq={a['sealed_key']})"
    finally:
        await warden.stop()


async def _outcome_values(url: str, sealer: Sealer) -> dict[int, tuple[RowCipher, dict]]:
    """seq -> (data key, stored id -> raw values) of every label batch of the store."""
    out = {}
    for k in await store_sql(url, "SELECT seq, model, key, sealed FROM outcome_keys"):
        cipher = RowCipher(sealer.open(bytes(k["key"]), "outcome_keys", "key"))
        aad = orjson.dumps(["outcome_keys", k["model"]])
        doc = orjson.loads(cipher.open(bytes(k["sealed"]), aad, "batch"))
        rows = zip(*(doc[name] for name in RAW_OUTCOME), strict=True)
        out[k["seq"]] = (
            cipher,
            {
                s: dict(zip(RAW_OUTCOME, r, strict=True))
                for s, r in zip(doc["stored"], rows, strict=True)
            },
        )
    return out


def _hex(stored: str) -> str:
    """A digest as the releases before step 10 stored it (32 hex characters)."""
    return base64.b64decode(stored + "==").hex()


async def _rewrite_rows(url: str, key_file: Path, seal) -> int:
    """Each outcome's raw values put in its own ``sealed`` column, by ``seal(cipher, seq,
    row, raw)``, and every id digest stored as hex, as a release before step 9 stored
    them; the schema before that step."""
    sealer = Sealer(load_keyring(str(key_file)))
    batches = await _outcome_values(url, sealer)
    rows = await store_sql(url, "SELECT model, id, sealed_key FROM outcomes")
    for row in rows:
        cipher, values = batches[row["sealed_key"]]
        plain = orjson.dumps(values[row["id"]])
        await store_sql(
            url, "UPDATE outcomes SET sealed = :s, id = :h WHERE model = :m AND id = :i",
            {"s": seal(sealer, cipher, row, plain), "h": _hex(row["id"]), "m": row["model"],
             "i": row["id"]},
        )  # fmt: skip
    for row in await store_sql(url, "SELECT model, id FROM prediction_ids"):
        await store_sql(
            url, "UPDATE prediction_ids SET id = :h WHERE model = :m AND id = :i",
            {"h": _hex(row["id"]), "m": row["model"], "i": row["id"]},
        )  # fmt: skip
    await store_sql(url, "ALTER TABLE outcome_keys DROP COLUMN sealed")
    return len(rows)


async def _make_step8(url: str, key_file: Path) -> int:
    """A store written by the release of step 8: each outcome sealed in its own row under
    its batch's data key (associated data: outcomes, the key's row, model, stored id)."""

    def seal(sealer: Sealer, cipher: RowCipher, row: dict, plain: bytes) -> bytes:
        aad = orjson.dumps(["outcomes", row["sealed_key"], row["model"], _hex(row["id"])])
        return cipher.seal(plain, aad)

    n = await _rewrite_rows(url, key_file, seal)
    steps = len(INGEST_SCHEMA.steps) - 2
    await store_sql(url, f"UPDATE schema_version SET version = {steps} WHERE component = 'ingest'")
    return n


async def _older_store(make_config, key_file: Path, labelled: list[list[str]], make_old):
    """A store with ``labelled`` batches and predictions for IDS[6:10] turned into an
    older release's by ``make_old``, then started: (url, outcomes before, the daemon)."""
    warden = await _labelled(make_config, key_file, labelled)
    url = warden.config.database_url
    try:
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[6:10])})
        before = await _seen(warden)
    finally:
        await warden.stop()
    assert await make_old(url, key_file) == sum(map(len, labelled))
    warden = await _started(make_config, key_file, enabled=True)  # the missing steps run
    versions = await warden.store.schema_versions()
    assert versions["ingest"] == len(INGEST_SCHEMA.steps)
    return url, before, warden


async def _read_without_the_old_key(make_config, key_file: Path, keys: dict, seen: list) -> None:
    write_key_file(key_file, {"k2": keys["k2"]})  # the old key retired
    warden = await _started(make_config, key_file, enabled=True)
    try:
        assert await _seen(warden) == seen
    finally:
        await warden.stop()
        set_current_sealer(None)


async def test_a_store_of_step_8_migrates_and_its_rows_read_and_fail_as_before(
    make_config, tmp_path
):
    key_file = tmp_path / "keys"
    url, before, warden = await _older_store(
        make_config, key_file, [IDS[:4], IDS[4:6]], _make_step8
    )
    try:
        for table in ("outcomes", "prediction_ids"):  # the digests in their short form
            assert {len(r["id"]) for r in await store_sql(url, f"SELECT id FROM {table}")} == {22}
        assert await _seen(warden) == before  # the old rows read as before
        # Old predictions still join (new labels sealed with their batch), and their ids
        # are still known.
        assert await _label(warden, IDS[6:10]) == 4
        with pytest.raises(BatchRejected, match="already stored"):
            await warden.ingest.record_predictions("cls", {"records": _records(IDS[:1])})
        both = await _seen(warden)
        assert [s[0] for s in both] == sorted(IDS[:10])
        rows = await store_sql(url, "SELECT id, sealed FROM outcomes ORDER BY id")
        old = [r for r in rows if r["sealed"] is not None]
        assert len(old) == 6 and all(is_row_sealed(bytes(r["sealed"])) for r in old)
        # An old row's flipped byte: refused by name, audited.
        flipped = bytearray(old[0]["sealed"])
        flipped[-5] ^= 0x01
        update = "UPDATE outcomes SET sealed = :s WHERE id = :i"
        await store_sql(url, update, {"s": bytes(flipped), "i": old[0]["id"]})
        named = f"outcomes.sealed row (model='cls', id='{old[0]['id']}')"
        await _refused_read(warden, named, TAG)
        await store_sql(url, update, {"s": bytes(old[0]["sealed"]), "i": old[0]["id"]})
        keys = await _rotate(warden, key_file, "k2")
        assert (await warden.at_rest.status())["keys"]["k1"] == 0
    finally:
        await warden.stop()
    await _read_without_the_old_key(make_config, key_file, keys, both)


async def _make_legacy(url: str, key_file: Path) -> int:
    """Turn the store into one written by the release before step 8: every outcome one
    envelope of its own, no outcome_keys, no sealed_key, the schema at step 7."""

    def seal(sealer: Sealer, cipher: RowCipher, row: dict, plain: bytes) -> bytes:
        return sealer.seal(plain, "outcomes")

    n = await _rewrite_rows(url, key_file, seal)
    await store_sql(url, "DROP TABLE outcome_keys")
    await store_sql(url, "ALTER TABLE outcomes DROP COLUMN sealed_key")
    steps = len(INGEST_SCHEMA.steps) - 3
    await store_sql(url, f"UPDATE schema_version SET version = {steps} WHERE component = 'ingest'")
    return n


async def test_an_existing_store_migrates_and_rotation_covers_old_and_new_rows(
    make_config, tmp_path
):
    key_file = tmp_path / "keys"
    url, before, warden = await _older_store(make_config, key_file, [IDS[:6]], _make_legacy)
    try:  # steps 8 to 10 ran
        assert await _seen(warden) == before  # the old rows read as before
        assert await _label(warden, IDS[6:10]) == 4  # new ones sealed with their batch
        both = await _seen(warden)
        assert [s[0] for s in both] == sorted(IDS[:10])
        rows = await store_sql(url, "SELECT sealed, sealed_key FROM outcomes")
        old = [r for r in rows if r["sealed_key"] is None]
        assert all(r["sealed"] is None for r in rows if r["sealed_key"] is not None)
        assert len(old) == 6 and all(key_id_of(bytes(r["sealed"])) == "k1" for r in old)
        status = await warden.at_rest.status()
        counted = status["keys"]["k1"]
        keys = await _rotate(warden, key_file, "k2")
        status = await warden.at_rest.status()
        assert status["keys"] == {"k1": 0, "k2": counted}  # every object re-wrapped
    finally:
        await warden.stop()
    for row in await store_sql(url, "SELECT sealed FROM outcomes WHERE sealed IS NOT NULL"):
        raw = bytes(row["sealed"])
        assert is_sealed(raw) and key_id_of(raw) == "k2"
    for row in await store_sql(url, "SELECT key FROM outcome_keys"):
        assert key_id_of(bytes(row["key"])) == "k2"
    await _read_without_the_old_key(make_config, key_file, keys, both)
