"""The store's id key, and the rewrite of ids stored in clear into digests (ids.py).

:func:`prepare_ids` runs at the ingest service's start, before it accepts anything:

- Encryption off: ids are stored as sent (the identity). A store whose ids were
  digested holds sealed rows (the id key among them), which the start's key check
  refuses without the key ring: encryption cannot be turned off for such a store
  (docs/security.md).
- Encryption on: the id key is read, or made at the first start (one random 32-byte
  secret, sealed). Its row's ``state`` also records how the store keeps ids, fixed at
  that start: digested (``migrating``, then ``done``), or as sent with
  ``[encryption] ids = "clear"`` (``sealing``, then ``clear``: the rewrite below with
  the identity for a digest, which seals what was stored in clear and keeps the ids).
  A start asking for the other way is refused. A store that holds sealed outcomes but
  no id key lost it: the start stops, naming it. While the key's ``state`` is not
  ``done`` (or ``clear``), ids stored in clear (by a start with encryption off, or by a
  release before ids were digested) are rewritten: the ``prediction_ids`` of each
  stored batch from the clear ids in its blob (the blob is sealed on the way if it was
  in clear), then each ``outcomes`` row whose raw values are not sealed yet (sealed
  together per chunk and model under one data key, stored in the chunk's transaction:
  ids.py). Each chunk is one transaction that also moves the progress
  (``migrated_batch``; an outcome's ``sealed_key``); a start killed midway resumes
  where the last commit left it, and the rewrite derives every digest from a clear id,
  so doing a chunk twice writes the same rows. On PostgreSQL an advisory lock keeps two
  daemons from rewriting the same chunk at once.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from ...errors import ConfigError, DecryptionFailed
from ..core.encryption import Sealer, is_sealed
from ..core.store import INGEST_LOCKS, Store, insert_ignore, lock_for_transaction
from .ids import ID_KEY_NAME, RAW_OUTCOME, IdDigests, id_key_table, seal_outcomes
from .tables import outcomes_table, prediction_batches_table, prediction_ids_table

__all__ = ["ID_KEY_WHAT", "migrate_ids", "prepare_ids"]

logger = logging.getLogger(__name__)

ID_KEY_WHAT = f"the id key (ingest_id_key row name={ID_KEY_NAME!r})"
# The key row's state: ids digested (rewriting those stored in clear, then done), or
# kept in clear with ``[encryption] ids = "clear"`` (sealing what was stored in clear
# with them, then clear).
_MIGRATING, _DONE = "migrating", "done"
_SEALING, _CLEAR = "sealing", "clear"
_CLEAR_STATES = (_SEALING, _CLEAR)
_KEY_BYTES = 32
#: Stored batches (each up to monitoring.max_batch_records ids) per transaction.
_BATCHES_PER_CHUNK = 8
_OUTCOMES_PER_CHUNK = 500


async def prepare_ids(
    store: Store,
    sealer: Sealer,
    clock: Callable[[], float] = time.time,
    *,
    clear: bool = False,
) -> IdDigests:
    """How this start stores ids (see the module doc); DecryptionFailed on a lost key.

    ``clear`` (``[encryption] ids = "clear"``): ids are kept as sent, everything stored
    with them sealed. A store keeps the choice of its first start with encryption on
    (the key row's ``state``); a start asking for the other is refused (ConfigError).
    """
    if not sealer.enabled:
        return IdDigests()
    key, state = await _read_key(store, sealer)
    if key is None:
        await _refuse_lost_key(store)
        async with store.begin() as conn:
            await conn.execute(
                insert_ignore(conn.dialect, id_key_table).values(
                    name=ID_KEY_NAME,
                    key=secrets.token_bytes(_KEY_BYTES),
                    created_at=clock(),
                    migrated_batch=0,
                    state=_SEALING if clear else _MIGRATING,
                )
            )
        key, state = await _read_key(store, sealer)  # another daemon's, if it made one first
        assert key is not None
        if clear == (state in _CLEAR_STATES):
            logger.info(
                "made the store's id key: prediction and label ids are stored %s",
                "as sent, the rest sealed" if clear else "digested",
            )
    if clear != (state in _CLEAR_STATES):
        raise ConfigError(_switch_refused(clear))
    digests = IdDigests(None if clear else key, sealing=True)
    if state not in (_DONE, _CLEAR):
        await migrate_ids(store, sealer, digests, clock)
    return digests


def _switch_refused(clear: bool) -> str:
    if clear:
        return (
            "encryption.ids: this store keeps prediction and label ids digested, so "
            '"clear" would not find them; set ids = "digest" (it is fixed per store at '
            "its first start with encryption on: docs/security.md)"
        )
    return (
        'encryption.ids: this store keeps prediction and label ids in clear (ids = "clear" '
        'at its first start with encryption on), so "digest" would not find them; set '
        'ids = "clear" (it is fixed per store: docs/security.md)'
    )


async def _read_key(store: Store, sealer: Sealer) -> tuple[bytes | None, str]:
    t = id_key_table
    raw = sa.type_coerce(t.c.key, sa.LargeBinary())
    async with store.connect() as conn:
        row = (await conn.execute(sa.select(raw, t.c.state).where(t.c.name == ID_KEY_NAME))).first()
    if row is None:
        return None, ""
    sealed, state = bytes(row[0]), str(row[1])
    if not is_sealed(sealed):
        raise DecryptionFailed(ID_KEY_WHAT, "it is stored in clear, not sealed (altered)")
    key = sealer.open(sealed, "ingest_id_key", ID_KEY_WHAT)
    if len(key) != _KEY_BYTES:
        raise DecryptionFailed(ID_KEY_WHAT, f"it holds {len(key)} bytes, not {_KEY_BYTES}")
    return key, state


async def _refuse_lost_key(store: Store) -> None:
    """DecryptionFailed when stored outcomes are sealed but the id key is gone."""
    o = outcomes_table
    held = sa.or_(o.c.sealed.is_not(None), o.c.sealed_key.is_not(None))
    query = sa.select(sa.func.count()).select_from(o).where(held)
    async with store.connect() as conn:
        sealed = int((await conn.execute(query)).scalar() or 0)
    if sealed:
        raise DecryptionFailed(
            ID_KEY_WHAT,
            f"it is missing, but {sealed} stored outcomes hold ids digested with it: restore "
            "the ingest_id_key table from a backup of the store",
        )


async def migrate_ids(
    store: Store,
    sealer: Sealer,
    digests: IdDigests,
    clock: Callable[[], float] = time.time,
) -> None:
    """Rewrite the ids stored in clear into digests, chunk by chunk (module doc). With
    the identity for ``digests`` (ids kept in clear) the ids stay as they are and what
    was stored in clear with them is sealed."""
    batches = outcomes = 0
    doing = "digesting" if digests.enabled else "sealing what is stored with"
    while (n := await _batch_chunk(store, sealer, digests)) is not None:
        batches += n
        if batches % 1000 < n:
            logger.info("%s stored prediction ids: %d batches done", doing, batches)
    while n := await _outcome_chunk(store, digests, clock):
        outcomes += n
        if outcomes % 10000 < n:
            logger.info("%s stored outcome ids: %d outcomes done", doing, outcomes)
    async with store.begin() as conn:
        t = id_key_table
        final = _DONE if digests.enabled else _CLEAR
        await conn.execute(t.update().where(t.c.name == ID_KEY_NAME).values(state=final))
    if batches or outcomes:
        logger.info(
            "stored ids %s: %d prediction batches and %d outcomes rewritten",
            "digested" if digests.enabled else "kept in clear, their values sealed",
            batches,
            outcomes,
        )


async def _batch_chunk(store: Store, sealer: Sealer, digests: IdDigests) -> int | None:
    """Digest the ids of the next stored batches; None when none is left."""
    b, i, t = prediction_batches_table, prediction_ids_table, id_key_table
    async with store.begin() as conn:
        await lock_for_transaction(conn, INGEST_LOCKS, "id-migration")
        done = sa.select(t.c.migrated_batch).where(t.c.name == ID_KEY_NAME)
        last = int((await conn.execute(done)).scalar_one())
        raw = sa.type_coerce(b.c.data, sa.LargeBinary())
        query = sa.select(b.c.seq, b.c.model, raw).where(b.c.seq > last).order_by(b.c.seq)
        rows = (await conn.execute(query.limit(_BATCHES_PER_CHUNK))).all()
        if not rows:
            return None
        for seq, model, data in rows:
            data = bytes(data)
            blob = sealer.open_stored(data, "prediction_batches")
            assert isinstance(blob, bytes)
            ids = digests.of(model, orjson.loads(blob)["id"])
            await conn.execute(i.delete().where(i.c.batch == seq))
            await conn.execute(i.insert(), [{"model": model, "id": d, "batch": seq} for d in ids])
            if not is_sealed(data):  # stored while encryption was off: sealed now
                await conn.execute(b.update().where(b.c.seq == seq).values(data=blob))
        moved = await conn.execute(
            t.update()
            .where(t.c.name == ID_KEY_NAME, t.c.migrated_batch == last)
            .values(migrated_batch=rows[-1][0])
        )
        if moved.rowcount != 1:  # cannot happen under the lock; never commit a race
            raise RuntimeError("the id migration's progress moved under it")
    return len(rows)


async def _outcome_chunk(store: Store, digests: IdDigests, clock: Callable[[], float]) -> int:
    """Digest and seal the next outcomes stored in clear; how many (0: none left)."""
    o = outcomes_table
    async with store.begin() as conn:
        await lock_for_transaction(conn, INGEST_LOCKS, "id-migration")
        clear = (o.c.sealed.is_(None), o.c.sealed_key.is_(None))
        query = (
            sa.select(o.c.model, *(o.c[name] for name in RAW_OUTCOME))
            .where(*clear)
            .order_by(o.c.model, o.c.id)
            .limit(_OUTCOMES_PER_CHUNK)
        )
        rows = (await conn.execute(query)).all()
        if not rows:
            return 0
        update = (
            o.update()
            .where(o.c.model == sa.bindparam("m"), o.c.id == sa.bindparam("old"), *clear)
            .values(
                id=sa.bindparam("new"),
                sealed_key=sa.bindparam("key"),
                **{name: None for name in RAW_OUTCOME[1:]},
            )
        )
        params: list[dict[str, Any]] = []
        now = clock()
        for model in dict.fromkeys(row[0] for row in rows):
            # One data key per model in the chunk, stored in its transaction.
            raw = [
                {**dict(zip(RAW_OUTCOME, row[1:], strict=True)), "model": model}
                for row in rows
                if row[0] == model
            ]
            clear_ids = [r["id"] for r in raw]
            digest = dict(zip(clear_ids, digests.of(model, clear_ids), strict=True))
            stored = await seal_outcomes(conn, raw, digest, now, True)
            params += [
                {"m": model, "old": old, "new": new["id"], "key": new["sealed_key"]}
                for old, new in zip(clear_ids, stored, strict=True)
            ]
        await conn.execute(update, params)
    return len(rows)
