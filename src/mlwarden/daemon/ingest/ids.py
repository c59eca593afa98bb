"""Prediction and label ids at rest: keyed digests when encryption is on.

Ids are often customer identifiers. With ``[encryption] enabled = true`` the id
columns of ``prediction_ids`` and ``outcomes`` hold a keyed digest of the id instead
of the id: HMAC-SHA256 (the standard library's ``hmac``) truncated to 128 bits, as 22
characters of base64 without padding (32 hex characters before schema step 10, which
rewrote them: :func:`digest_of_hex`), under a *model key*
``HMAC-SHA256(id key, "mlwarden-model-ids|" + model)``, so equal ids of two models do
not link. Ids a request carries are digested as they arrive and then used as before
(the duplicate check, the label join, the late label), so the digest is the join key
and nothing else changes. Two ids of a model collide with probability 2^-128 (for
n stored ids, at most n^2 / 2^129): none will in practice, and without the id key no
one can make them.

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

The outcomes a label batch stores are sealed together: their raw values, one columnar
JSON document keyed by their stored ids, sealed once (:class:`~..core.encryption.RowCipher`)
under a fresh data key. Key and document are one ``outcome_keys`` row (the key sealed
like every sealed row: wrapped by a key-encryption key, re-wrapped by a rotation,
counted by ``keys status``; the document under the key, its associated data
(``outcome_keys``, model)), and each outcome names the row in ``sealed_key`` (its
``sealed`` column NULL). An outcome is found in its batch by its stored id: a row
pointed at another batch, or whose id was changed, is not in it and fails like a
tampered one. Stores of the releases before hold outcomes sealed in their own
``sealed`` column: one envelope each (``sealed_key`` NULL), or one row under their
batch's key (``sealed_key`` set, the key's document NULL); both are opened as before.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from binascii import Error as BinasciiError
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple, NoReturn, TypeVar, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import DecryptionFailed
from ..core.encryption import RowCipher, SealedBytes, SealedRows, Sealer

__all__ = [
    "ID_KEY_NAME",
    "RAW_OUTCOME",
    "IdDigests",
    "OutcomeKey",
    "digest_of_hex",
    "id_key_table",
    "open_outcomes",
    "outcome_keys",
    "outcome_keys_table",
    "purge_outcome_keys",
    "seal_outcomes",
]

#: The row of ``ingest_id_key`` that holds the store's id key.
ID_KEY_NAME = "ids"
_MODEL_CONTEXT = b"mlwarden-model-ids|"
_DIGEST_BYTES = 16  # 128 bits: 22 base64 characters (short keys, small indexes)
_DIGEST_CHARS = 22
#: Ids from which :meth:`IdDigests.digest` leaves the event loop.
_IN_THREAD = 256

T = TypeVar("T")

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
    # The batch's outcomes (step 9): their stored ids and raw values, columnar JSON sealed
    # under ``key`` (NULL: written before, each outcome sealed in its own row).
    sa.Column("sealed", SealedRows("outcome_keys"), nullable=True),
)
#: Keys (each with its batch's outcomes) read per statement by :func:`outcome_keys`.
_KEYS_PER_READ = 64

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

    def __init__(self, key: bytes | None = None, *, sealing: bool = False) -> None:
        self._key = key
        self._macs: dict[str, hmac.HMAC] = {}
        #: Encryption is on: what is stored with the ids is sealed (with a key, or with
        #: ``[encryption] ids = "clear"``, where the ids themselves are kept as sent).
        self.sealing = sealing or key is not None

    @property
    def enabled(self) -> bool:
        """Ids are digested."""
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
        copy, b2a, n, chars = self._mac(model).copy, b2a_base64, _DIGEST_BYTES, _DIGEST_CHARS
        out = []
        for i in ids:
            mac = copy()
            mac.update(i.encode())
            # _encode inlined (no call per id): the padding and newline are cut off.
            out.append(b2a(mac.digest()[:n])[:chars].decode())
        return out

    async def digest(self, model: str, ids: list[str]) -> list[str]:
        """:meth:`of`, in a thread for a large batch (an HMAC costs a few microseconds)."""
        if self._key is None:
            return list(ids)
        return await self.run(len(ids), functools.partial(self.of, model, ids))

    async def run(self, records: int, work: Callable[[], T]) -> T:
        """``work()`` (digests, seals) for a batch of ``records``: in a thread when it is
        large and encryption is on, so neither the event loop nor the writer waits."""
        if not self.sealing or records < _IN_THREAD:
            return work()
        return await asyncio.to_thread(work)


def _encode(digest: bytes) -> str:
    return b2a_base64(digest[:_DIGEST_BYTES])[:_DIGEST_CHARS].decode()


def digest_of_hex(stored: str) -> str | None:
    """The stored form of a digest stored as 32 hex characters before schema step 10
    (the same 128 bits); None for anything else."""
    if len(stored) != 2 * _DIGEST_BYTES:
        return None
    try:
        return _encode(bytes.fromhex(stored))
    except ValueError:
        return None


def _hex_of(stored_id: str) -> str:
    """The 32 hex characters a digest was stored as before step 10 (see _row_aad)."""
    try:
        return a2b_base64(stored_id + "==").hex()
    except BinasciiError:
        return stored_id


async def seal_outcomes(
    conn: AsyncConnection,
    rows: list[dict[str, Any]],
    digest: dict[str, str],
    now: float,
    enabled: bool,
) -> list[dict[str, Any]]:
    """``outcomes`` rows (their ``id`` the clear id, all of one model) keyed by
    ``digest[id]``, as they are stored (with encryption on: ``rows``, changed in place).

    ``enabled`` (encryption on): their raw values are sealed together under a fresh data
    key, stored with it as one ``outcome_keys`` row in ``conn``'s transaction; the rows
    name it in ``sealed_key`` and their clear columns are NULL (see the module doc).
    """
    if not enabled:
        return [
            {**row, "id": digest[row["id"]], "sealed": None, "sealed_key": None} for row in rows
        ]
    model = rows[0]["model"]
    stored = [digest[i] for i in map(itemgetter("id"), rows)]
    document = {"stored": stored, **{n: list(map(itemgetter(n), rows)) for n in RAW_OUTCOME}}
    cipher = RowCipher.generate()
    sealed = cipher.seal(orjson.dumps(document), _batch_aad(model))
    seq = await _insert_key(conn, model, now, cipher.key, sealed)
    cleared = {**dict.fromkeys(RAW_OUTCOME[1:]), "sealed": None, "sealed_key": seq}
    for row, s in zip(rows, stored, strict=True):  # the caller's rows, made for this call
        row.update(cleared)
        row["id"] = s
    return rows


async def _insert_key(
    conn: AsyncConnection, model: str, now: float, key: bytes, sealed: bytes
) -> int:
    """Store a label batch's ``outcome_keys`` row (its data key sealed on the way); its seq.

    On SQLite one statement at the driver level: SQLAlchemy's insert costs several
    times the 90 kB write of a batch's document.
    """
    t = outcome_keys_table
    if conn.dialect.name != "sqlite":
        inserted = await conn.execute(
            t.insert().values(model=model, created_at=now, key=key, sealed=sealed)
        )
        assert inserted.inserted_primary_key is not None
        return int(inserted.inserted_primary_key[0])
    sealed_key = cast(SealedBytes, t.c.key.type).seal_ahead(key)
    result = await conn.exec_driver_sql(
        "INSERT INTO outcome_keys (model, created_at, key, sealed) VALUES (?, ?, ?, ?)",
        (model, now, sealed_key, sealed),
    )
    assert result.lastrowid is not None
    return int(result.lastrowid)


class OutcomeKey(NamedTuple):
    """An ``outcome_keys`` row as read: its data key, and its batch's sealed outcomes."""

    cipher: RowCipher
    sealed: bytes | None  # None: its outcomes are sealed in their own rows (before step 9)


