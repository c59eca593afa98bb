"""Schema step 10 (ingest/tables.py ``_short_digests``): hex digests become base64,
on a store whose rewrite of clear ids (id_migration.py) is only part done."""

from __future__ import annotations

import secrets
from base64 import b64encode

import sqlalchemy as sa

from mlwarden.daemon.core.store import Schema, Store
from mlwarden.daemon.ingest.tables import INGEST_SCHEMA

MODEL = "m"


def _short(hex_digest: str) -> str:
    return b64encode(bytes.fromhex(hex_digest)).decode().rstrip("=")


async def test_step_10_rewrites_only_the_digests_of_a_half_done_id_rewrite(store_url):
    digested, clear = secrets.token_hex(16), secrets.token_hex(16)  # both 32 hex chars
    sealed_outcome, clear_outcome = secrets.token_hex(16), secrets.token_hex(16)
    store = Store(store_url)
    await store.open([Schema("ingest", INGEST_SCHEMA.steps[:9])])  # the release before
    try:
        async with store.begin() as conn:
            # The rewrite of clear ids has reached batch 1: its ids are digests, batch
            # 2's are still as sent (and happen to look like digests).
            await conn.execute(
                sa.text(
                    "INSERT INTO ingest_id_key (name, key, created_at, migrated_batch, state) "
                    "VALUES ('ids', :key, 0, 1, 'migrating')"
                ),
                {"key": b"sealed"},
            )
            await conn.execute(
                sa.text("INSERT INTO prediction_ids (model, id, batch) VALUES (:m, :id, :b)"),
                [{"m": MODEL, "id": digested, "b": 1}, {"m": MODEL, "id": clear, "b": 2}],
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO outcomes (model, id, version, ts, error, labeled_at, sealed) "
                    "VALUES (:m, :id, '1', 0, :e, 0, :s)"
                ),
                [
                    {"m": MODEL, "id": sealed_outcome, "e": False, "s": b"sealed"},
                    {"m": MODEL, "id": clear_outcome, "e": False, "s": None},
                ],
            )
    finally:
        await store.close()

    store = Store(store_url)
    await store.open([INGEST_SCHEMA])
    try:
        async with store.connect() as conn:
            ids = dict((await conn.execute(sa.text("SELECT batch, id FROM prediction_ids"))).all())
            outcomes = set((await conn.execute(sa.text("SELECT id FROM outcomes"))).scalars().all())
    finally:
        await store.close()
    assert ids == {1: _short(digested), 2: clear}
    assert len(ids[1]) == 22
    assert outcomes == {_short(sealed_outcome), clear_outcome}
