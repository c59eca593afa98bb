"""The statements that store and read predictions fast (their tables: ``tables.py``).

On SQLite the per-record rows are written and looked up with one statement per batch
(``json_each`` over a JSON array of the ids), which keeps the per-record cost inside
SQLite; on PostgreSQL the same statements take the ids as one array parameter
(``unnest``, ``= ANY``). Concurrent daemons on PostgreSQL are kept honest by the primary
keys: the id rows are inserted ``ON CONFLICT DO NOTHING`` and a shortfall refuses the
batch, and a sender's batch id is claimed the same way (:func:`claim_batch_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TypedDict, cast

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.encryption import SealedBytes
from ..core.store import insert_ignore
from .batches import BatchRejected, PredictionBatch
from .ids import IdDigests
from .prepare import PreparedBatch
from .tables import (
    batch_ids_table,
    journal_table,
    prediction_batches_table,
    prediction_ids_table,
)

__all__ = [
    "AtRest",
    "StoredPrediction",
    "at_rest",
    "check_new_ids",
    "claim_batch_id",
    "count_stored",
    "insert_rows",
    "known_batch",
    "purge_predictions",
    "store_predictions",
    "stored_predictions",
    "window_predictions",
]

#: Stored batches the label join holds decoded at once: its memory is this many batches
#: (each at most ``monitoring.max_batch_records`` rows), however many the labels touch.
_BATCHES_PER_READ = 16
_TEXTS = ARRAY(sa.String)


class AtRest(NamedTuple):
    """A prepared batch as the writer stores it (:func:`at_rest`)."""

    clear: list[str]  # its ids as sent
    ids: list[str]  # as the store keys them (ids.IdDigests: digests with encryption on)
    predictions: bytes  # its prediction_batches blob, sealed
    journal: list[bytes]  # the journal blob of each of its parts, sealed


async def at_rest(digests: IdDigests, model: str, prepared: PreparedBatch) -> AtRest:
    """``prepared`` as it is stored, made before the writer takes it: its ids digested and
    its blobs sealed (SealedBytes.seal_ahead) in a thread for a large batch with
    encryption on, outside the single writer's transaction and the event loop."""
    clear = prepared.batch.ids.tolist()
    data = cast("SealedBytes", prediction_batches_table.c.data.type)
    columns = cast("SealedBytes", journal_table.c.columns.type)

    def make() -> AtRest:
        journal = [columns.seal_ahead(blob) for _, blob, _ in prepared.parts]
        return AtRest(
            clear, digests.of(model, clear), data.seal_ahead(prepared.predictions), journal
        )

    return await digests.run(len(clear), make)


async def insert_rows(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Sequence[tuple[object, ...]],
    skip_first: bool = False,
) -> None:
    """Insert positional rows fast (one executemany at the driver level)."""
    if not rows:
        return
    columns = [c.name for c in table.columns][1 if skip_first else 0 :]
    if conn.dialect.name == "sqlite":
        rows = _bind_sealed(conn, table, columns, rows)
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
        await conn.exec_driver_sql(sql, rows)
    else:
        await conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])


def _bind_sealed(
    conn: AsyncConnection,
    table: sa.Table,
    columns: list[str],
    rows: Sequence[tuple[object, ...]],
) -> Sequence[tuple[object, ...]]:
    """``rows`` with the values of sealed columns sealed (the driver-level path skips types)."""
    sealed: list[tuple[int, SealedBytes]] = [
        (n, kind)
        for n, name in enumerate(columns)
        if isinstance(kind := table.c[name].type, SealedBytes)
    ]
    if not sealed:
        return rows
    out = []
    for row in rows:
        values = list(row)
        for n, kind in sealed:
            values[n] = kind.process_bind_param(values[n], conn.dialect)  # type: ignore[arg-type]
        out.append(tuple(values))
    return out


