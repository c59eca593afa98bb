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
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from ..core.encryption import SealedBytes, Sealer

__all__ = [
    "ID_KEY_NAME",
    "RAW_OUTCOME",
    "IdDigests",
    "id_key_table",
    "open_outcomes",
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


def seal_outcomes(
    rows: list[dict[str, Any]], digest: dict[str, str], enabled: bool
) -> list[dict[str, Any]]:
    """``outcomes`` rows (their ``id`` the clear id) keyed by ``digest[id]``.

    With ``enabled`` their raw values go to ``sealed`` (as JSON; the column type seals
    it) and their clear columns are NULL.
    """
    out = []
    for row in rows:
        stored = {**row, "id": digest[row["id"]], "sealed": None}
        if enabled:
            stored["sealed"] = orjson.dumps({k: row[k] for k in RAW_OUTCOME})
            stored.update({k: None for k in RAW_OUTCOME[1:]})
        out.append(stored)
    return out


def open_outcomes(
    rows: Sequence[Sequence[Any]], columns: Sequence[str], sealer: Sealer
) -> list[tuple[Any, ...]]:
    """``rows`` of ``columns`` of ``outcomes`` (the last one the raw ``sealed`` value)
    as stored in clear: a sealed row's raw values in place of its NULLs, without it.

    ``rows`` come ordered by (ts, id); sealed ones are put back in that order by their
    clear id, so outcomes (and sums over them) come in the same order either way.
    Runs in a thread: each sealed row is one decryption. A row that fails to open
    raises DecryptionFailed (reported, named by its row once found).
    """
    at = {name: n for n, name in enumerate(columns[:-1]) if name in RAW_OUTCOME}
    out = []
    opened = False
    for row in rows:
        raw = row[-1]
        if raw is None:
            out.append(tuple(row[:-1]))
            continue
        values = list(row[:-1])
        plain = orjson.loads(sealer.open_stored(bytes(raw), "outcomes"))
        for name, n in at.items():
            values[n] = plain[name]
        out.append(tuple(values))
        opened = True
    if opened:
        ts, rid = columns.index("ts"), columns.index("id")
        out.sort(key=lambda r: (r[ts], r[rid]))
    return out
