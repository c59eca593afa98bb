"""A tampered sealed row outside the outbox: refused naming its table, column and key."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from mlwarden.daemon.api.http import Route, json_response
from mlwarden.daemon.profiles.reference import reference_table
from mlwarden.errors import DecryptionFailed
from tests.daemon.core.test_encryption import _run_daemon


async def test_a_flipped_byte_in_a_reference_row_names_the_row_and_is_audited(
    make_config, make_client, tmp_path
):
    warden, _client, _versions, _ = await _run_daemon(make_config, make_client, tmp_path, True)
    try:
        raw = sa.type_coerce(reference_table.c.profile, sa.LargeBinary())
        async with warden.store.begin() as conn:
            stored = (
                await conn.execute(sa.select(raw).where(reference_table.c.model == "price"))
            ).scalar_one()
            flipped = bytearray(stored)
            flipped[-5] ^= 0x01
            await conn.execute(
                sa.text("UPDATE reference_profiles SET profile = :v WHERE model = 'price'"),
                {"v": bytes(flipped)},
            )

        async def read_reference(request):
            async with warden.store.connect() as conn:
                row = (await conn.execute(sa.select(reference_table))).first()
            return json_response({"rows": row.rows})

        route = Route("GET", "/api/test/reference", read_reference, "operator", "Read it")
        client = await make_client(warden, extra_routes=[route])
        named = "reference_profiles.profile row (model='price')"
        # Through the API: a 500 naming the row, not just the table.
        resp = await client.get("/api/test/reference")
        body = await resp.json()
        assert resp.status == 500 and body["error"]["code"] == "decryption_failed", body
        assert named in body["error"]["message"], body
        assert "authentication tag does not match" in body["error"]["message"]
        # Anywhere else (a service reading it): the error names the table and carries
        # what finds the row; the audit entry names the row.
        with pytest.raises(DecryptionFailed, match="a stored reference_profiles value") as info:
            async with warden.store.connect() as conn:
                (await conn.execute(sa.select(reference_table))).first()
        assert info.value.table == "reference_profiles"
        assert (await warden.at_rest.name_stored_row(info.value)).what == named
        for _ in range(100):
            entries = await warden.audit.entries(limit=50)
            refused = [e for e in entries if e["action"] == "decryption_failed"]
            if sum(named in e["target"] for e in refused) >= 2:
                break
            await asyncio.sleep(0.05)
        assert sum(named in e["target"] for e in refused) >= 2, refused
        assert not any(e["target"] == "a stored reference_profiles value" for e in refused)
    finally:
        await warden.stop()