async def outcome_keys(conn: AsyncConnection, seqs: set[int]) -> dict[int, OutcomeKey]:
    """The rows ``seqs`` of ``outcome_keys`` (each key opened by its column's type: a
    failure is named by its row and audited). A missing one is left out (its rows fail)."""
    t = outcome_keys_table
    out: dict[int, OutcomeKey] = {}
    wanted = sorted(seqs)
    for start in range(0, len(wanted), _KEYS_PER_READ):
        query = sa.select(t.c.seq, t.c.key, t.c.sealed).where(
            t.c.seq.in_(wanted[start : start + _KEYS_PER_READ])
        )
        for seq, key, sealed in (await conn.execute(query)).all():
            out[int(seq)] = OutcomeKey(RowCipher(bytes(key)), sealed)
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


def _batch_aad(model: str) -> bytes:
    return orjson.dumps(["outcome_keys", model])


def _row_aad(seq: int, model: str, stored_id: str) -> bytes:
    """A row sealed under its batch's key by the release of step 8, which stored ids
    (and so bound them) as hex; step 10 rewrote the stored id, not the row."""
    return orjson.dumps(["outcomes", seq, model, _hex_of(stored_id)])


def open_outcomes(
    model: str,
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str],
    sealer: Sealer,
    keys: dict[int, OutcomeKey],
    *,
    ordered: bool = True,
) -> list[tuple[Any, ...]]:
    """``rows`` of ``columns`` of ``model``'s ``outcomes`` (the last two ``sealed_key``
    and the raw ``sealed`` value) as stored in clear: a sealed row's raw values in place
    of its NULLs, without those two.

    ``rows`` come ordered by (ts, id) (``ordered``) or in any order; when any is sealed,
    or they came in any order, they are sorted by (ts, clear id), so outcomes (and sums
    over them) come in the same order either way.
    Runs in a thread. A row (or a batch) that fails to open raises DecryptionFailed
    naming it, reported for the audit; nothing of the read is returned.
    """
    names = [name for name in columns[:-2] if name in RAW_OUTCOME]
    fields_of, rid = itemgetter(*names), columns.index("id")
    # A sealed row as read: its raw values (``names``) put before the row's own columns,
    # picked into the order of ``columns`` (one C call per row, not a loop per field).
    pick = itemgetter(
        *(names.index(c) if c in names else len(names) + n for n, c in enumerate(columns[:-2]))
    )
    batches: dict[int, dict[str, tuple[Any, ...]]] = {}
    out = []
    opened = False
    for row in rows:
        raw, seq = row[-1], row[-2]
        if raw is None and seq is None:
            out.append(tuple(row[:-2]))
            continue
        if raw is None:  # in its batch's sealed outcomes (step 9)
            batch = batches.get(seq)
            if batch is None:
                batch = batches[seq] = _open_batch(model, seq, names, sealer, keys)
            found = batch.get(row[rid])
            if found is None:
                _fail(model, row[rid], sealer, _not_in_batch(seq, keys))
        else:
            if seq is None:  # one envelope per row (step 7)
                plain = sealer.open_stored(bytes(raw), "outcomes")
            else:  # one row under its batch's key (step 8)
                plain = _open_row(model, row[rid], seq, raw, sealer, keys)
            found = fields_of(orjson.loads(plain))
        out.append(pick(found + tuple(row)))
        opened = True
    if opened or not ordered:
        out.sort(key=itemgetter(columns.index("ts"), rid))
    return out


