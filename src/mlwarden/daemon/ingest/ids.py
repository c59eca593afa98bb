"""Prediction and label ids at rest: keyed digests when encryption is on.

Ids are often customer identifiers. With ``[encryption] enabled = true`` the id
columns of ``prediction_ids`` and ``outcomes`` hold a keyed digest of the id instead
of the id: HMAC-SHA256 (the standard library's ``hmac``) truncated to 128 bits, as 32
hex characters, under a *model key* ``HMAC-SHA256(id key, "mlwarden-model-ids|" +
model)``, so equal ids of two models do not link. Ids a request carries are digested
as they arrive and then used as before (the duplicate check, the label join, the
late label), so the digest is the join key and nothing else changes.

The *id key* is one random 32-byte secret per store, kept sealed (envelope-encrypted
like every sealed row) in ``ingest_id_key``: a key rotation re-wraps its data key and
never changes the secret, so stored digests keep matching. It is made at the first
start with encryption on (``id_migration.py``, which also rewrites ids stored in clear
before).

Where the clear id is needed again (``Outcomes.id``: triggers, the shadow sample of a
rollout) it comes from a sealed place: the stored prediction batch (its blob is
sealed) and, for an outcome, its ``sealed`` column, which with encryption on holds the
outcome's raw values (:data:`RAW_OUTCOME`: the id, prediction, label and scores) while
their clear columns stay NULL. Version, times, latency and the error flag stay in clear
(the queries filter on them). With encryption off :class:`IdDigests` is the identity
and ``sealed`` is NULL: ids and values are stored as sent, as before.

The outcomes a label batch stores share one data key (:class:`~..core.encryption.RowCipher`,
a fresh nonce per row): it is one ``outcome_keys`` row, sealed like every sealed row
(so wrapped by a key-encryption key, re-wrapped by a rotation, counted by ``keys
status``), and each outcome names it in ``sealed_key``. A row's associated data is
(``outcomes``, its key's row, model, stored id), so a row copied onto another, or put
under another key, fails its tag check. Outcomes sealed one envelope each (stores of the
release before) have ``sealed_key`` NULL and are opened as before.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import DecryptionFailed
from ..core.encryption import RowCipher, SealedBytes, Sealer

__all__ = [
    "ID_KEY_NAME",
    "RAW_OUTCOME",
    "IdDigests",
    "id_key_table",
    "new_outcome_key",
    "open_outcomes",
    "outcome_ciphers",
    "outcome_keys_table",
    "purge_outcome_keys",
    "seal_outcomes",
]

#: The row of ``ingest_id_key`` that holds the store's id key.
ID_KEY_NAME = "ids"
_MODEL_CONTEXT = b"mlwarden-model-ids|"
_DIGEST_BYTES = 16  # 128 bits: 32 hex characters
#: Ids from which :meth:`IdDigests.digest` leaves the event loop.
_IN_THREAD = 256

id_key_table = sa.Table(
    "ingest_id_key",
    sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    # The 32-byte secret, sealed: only the key ring opens it, a rotation re-wraps it.
    sa.Column("key", SealedBytes("ingest_id_key"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The rewrite of ids stored in clear (id_migration.py): the last prediction batch
    # whose ids are digested, and the state ("migrating", then "done").
    sa.Column("migrated_batch", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
)

#: The data keys of sealed outcomes, one per label batch (module doc).
outcome_keys_table = sa.Table(
    "outcome_keys",
    sa.MetaData(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The 32-byte data key, sealed: only the key ring opens it, a rotation re-wraps it.
    sa.Column("key", SealedBytes("outcome_keys"), nullable=False),
)
#: Keys read per statement by :func:`outcome_ciphers`.
_KEYS_PER_READ = 500

#: The columns of an ``outcomes`` row kept in its ``sealed`` column with encryption on.
RAW_OUTCOME = (
    "id",
    "prediction_num",
    "prediction_cls",
    "label_num",
    "label_cls",
    "probability",
    "probabilities",
)


class IdDigests:
    """Turns the ids of a model into what the store keys them by (see the module doc)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key
        self._macs: dict[str, hmac.HMAC] = {}

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _mac(self, model: str) -> hmac.HMAC:
        """An HMAC keyed with ``model``'s key, copied for each id (no key set-up per id)."""
        assert self._key is not None
        mac = self._macs.get(model)
        if mac is None:
            key = hmac.digest(self._key, _MODEL_CONTEXT + model.encode(), "sha256")
            mac = self._macs[model] = hmac.new(key, digestmod="sha256")
        return mac

    def of(self, model: str, ids: Sequence[str]) -> list[str]:
        """The stored form of ``ids`` of ``model``: digests, or the ids themselves."""
        if self._key is None:
            return list(ids)
        copy = self._mac(model).copy
        out = []
        for i in ids:
            mac = copy()
            mac.update(i.encode())
            out.append(mac.digest()[:_DIGEST_BYTES].hex())
        return out

    async def digest(self, model: str, ids: list[str]) -> list[str]:
        """:meth:`of`, in a thread for a large batch (an HMAC costs a few microseconds)."""
        if self._key is None or len(ids) < _IN_THREAD:
            return self.of(model, ids)
        return await asyncio.to_thread(self.of, model, ids)


