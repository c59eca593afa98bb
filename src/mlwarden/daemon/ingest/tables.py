"""The ingest service's tables and the statements that write them fast.

Predictions are kept (for the label TTL) so that labels can join them by id. They are
stored column-wise, one ``prediction_batches`` row per accepted batch (its ids,
versions, times, predictions, latencies and errors as one JSON blob), plus one narrow
``prediction_ids`` row per record, keyed by (model, id), naming its batch: that index
is what finds a label's prediction and refuses an id already stored. On SQLite the
per-record rows are written and looked up with one statement per batch (``json_each``
over a JSON array of the ids), which keeps the per-record cost inside SQLite; on
PostgreSQL the same statements take the ids as one array parameter (``unnest``,
``= ANY``). Concurrent daemons on PostgreSQL are kept honest by the primary keys: the
id rows are inserted ``ON CONFLICT DO NOTHING`` and a shortfall refuses the batch, and a
sender's batch id is claimed the same way (:func:`claim_batch_id`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, cast

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.encryption import SealedBytes, SealedRows
from ..core.store import Schema, create_tables, insert_ignore
from ..profiles.reference import reference_table
from .batches import BatchRejected, PredictionBatch
from .ids import id_key_table, outcome_keys_table

__all__ = [
    "INGEST_SCHEMA",
    "StoredPrediction",
    "batch_ids_table",
    "check_new_ids",
    "claim_batch_id",
    "count_stored",
    "insert_rows",
    "journal_table",
    "known_batch",
    "outcomes_table",
    "prediction_batches_table",
    "prediction_ids_table",
    "profile_table",
    "purge_predictions",
    "store_predictions",
    "stored_predictions",
    "window_predictions",
]

#: Stored batches the label join holds decoded at once: its memory is this many batches
#: (each at most ``monitoring.max_batch_records`` rows), however many the labels touch.
_BATCHES_PER_READ = 16
_TEXTS = ARRAY(sa.String)

_meta = sa.MetaData()
#: The first layout (one row per prediction); migration step 2 moves its rows out.
_legacy_predictions_table = sa.Table(
    "predictions",
    _meta,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("prediction_num", sa.Float, nullable=True),
    sa.Column("prediction_cls", sa.Text, nullable=True),
    sa.Column("latency", sa.Float, nullable=True),
    sa.Column("error", sa.Boolean, nullable=False),
    sa.Index("ix_predictions_model_ts", "model", "ts"),
)
outcomes_table = sa.Table(
    "outcomes",
    _meta,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("prediction_num", sa.Float, nullable=True),
    sa.Column("prediction_cls", sa.Text, nullable=True),
    sa.Column("label_num", sa.Float, nullable=True),
    sa.Column("label_cls", sa.Text, nullable=True),
    sa.Column("latency", sa.Float, nullable=True),
    sa.Column("error", sa.Boolean, nullable=False),
    sa.Column("labeled_at", sa.Float, nullable=False),
    # A classifier's scores, as its prediction carried them (step 5; NULL: none):
    # P(positive class) of a binary model, or JSON {class: probability}.
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("probabilities", sa.Text, nullable=True),
    # With encryption on (step 7): ``id`` is a digest and this holds the raw values
    # (ids.RAW_OUTCOME: the clear id, prediction, label, scores), their columns NULL,
    # sealed under the label batch's data key: the outcome_keys row ``sealed_key``
    # (step 8; NULL: one envelope per row, as step 7 wrote them).
    sa.Column("sealed", SealedRows("outcomes"), nullable=True),
    sa.Column("sealed_key", sa.Integer, nullable=True),
    sa.Index("ix_outcomes_model_version_ts", "model", "version", "ts"),
)
profile_table = sa.Table(
    "profile_buckets",
    _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("bucket_start", sa.Float, nullable=False),
    sa.Column("layout", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("has_sample", sa.Boolean, nullable=False),
    # Sealed with encryption on: a profile carries a sample of raw rows.
    sa.Column("profile", SealedBytes("profile_buckets"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # The daemon that wrote it (Config.instance; NULL: written before step 4).
    sa.Column("writer", sa.String(200), nullable=True),
    sa.Index("ix_profile_buckets_model_start", "model", "bucket_start"),
)
journal_table = sa.Table(
    "ingest_journal",
    _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("bucket_start", sa.Float, nullable=False),
    sa.Column("layout", sa.String(64), nullable=False),
    sa.Column("columns", SealedBytes("ingest_journal"), nullable=False),
    # The daemon whose open bucket holds it (Config.instance; NULL: before step 4).
    sa.Column("writer", sa.String(200), nullable=True),
    sa.Index("ix_ingest_journal_bucket", "model", "version", "bucket_start"),
)

prediction_batches_table = sa.Table(
    "prediction_batches",
    _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("ts_min", sa.Float, nullable=False),
    sa.Column("ts_max", sa.Float, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("data", SealedBytes("prediction_batches"), nullable=False),  # encode_predictions
    sa.Index("ix_prediction_batches_model_ts", "model", "ts_max"),
)
prediction_ids_table = sa.Table(
    "prediction_ids",
    _meta,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("batch", sa.Integer, nullable=False),
    sa.Index("ix_prediction_ids_batch", "batch"),
    sqlite_with_rowid=False,
)

#: Batch ids a sender gave (``Mlwarden-Batch-Id``): a retried batch is stored once.
batch_ids_table = sa.Table(
    "ingest_batch_ids",
    _meta,
    sa.Column("model", sa.String(200), primary_key=True),
    sa.Column("batch_id", sa.String(200), primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_ingest_batch_ids_created", "created_at"),
)


def _columnar_predictions(conn: sa.Connection) -> None:
    """Store predictions per batch (prediction_batches + prediction_ids)."""
    prediction_batches_table.create(conn)
    prediction_ids_table.create(conn)
    p = _legacy_predictions_table
    rows = conn.execute(sa.select(p).order_by(p.c.model, p.c.ts, p.c.id)).all()
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        for model in dict.fromkeys(r.model for r in chunk):
            part = [r for r in chunk if r.model == model]
            batch = {
                "id": [r.id for r in part],
                "version": [r.version for r in part],
                "ts": [r.ts for r in part],
                "prediction": [
                    r.prediction_cls if r.prediction_num is None else r.prediction_num for r in part
                ],
                "latency": [r.latency for r in part],
                "error": [bool(r.error) for r in part],
            }
            inserted = conn.execute(
                prediction_batches_table.insert().values(
                    model=model,
                    ts_min=min(batch["ts"]),
                    ts_max=max(batch["ts"]),
                    rows=len(part),
                    data=orjson.dumps(batch),
                )
            ).inserted_primary_key
            assert inserted is not None
            seq = inserted[0]
            conn.execute(
                prediction_ids_table.insert(),
                [{"model": model, "id": r.id, "batch": seq} for r in part],
            )
    p.drop(conn)


def _writer_columns(conn: sa.Connection) -> None:
    """Add ``writer`` to profile_buckets and ingest_journal (several daemons, one store)."""
    inspector = sa.inspect(conn)
    for table in (profile_table, journal_table):
        # A store created by this release made the column with its table in step 1.
        if "writer" not in {c["name"] for c in inspector.get_columns(table.name)}:
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN writer VARCHAR(200)"))


def _outcome_scores(conn: sa.Connection) -> None:
    """Add the scores to ``outcomes`` (realized ROC AUC needs them)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(outcomes_table.name)}
    for name, kind in (("probability", "FLOAT"), ("probabilities", "TEXT")):
        if name not in present:  # a store created by this release has them from step 1
            conn.execute(sa.text(f"ALTER TABLE outcomes ADD COLUMN {name} {kind}"))


