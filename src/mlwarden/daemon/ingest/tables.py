"""The ingest service's tables and the schema steps that made them.

Predictions are kept (for the label TTL) so that labels can join them by id. They are
stored column-wise, one ``prediction_batches`` row per accepted batch (its ids,
versions, times, predictions, latencies and errors as one JSON blob), plus one narrow
``prediction_ids`` row per record, keyed by (model, id), naming its batch: that index
is what finds a label's prediction and refuses an id already stored. The statements
that write and read them fast are in ``predictions.py``.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from ..core.encryption import SealedBytes, SealedRows
from ..core.store import Schema, create_tables
from ..profiles.reference import reference_table
from .ids import ID_KEY_NAME, digest_of_hex, id_key_table, outcome_keys_table

__all__ = [
    "INGEST_SCHEMA",
    "batch_ids_table",
    "journal_table",
    "outcomes_table",
    "prediction_batches_table",
    "prediction_ids_table",
    "profile_table",
]

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
    # (step 8; NULL: one envelope per row, as step 7 wrote them). From step 9 the raw
    # values are in that row (sealed together with the batch's) and this is NULL.
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


def _outcome_batches(conn: sa.Connection) -> None:
    """Add ``outcome_keys.sealed``: a label batch's outcomes sealed together (ids.py)."""
    if "sealed" not in {c["name"] for c in sa.inspect(conn).get_columns("outcome_keys")}:
        kind = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
        conn.execute(sa.text(f"ALTER TABLE outcome_keys ADD COLUMN sealed {kind}"))


def _short_digests(conn: sa.Connection) -> None:
    """Store id digests as 22 base64 characters, not 32 hex ones (the same 128 bits)."""
    k = id_key_table
    key = conn.execute(
        sa.select(k.c.state, k.c.migrated_batch).where(k.c.name == ID_KEY_NAME)
    ).first()
    if key is None:  # encryption never on: every id is as sent
        return
    i, o = prediction_ids_table, outcomes_table
    ids = sa.select(i.c.model, i.c.id)
    if key.state != "done":  # digested up to this batch so far (id_migration.py)
        ids = ids.where(i.c.batch <= key.migrated_batch)
    _rewrite_digests(conn, i, ids)
    sealed = sa.or_(o.c.sealed.is_not(None), o.c.sealed_key.is_not(None))
    _rewrite_digests(conn, o, sa.select(o.c.model, o.c.id).where(sealed))


def _rewrite_digests(conn: sa.Connection, table: sa.Table, query: sa.Select[Any]) -> None:
    params = [
        {"m": model, "old": old, "new": new}
        for model, old in conn.execute(query).all()
        if (new := digest_of_hex(old)) is not None
    ]
    t = table
    update = (
        t.update()
        .where(t.c.model == sa.bindparam("m"), t.c.id == sa.bindparam("old"))
        .values(id=sa.bindparam("new"))
    )
    for start in range(0, len(params), 5000):
        conn.execute(update, params[start : start + 5000])


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
        _outcome_batches,
        _short_digests,
    ],
)