async def new_outcome_key(conn: AsyncConnection, model: str, now: float) -> tuple[int, RowCipher]:
    """A fresh data key for outcomes of ``model``, stored sealed in ``conn``'s transaction."""
    cipher = RowCipher.generate()
    t = outcome_keys_table
    inserted = await conn.execute(t.insert().values(model=model, created_at=now, key=cipher.key))
    assert inserted.inserted_primary_key is not None
    return int(inserted.inserted_primary_key[0]), cipher


async def outcome_ciphers(conn: AsyncConnection, seqs: set[int]) -> dict[int, RowCipher]:
    """The data keys ``seqs`` of ``outcome_keys`` (each opened by its column's type: a
    failure is named by its row and audited). A missing one is left out (its rows fail)."""
    t = outcome_keys_table
    out: dict[int, RowCipher] = {}
    wanted = sorted(seqs)
    for start in range(0, len(wanted), _KEYS_PER_READ):
        query = sa.select(t.c.seq, t.c.key).where(
            t.c.seq.in_(wanted[start : start + _KEYS_PER_READ])
        )
        for seq, key in (await conn.execute(query)).all():
            out[int(seq)] = RowCipher(bytes(key))
    return out


async def purge_outcome_keys(conn: AsyncConnection) -> None:
    """Delete the data keys no outcome uses any more (relabelled or past retention).

    A key is stored in the transaction of its outcomes, so a committed key without
    outcomes has none left; one being written is not visible here yet.
    """
    t = outcome_keys_table
    used = sa.select(_outcomes_key.c.sealed_key).where(_outcomes_key.c.sealed_key.is_not(None))
    await conn.execute(t.delete().where(t.c.seq.not_in(used.distinct())))


#: ``outcomes.sealed_key`` (tables.py defines the table; it imports this module).
_outcomes_key = sa.table("outcomes", sa.column("sealed_key", sa.Integer))


def _aad(seq: int, model: str, stored_id: str) -> bytes:
    return orjson.dumps(["outcomes", seq, model, stored_id])


def seal_outcomes(
    rows: list[dict[str, Any]], digest: dict[str, str], key: tuple[int, RowCipher] | None
) -> list[dict[str, Any]]:
    """``outcomes`` rows (their ``id`` the clear id) keyed by ``digest[id]``.

    With a ``key`` (encryption on) their raw values go to ``sealed`` (JSON, sealed by
    the key; ``sealed_key`` names it) and their clear columns are NULL.
    """
    if key is None:
        return [
            {**row, "id": digest[row["id"]], "sealed": None, "sealed_key": None} for row in rows
        ]
    seq, cipher = key
    seal, cleared = cipher.seal, dict.fromkeys(RAW_OUTCOME[1:])
    out = []
    for row in rows:
        stored_id = digest[row["id"]]
        raw = orjson.dumps({k: row[k] for k in RAW_OUTCOME})
        sealed = seal(raw, _aad(seq, row["model"], stored_id))
        out.append({**row, **cleared, "id": stored_id, "sealed": sealed, "sealed_key": seq})
    return out


def open_outcomes(
    model: str,
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str],
    sealer: Sealer,
    ciphers: dict[int, RowCipher],
) -> list[tuple[Any, ...]]:
    """``rows`` of ``columns`` of ``model``'s ``outcomes`` (the last two ``sealed_key``
    and the raw ``sealed`` value) as stored in clear: a sealed row's raw values in place
    of its NULLs, without those two.

    ``rows`` come ordered by (ts, id); sealed ones are put back in that order by their
    clear id, so outcomes (and sums over them) come in the same order either way.
    Runs in a thread. A row that fails to open raises DecryptionFailed naming it (its
    table, column and key), reported for the audit; nothing of the read is returned.
    """
    names = [name for name in columns[:-2] if name in RAW_OUTCOME]
    at, fields_of = [columns.index(name) for name in names], itemgetter(*names)
    rid = columns.index("id")
    out = []
    opened = False
    for row in rows:
        raw, seq = row[-1], row[-2]
        if raw is None:
            out.append(tuple(row[:-2]))
            continue
        values = list(row[:-2])
        if seq is None:  # one envelope per row (written before outcome_keys)
            plain = sealer.open_stored(bytes(raw), "outcomes")
        else:
            plain = _open_row(model, values[rid], seq, raw, sealer, ciphers)
        for n, value in zip(at, fields_of(orjson.loads(plain)), strict=True):
            values[n] = value
        out.append(tuple(values))
        opened = True
    if opened:
        ts = columns.index("ts")
        out.sort(key=lambda r: (r[ts], r[rid]))
    return out


def _open_row(
    model: str, stored_id: str, seq: int, raw: bytes, sealer: Sealer, ciphers: dict[int, RowCipher]
) -> bytes:
    try:
        cipher = ciphers.get(seq)
        if cipher is None:
            raise DecryptionFailed("", f"its data key (outcome_keys row seq={seq}) is missing")
        return cipher.open(raw, _aad(seq, model, stored_id), "")
    except DecryptionFailed as exc:  # named here: the name is not made for every row
        what = f"outcomes.sealed row (model={model!r}, id={stored_id!r})"
        sealer.report(what, exc.reason)
        raise DecryptionFailed(what, exc.reason) from None
