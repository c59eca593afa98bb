"""The ingest service's tables and the statements that write them fast."""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from .batches import BatchRejected, PredictionBatch
from .reference import reference_table
from .store import Schema, create_tables

__all__ = [
    "INGEST_SCHEMA",
    "check_new_ids",
    "insert_rows",
    "journal_table",
    "nullable",
    "outcomes_table",
    "predictions_table",
    "profile_table",
]

_ID_CHUNK = 500

_meta = sa.MetaData()
predictions_table = sa.Table(
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
    sa.Column("profile", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
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
    sa.Column("columns", sa.LargeBinary, nullable=False),
    sa.Index("ix_ingest_journal_bucket", "model", "version", "bucket_start"),
)

INGEST_SCHEMA = Schema(
    "ingest",
    [
        create_tables(
            predictions_table, outcomes_table, profile_table, journal_table, reference_table
        )
    ],
)


def nullable(values: np.ndarray) -> list[Any]:
    out = values.tolist()
    if np.isnan(values).any():
        return [None if v != v else v for v in out]
    return out


async def insert_rows(
    conn: Any, table: sa.Table, rows: list[tuple[Any, ...]], skip_first: bool = False
) -> None:
    """Insert positional rows fast (one executemany at the driver level)."""
    if not rows:
        return
    columns = [c.name for c in table.columns][1 if skip_first else 0 :]
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"
        await conn.exec_driver_sql(sql, rows)
    else:
        await conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])


async def check_new_ids(conn: Any, model: str, batch: PredictionBatch) -> None:
    p = predictions_table
    ids = batch.ids.tolist()
    for i in range(0, len(ids), _ID_CHUNK):
        query = sa.select(p.c.id).where(p.c.model == model, p.c.id.in_(ids[i : i + _ID_CHUNK]))
        found = (await conn.execute(query.limit(1))).scalar()
        if found is not None:
            index = ids.index(found)
            raise BatchRejected(
                "duplicate_id",
                f"record {index} (id {found!r}), field 'id': a prediction with this id is "
                f"already stored for model {model!r}",
                status=409,
            )