def _open_batch(
    model: str, seq: int, names: list[str], sealer: Sealer, keys: dict[int, OutcomeKey]
) -> dict[str, tuple[Any, ...]]:
    """Stored id -> the values ``names`` of the outcomes of batch ``seq``."""
    key = keys.get(seq)
    if key is None or key.sealed is None:
        return {}  # each of its rows fails, named (_not_in_batch)
    what = f"outcome_keys.sealed row (seq={seq})"
    try:
        plain = key.cipher.open(key.sealed, _batch_aad(model), what)
    except DecryptionFailed as exc:
        sealer.report(what, exc.reason)
        raise
    document = orjson.loads(plain)
    values = zip(*(document[n] for n in names), strict=True)
    return dict(zip(document["stored"], values, strict=True))


def _not_in_batch(seq: int, keys: dict[int, OutcomeKey]) -> str:
    key = keys.get(seq)
    if key is None:
        return f"its data key (outcome_keys row seq={seq}) is missing"
    if key.sealed is None:
        return f"its batch's sealed values (outcome_keys row seq={seq}) are missing"
    return (
        f"it is not among the outcomes sealed with its data key (outcome_keys row "
        f"seq={seq}): the row was altered"
    )


def _fail(model: str, stored_id: str, sealer: Sealer, reason: str) -> NoReturn:
    what = f"outcomes.sealed row (model={model!r}, id={stored_id!r})"
    sealer.report(what, reason)
    raise DecryptionFailed(what, reason)


def _open_row(
    model: str, stored_id: str, seq: int, raw: bytes, sealer: Sealer, keys: dict[int, OutcomeKey]
) -> bytes:
    key = keys.get(seq)
    if key is None:
        _fail(model, stored_id, sealer, f"its data key (outcome_keys row seq={seq}) is missing")
    try:
        return key.cipher.open(raw, _row_aad(seq, model, stored_id), "")
    except DecryptionFailed as exc:  # named here: the name is not made for every row
        _fail(model, stored_id, sealer, exc.reason)