async def store_predictions(
    conn: AsyncConnection,
    model: str,
    batch: PredictionBatch,
    blob: bytes,
    ids: list[str],
) -> None:
    """Insert ``batch`` (one batch row, one id row per record) in ``conn``'s transaction.

    ``blob`` is its columns as prepare.encode_predictions wrote them; ``ids`` its ids as
    the store keys them (ids.IdDigests: digests with encryption on).
    """
    b, i = prediction_batches_table, prediction_ids_table
    values = {
        "model": model,
        "ts_min": float(batch.ts.min()),
        "ts_max": float(batch.ts.max()),
        "rows": len(batch),
        "data": blob,
    }
    key = (await conn.execute(b.insert().values(**values))).inserted_primary_key
    assert key is not None  # None only for an executemany
    seq = key[0]
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql(
            "INSERT INTO prediction_ids (model, id, batch) SELECT ?, value, ? FROM json_each(?)",
            (model, seq, orjson.dumps(ids).decode()),
        )
        return
    # Another daemon may have stored one of these ids since check_new_ids looked (its
    # transaction was not committed yet): the insert waits for it, skips the clash, and
    # the shortfall refuses this batch (the caller's savepoint undoes its rows).
    unnested = sa.select(
        sa.literal(model, sa.String),
        sa.func.unnest(sa.bindparam("ids", type_=_TEXTS)),
        sa.literal(seq, sa.Integer),
    )
    inserted = await conn.execute(
        insert_ignore(conn.dialect, i).from_select(["model", "id", "batch"], unnested),
        {"ids": ids},
    )
    if inserted.rowcount != len(ids):
        await check_new_ids(conn, model, ids, batch.ids.tolist(), exclude_batch=seq)
        raise BatchRejected(
            "duplicate_id",
            f"a prediction id of this batch was just stored for model {model!r}",
            status=409,
        )