def _reference_uploads(conn: sa.Connection) -> None:
    """Add the uploaded body and its media type to ``reference_profiles`` (uploads.py)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(reference_table.name)}
    binary = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
    for name, kind in (("upload", binary), ("upload_type", "VARCHAR(100)")):
        if name not in present:  # a store created by this release has them from step 1
            conn.execute(sa.text(f"ALTER TABLE {reference_table.name} ADD COLUMN {name} {kind}"))


def _sealed_outcomes(conn: sa.Connection) -> None:
    """Add ``outcomes.sealed`` and the id key's table (ids digested, daemon/ingest/ids.py)."""
    id_key_table.create(conn, checkfirst=True)  # made by this step, unless re-run
    if "sealed" not in {c["name"] for c in sa.inspect(conn).get_columns(outcomes_table.name)}:
        kind = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
        conn.execute(sa.text(f"ALTER TABLE outcomes ADD COLUMN sealed {kind}"))


def _outcome_keys(conn: sa.Connection) -> None:
    """Add ``outcome_keys`` and ``outcomes.sealed_key``: one data key per label batch."""
    outcome_keys_table.create(conn, checkfirst=True)  # made by this step, unless re-run
    if "sealed_key" not in {c["name"] for c in sa.inspect(conn).get_columns("outcomes")}:
        conn.execute(sa.text("ALTER TABLE outcomes ADD COLUMN sealed_key INTEGER"))


INGEST_SCHEMA = Schema(
    "ingest",
    [
        create_tables(
            _legacy_predictions_table,
            outcomes_table,
            profile_table,
            journal_table,
            reference_table,
        ),
        _columnar_predictions,
        create_tables(batch_ids_table),
        _writer_columns,
        _outcome_scores,
        _reference_uploads,
        _sealed_outcomes,
        _outcome_keys,
    ],
)


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
