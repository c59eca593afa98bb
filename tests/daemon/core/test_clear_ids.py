"""``[encryption] ids = "clear"``: ids kept as sent, everything stored with them sealed.

On SQLite and PostgreSQL: the ids are in the store as sent while the predictions' and
labels' values are nowhere in its bytes; joins, refusals and read-back answer as with
digested ids; a store that ran with encryption off is sealed in place, its ids kept;
and the choice is fixed per store (a start asking for the other way is refused,
changing nothing).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlwarden.daemon.core.encryption import is_row_sealed, key_id_of
from mlwarden.daemon.warden import Warden
from mlwarden.errors import ConfigError
from tests.daemon.core.test_encrypted_ids import IDS, _config, _label, _started, _store_bytes
from tests.helpers import store_sql

pytestmark = pytest.mark.both_backends

NOW = time.time()
VALUE = "sell-at-4711-secret"  # a prediction nothing may store in clear


def _records(ids: list[str]) -> list[dict]:
    return [
        {"id": i, "version": "1", "features": {"x": n / 10}, "prediction": VALUE if n % 2 else "0"}
        for n, i in enumerate(ids)
    ]


async def _at_rest(url: str) -> dict:
    """The ids as stored, and whether every value stored with them is sealed."""
    ids = {r["id"] for r in await store_sql(url, "SELECT id FROM prediction_ids")}
    outcomes = await store_sql(
        url, "SELECT id, prediction_cls, label_cls, sealed_key FROM outcomes"
    )
    batches = await store_sql(url, "SELECT data FROM prediction_batches")
    documents = await store_sql(url, "SELECT sealed FROM outcome_keys")
    (key,) = await store_sql(url, "SELECT state FROM ingest_id_key")
    return {
        "prediction ids": ids,
        "outcome ids": {r["id"] for r in outcomes},
        "outcome values in clear": [
            r for r in outcomes if r["prediction_cls"] is not None or r["label_cls"] is not None
        ],
        "outcomes under a batch key": all(r["sealed_key"] is not None for r in outcomes),
        "batches sealed": all(key_id_of(bytes(r["data"])) == "k1" for r in batches),
        "documents sealed": all(is_row_sealed(bytes(r["sealed"])) for r in documents),
        "state": key["state"],
    }


async def test_ids_in_clear_with_the_rest_sealed_answer_as_digested_ones(
    make_config, tmp_path, base_path
):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=True, **{"encryption.ids": "clear"})
    url = warden.config.database_url
    try:
        assert not warden.ingest.ledger.ids.enabled and warden.ingest.ledger.ids.sealing
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[:16])})
        assert (await _label(warden, [*IDS[:12], "customer-9999-unknown"]))["matched"] == 12
        with pytest.raises(Exception, match=f"id '{IDS[3]}'.*already stored"):
            await warden.ingest.record_predictions("cls", {"records": _records([IDS[3]])})
        out = await warden.ingest.outcomes("cls")
        assert sorted(out.id) == sorted(IDS[:12])
        assert sorted(p for p in out.prediction if p != "0") == [VALUE] * 6
    finally:
        await warden.stop()
    stored = await _at_rest(url)
    assert (
        stored
        == {
            "prediction ids": set(IDS[:16]),  # as sent, by the operator's choice
            "outcome ids": set(IDS[:12]),
            "outcome values in clear": [],
            "outcomes under a batch key": True,
            "batches sealed": True,
            "documents sealed": True,
            "state": "clear",
        }
    )
    hay = await _store_bytes(warden, base_path)
    assert IDS[0].encode() in hay  # the control: the ids are there
    assert VALUE.encode() not in hay  # the values are not


async def test_a_store_sealed_in_place_keeps_its_ids_and_its_choice(make_config, tmp_path):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=False)
    url = warden.config.database_url
    try:  # stored with encryption off: ids, predictions and labels in clear
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[:8])})
        assert (await _label(warden, IDS[:4]))["matched"] == 4
    finally:
        await warden.stop()

    warden = await _started(make_config, key_file, enabled=True, **{"encryption.ids": "clear"})
    try:  # sealed in place at the start: old predictions still join and refuse
        assert (await _label(warden, IDS[4:8]))["matched"] == 4
        with pytest.raises(Exception, match=f"id '{IDS[5]}'.*already stored"):
            await warden.ingest.record_predictions("cls", {"records": _records([IDS[5]])})
        assert sorted((await warden.ingest.outcomes("cls")).id) == sorted(IDS[:8])
    finally:
        await warden.stop()
    stored = await _at_rest(url)
    assert stored["prediction ids"] == set(IDS[:8]) and stored["outcome ids"] == set(IDS[:8])
    assert stored["outcome values in clear"] == [] and stored["outcomes under a batch key"]
    assert stored["batches sealed"] and stored["documents sealed"]
    assert stored["state"] == "clear"

    # The other way is refused, naming the setting, and changes nothing.
    before = await store_sql(url, "SELECT id, batch FROM prediction_ids ORDER BY id")
    await _refused(make_config, key_file, "digest", "keeps prediction and label ids in clear")
    assert await store_sql(url, "SELECT id, batch FROM prediction_ids ORDER BY id") == before
    assert (await _at_rest(url))["state"] == "clear"


async def test_a_store_of_digested_ids_refuses_clear(make_config, tmp_path):
    key_file = tmp_path / "keys"
    warden = await _started(make_config, key_file, enabled=True)
    url = warden.config.database_url
    try:
        await warden.ingest.record_predictions("cls", {"records": _records(IDS[:4])})
    finally:
        await warden.stop()
    await _refused(make_config, key_file, "clear", "keeps prediction and label ids digested")
    ids = {r["id"] for r in await store_sql(url, "SELECT id FROM prediction_ids")}
    assert len(ids) == 4 and not ids & set(IDS)  # still digests
    (key,) = await store_sql(url, "SELECT state FROM ingest_id_key")
    assert key["state"] == "done"


async def _refused(make_config, key_file: Path, ids: str, match: str) -> None:
    warden = Warden(
        make_config(_config(key_file, True), **{"encryption.ids": ids}), clock=lambda: NOW
    )
    try:
        with pytest.raises(ConfigError, match=f"encryption.ids: this store {match}"):
            await warden.start()
    finally:
        await warden.stop()