async def _batches_of(
    conn: AsyncConnection,
    model: str,
    ids: list[str],
    limit: int | None,
    exclude_batch: int | None = None,
) -> Sequence[sa.Row[str, int]]:
    """(id, batch) of the stored ``ids`` of ``model``, at most ``limit`` of them."""
    if conn.dialect.name == "sqlite":
        # json_each drives the loop: one primary-key probe per id, one statement.
        sql = (
            "SELECT i.id, i.batch FROM json_each(?) AS j CROSS JOIN prediction_ids AS i"
            " ON i.model = ? AND i.id = j.value"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        result = await conn.exec_driver_sql(sql, (orjson.dumps(ids).decode(), model))
        # SQLAlchemy 2.1 types exec_driver_sql's result as CursorResult[Any], which its
        # variadic Row reads as rows of one column; textual SQL's rows have any (two here).
        return cast("Sequence[sa.Row[str, int]]", result.all())
    i = prediction_ids_table
    # One statement, the ids as one array parameter: a primary-key probe per id.
    query = sa.select(i.c.id, i.c.batch).where(
        i.c.model == model, i.c.id == sa.any_(sa.bindparam("ids", type_=_TEXTS))
    )
    if exclude_batch is not None:
        query = query.where(i.c.batch != exclude_batch)
    if limit is not None:
        query = query.limit(limit)
    return list((await conn.execute(query, {"ids": ids})).all())


async def check_new_ids(
    conn: AsyncConnection,
    model: str,
    ids: list[str],
    clear: list[str],
    exclude_batch: int | None = None,
) -> None:
    """BatchRejected (409) naming the first record whose id is stored already (by another
    batch than ``exclude_batch``). ``ids`` as the store keys them, ``clear`` as sent:
    the message names the id the client sent, never its digest."""
    found = await _batches_of(conn, model, ids, limit=1, exclude_batch=exclude_batch)
    if found:
        n = ids.index(found[0][0])
        raise BatchRejected(
            "duplicate_id",
            f"record {n} (id {clear[n]!r}), field 'id': a prediction with this id is "
            f"already stored for model {model!r}",
            status=409,
        )


class StoredPrediction(TypedDict):
    """A stored prediction as an ``outcomes`` row takes it (the label is added)."""

    id: str
    version: str
    ts: float
    prediction_num: float | None
    prediction_cls: str | None
    latency: float | None
    error: bool
    probability: float | None  # a binary classifier's P(positive class)
    probabilities: str | None  # a multiclass classifier's JSON {class: probability}


async def stored_predictions(
    conn: AsyncConnection, model: str, ids: dict[str, str]
) -> list[StoredPrediction]:
    """The stored predictions of ``model`` with these ids, as outcome-ready dicts.

    ``ids`` maps each id as the store keys it to the id as sent; the dicts hold the
    latter (read from the sealed batch blob).
    """
    found = await _batches_of(conn, model, list(ids), limit=None)
    if not found:
        return []
    wanted: dict[int, set[str]] = {}
    for rid, seq in found:
        wanted.setdefault(seq, set()).add(ids[rid])
    b = prediction_batches_table
    out: list[StoredPrediction] = []
    seqs = list(wanted)
    for start in range(0, len(seqs), _BATCHES_PER_READ):
        chunk = seqs[start : start + _BATCHES_PER_READ]
        query = sa.select(b.c.seq, b.c.data).where(b.c.seq.in_(chunk))
        for seq, data in (await conn.execute(query)).all():
            columns = orjson.loads(data)
            keep = wanted[seq]
            probability = columns.get("probability")
            by_class = columns.get("probabilities")
            for k, rid in enumerate(columns["id"]):
                if rid in keep:
                    prediction = columns["prediction"][k]
                    classification = isinstance(prediction, str)
                    out.append(
                        {
                            "id": rid,
                            "version": columns["version"][k],
                            "ts": columns["ts"][k],
                            "prediction_num": None if classification else prediction,
                            "prediction_cls": prediction if classification else None,
                            "latency": columns["latency"][k],
                            "error": columns["error"][k],
                            "probability": None if probability is None else probability[k],
                            "probabilities": None
                            if by_class is None
                            else orjson.dumps({c: v[k] for c, v in by_class.items()}).decode(),
                        }
                    )
    return out


async def window_predictions(
    conn: AsyncConnection, model: str, since: float, until: float
) -> list[bytes]:
    """The blobs of ``model``'s stored prediction batches that overlap [since, until)."""
    b = prediction_batches_table
    query = (
        sa.select(b.c.data)
        .where(b.c.model == model, b.c.ts_max >= since, b.c.ts_min < until)
        .order_by(b.c.seq)
    )
    return [bytes(data) for (data,) in (await conn.execute(query)).all()]


async def count_stored(conn: AsyncConnection, model: str, since: float) -> int:
    """Stored predictions of ``model`` with ``ts >= since``."""
    b = prediction_batches_table
    query = sa.select(sa.func.coalesce(sa.func.sum(b.c.rows), 0)).where(
        b.c.model == model, b.c.ts_min >= since
    )
    total = int((await conn.execute(query)).scalar() or 0)
    straddling = sa.select(b.c.data).where(
        b.c.model == model, b.c.ts_min < since, b.c.ts_max >= since
    )
    for (data,) in (await conn.execute(straddling)).all():
        total += int((np.asarray(orjson.loads(data)["ts"]) >= since).sum())
    return total


async def known_batch(conn: AsyncConnection, model: str, batch_id: str) -> int | None:
    """The records of the stored batch ``batch_id`` of ``model``, None if it is new."""
    t = batch_ids_table
    query = sa.select(t.c.rows).where(t.c.model == model, t.c.batch_id == batch_id)
    rows = (await conn.execute(query)).scalar()
    return None if rows is None else int(rows)


async def claim_batch_id(
    conn: AsyncConnection, model: str, batch_id: str, rows: int, now: float
) -> bool:
    """Record ``batch_id`` as stored; False if it already was (by a concurrent daemon).

    The insert waits for a concurrent transaction holding the same key, so of two
    daemons storing one batch id at once exactly one gets True.
    """
    t = batch_ids_table
    values = {"model": model, "batch_id": batch_id, "rows": rows, "created_at": now}
    result = await conn.execute(insert_ignore(conn.dialect, t).values(**values))
    return result.rowcount == 1


async def purge_predictions(conn: AsyncConnection, older_than: float) -> None:
    """Delete the batches whose every prediction is older than ``older_than``.

    The batch ids senders gave are kept as long (by the time they were stored).
    """
    b, i = prediction_batches_table, prediction_ids_table
    await conn.execute(batch_ids_table.delete().where(batch_ids_table.c.created_at < older_than))
    expired = sa.select(b.c.seq).where(b.c.ts_max < older_than)
    await conn.execute(i.delete().where(i.c.batch.in_(expired)))
    await conn.execute(b.delete().where(b.c.ts_max < older_than))
