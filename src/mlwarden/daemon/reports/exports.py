"""Exports: history tables as CSV, Parquet or JSON, streamed from the database.

Each kind (:data:`EXPORT_KINDS`) names a table, its typed output columns and how one
stored row becomes one output row. :func:`export_chunks` reads the rows in chunks of
:data:`CHUNK_ROWS` from a streaming cursor and encodes each chunk in a thread (a CSV
block, a Parquet row group, a slice of a JSON array), so neither the event loop nor the
daemon's memory sees more than one chunk at a time, however long the range.

Memory of a Parquet export (1M audit rows, a real daemon; docs/reports.md). Arrow's
live allocations stay under 5 MB: one row group at a time, bounded by
:data:`ROW_GROUP_ROWS` and :data:`ROW_GROUP_BYTES`, and its encoders. What the RSS does
is the allocators' doing:

- Arrow's default pool (mimalloc in the wheels) gives each thread a heap of its own,
  and the pages of a thread that ends stayed with the process: the first export (one
  fresh thread per export) left some 24 MB behind. The export's own Arrow data
  therefore comes from Arrow's *system* pool, glibc's malloc as the daemon tunes it
  (daemon/core/memory.py), and the export gives freed memory back when it ends, also
  when its client goes away (:func:`release_memory`): 1-4 MB stay, not 24.
- The Parquet writer takes some buffers from the default pool whatever pool it is
  given (about 2 MB live), and mimalloc keeps freed pages for its ``purge_delay``
  (1 s): some 15 of the 20-25 MB an export adds at its peak. An operator who wants
  that lower sets ``MIMALLOC_PURGE_DELAY=0`` for the daemon (peak about 13 MB), at
  the cost of more page faults for every Arrow user in the process.
- The first Parquet file a process writes pages in the writer's code and builds its
  static state, about 8 MB that stay (5 MB of it code): :func:`warm_parquet` pays
  that when the report service starts, so that an export's growth is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from ...errors import InvalidInput
from ..core.audit import audit_table
from ..core.memory import release_memory
from ..core.store import Store
from ..experiments.records import experiments_table
from ..monitoring.drift import reports_table
from ..monitoring.performance import history_table
from ..rollouts.records import rollouts_table
from .period import Period
from .profiles import ProfileSummaries

__all__ = [
    "CHUNK_ROWS",
    "EXPORT_FORMATS",
    "EXPORT_KINDS",
    "ExportFormat",
    "ExportKind",
    "export_chunks",
    "export_kind",
    "media_type",
    "warm_parquet",
]

#: Rows read and encoded at a time: small, so that what the event loop does per
#: piece (the driver's rows) stays a few milliseconds.
CHUNK_ROWS = 500
#: Rows per Parquet row group (what readers skip by; each costs footer metadata).
ROW_GROUP_ROWS = 8_000
#: A row group is written once its Arrow data reaches this size, however few its rows
#: (rows with long texts, such as audit details): the encoder holds one group at a time.
ROW_GROUP_BYTES = 4 * 2**20
#: The pool of the export's Arrow data: glibc's malloc (see the module's docstring).
EXPORT_POOL = pa.system_memory_pool()
ExportFormat = Literal["csv", "parquet", "json"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet", "json")
_MEDIA = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
}

Row = Mapping[str, Any]


@dataclass(frozen=True)
class ExportKind:
    """One export: its table, the time and model columns it is filtered on, its columns."""

    name: str
    table: sa.Table
    time_column: str
    model_column: str | None
    columns: tuple[tuple[str, pa.DataType], ...]
    convert: Callable[[Row], tuple[Any, ...]]
    description: str

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(name, kind) for name, kind in self.columns])

    def query(self, period: Period, model: str | None) -> sa.Select[Any]:
        table = self.table
        ts = table.c[self.time_column]
        query = sa.select(table).where(ts >= period.since, ts <= period.until)
        if model is not None:
            if self.model_column is None:
                # The audit log has no model column: its target names the model.
                query = query.where(table.c.target.contains(model, autoescape=True))
            else:
                query = query.where(table.c[self.model_column] == model)
        return query.order_by(*table.primary_key.columns)


def _json_list(text: str, key: str) -> str:
    value = json.loads(text).get(key) or []
    return ",".join(str(v) for v in value)


def _drift(r: Row) -> tuple[Any, ...]:
    report = json.loads(r["report"])
    return (
        r["id"], r["model"], r["ts"], r["source"], r["drift_score"], bool(r["drift_detected"]),
        r["recommendation"], report.get("status", "ok"), report.get("rows", {}).get("current"),
        ",".join(report.get("drifted_features") or []),
    )  # fmt: skip


def _performance(r: Row) -> tuple[Any, ...]:
    metrics = json.loads(r["metrics"])
    return (
        r["id"], r["model"], r["version"], r["ts"], r["since"], r["until"], r["samples"],
        json.dumps(metrics, sort_keys=True, default=str),
    )  # fmt: skip


def _experiment(r: Row) -> tuple[Any, ...]:
    result = json.loads(r["result"]) if r["result"] else {}
    return (
        r["id"], r["name"], r["model"], r["version_a"], r["version_b"], r["weight_b"],
        r["status"], r["started_at"], r["ends_at"], r["concluded_at"], r["actor"],
        r["evaluations"], r["recommendation"], r["winner"], result.get("p_value"),
        result.get("lift"),
    )  # fmt: skip


def _rollout(r: Row) -> tuple[Any, ...]:
    return (
        r["id"], r["model"], r["candidate"], r["baseline"], r["strategy"], r["state"], r["step"],
        r["weight"], r["started_at"], r["finished_at"], r["actor"], r["reason"],
    )  # fmt: skip


def _audit(r: Row) -> tuple[Any, ...]:
    return (
        r["id"], r["ts"], r["actor"], r["action"], r["target"], r["outcome"], r["detail"],
        r["prev_hash"], r["hash"],
    )  # fmt: skip


_S, _F, _I, _B = pa.string(), pa.float64(), pa.int64(), pa.bool_()

EXPORT_KINDS: dict[str, ExportKind] = {
    kind.name: kind
    for kind in (
        ExportKind(
            "drift", reports_table, "ts", "model",
            (("id", _I), ("model", _S), ("ts", _F), ("source", _S), ("drift_score", _F),
             ("drift_detected", _B), ("recommendation", _S), ("status", _S),
             ("rows", _I), ("drifted_features", _S)),
            _drift, "every stored drift check",
        ),
        ExportKind(
            "performance", history_table, "ts", "model",
            (("id", _I), ("model", _S), ("version", _S), ("ts", _F), ("since", _F),
             ("until", _F), ("samples", _I), ("metrics", _S)),
            _performance, "every measured performance window (metrics as a JSON object)",
        ),
        ExportKind(
            "profiles", ProfileSummaries.table, "bucket_start", "model",
            ProfileSummaries.columns, ProfileSummaries.unused,
            "per stored profile window (bucket) and feature: count, missing, moments",
        ),
        ExportKind(
            "experiments", experiments_table, "started_at", "model",
            (("id", _S), ("name", _S), ("model", _S), ("version_a", _S), ("version_b", _S),
             ("weight_b", _F), ("status", _S), ("started_at", _F), ("ends_at", _F),
             ("concluded_at", _F), ("actor", _S), ("evaluations", _I),
             ("recommendation", _S), ("winner", _S), ("p_value", _F), ("lift", _F)),
            _experiment, "every A/B test and its latest result",
        ),
        ExportKind(
            "rollouts", rollouts_table, "started_at", "model",
            (("id", _S), ("model", _S), ("candidate", _S), ("baseline", _S),
             ("strategy", _S), ("state", _S), ("step", _I), ("weight", _F),
             ("started_at", _F), ("finished_at", _F), ("actor", _S), ("reason", _S)),
            _rollout, "every rollout with its final state",
        ),
        ExportKind(
            "audit", audit_table, "ts", None,
            (("id", _I), ("ts", _F), ("actor", _S), ("action", _S), ("target", _S),
             ("outcome", _S), ("detail", _S), ("prev_hash", _S), ("hash", _S)),
            _audit, "the audit log (model: entries whose target names it)",
        ),
    )
}  # fmt: skip


def export_kind(name: str) -> ExportKind:
    """The export ``name``; InvalidInput lists the kinds."""
    kind = EXPORT_KINDS.get(name)
    if kind is None:
        raise InvalidInput(
            f"unknown export kind {name!r}: expected one of {', '.join(sorted(EXPORT_KINDS))}"
        )
    return kind


def export_format(name: str) -> ExportFormat:
    """``name`` as an export format; InvalidInput lists the formats."""
    for fmt in EXPORT_FORMATS:
        if fmt == name:
            return fmt
    raise InvalidInput(
        f"query parameter 'format' must be one of {', '.join(EXPORT_FORMATS)}, got {name!r}"
    )


def media_type(fmt: ExportFormat) -> str:
    return _MEDIA[fmt]


class _Drain(io.RawIOBase):
    """A write-only file that keeps what was written until it is drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._size += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._size

    def drain(self) -> bytes:
        out, self._parts = b"".join(self._parts), []
        return out


class _Encoder:
    """Encodes chunks of output rows in one format; ``finish`` ends the file."""

    def __init__(self, kind: ExportKind, fmt: ExportFormat) -> None:
        self.kind = kind
        self.fmt = fmt
        self.names = [name for name, _ in kind.columns]
        self.started = False
        self._sink = _Drain()
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0

    def encode(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        if self.fmt == "csv":
            return self._csv(rows)
        if self.fmt == "json":
            return self._json(rows)
        return self._parquet(rows)

    def finish(self) -> bytes:
        if self.fmt == "csv":
            return b"" if self.started else self._csv([])
        if self.fmt == "json":
            return b"]\n" if self.started else b"[]\n"
        head = self._parquet([], flush=True) if self._writer is None or self._pending else b""
        assert self._writer is not None
        self._writer.close()
        return head + self._sink.drain()

    def _csv(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        if not self.started:
            writer.writerow(self.names)
            self.started = True
        writer.writerows(tuple(_csv_cell(v) for v in row) for row in rows)
        return text.getvalue().encode()

    def _json(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        parts = []
        for row in rows:
            item = json.dumps(dict(zip(self.names, map(_json_cell, row), strict=True)))
            parts.append(("[\n" if not self.started else ",\n") + item)
            self.started = True
        return "".join(parts).encode()

    def _parquet(self, rows: Sequence[tuple[Any, ...]], flush: bool = False) -> bytes:
        """Rows are kept as Arrow columns until a row group is full, then written."""
        schema = self.kind.schema
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._sink, schema, memory_pool=EXPORT_POOL)
        if rows:
            columns = list(zip(*rows, strict=True))
            arrays = [
                pa.array(c, type=t, memory_pool=EXPORT_POOL)
                for c, t in zip(columns, schema.types, strict=True)
            ]
            part = pa.Table.from_arrays(arrays, schema=schema)
            self._pending.append(part)
            self._pending_rows += len(rows)
            self._pending_bytes += part.nbytes
        full = self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES
        if full or (flush and self._pending):
            group = pa.concat_tables(self._pending).combine_chunks(memory_pool=EXPORT_POOL)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._writer.write_table(group, row_group_size=max(group.num_rows, 1))
        elif flush:
            self._writer.write_table(schema.empty_table())
        return self._sink.drain()


def _csv_cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _json_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


async def export_chunks(
    store: Store,
    kind: ExportKind,
    fmt: ExportFormat,
    period: Period,
    model: str | None,
    *,
    rows_of: Callable[[Row], Sequence[tuple[Any, ...]]] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> AsyncIterator[bytes]:
    """The export file of ``kind`` in ``fmt``, in pieces of about ``chunk_rows`` rows.

    ``rows_of`` turns one stored row into its output rows (the profile summaries: one
    per feature); by default the kind's ``convert`` makes one.
    """
    encoder = _Encoder(kind, fmt)
    convert = rows_of or (lambda row: (kind.convert(row),))

    def encode(part: Sequence[Row]) -> bytes:
        return encoder.encode([out for row in part for out in convert(row)])

    query = kind.query(period, model).execution_options(yield_per=chunk_rows)
    loop = asyncio.get_running_loop()
    # One thread encodes the whole file, so the encoder's state is only touched there.
    thread = ThreadPoolExecutor(1, thread_name_prefix=f"export-{kind.name}")
    try:
        async with store.connect() as conn:
            result = await conn.stream(query)
            async for part in result.mappings().partitions(chunk_rows):
                data = await loop.run_in_executor(thread, encode, part)
                if data:
                    yield data
        yield await loop.run_in_executor(thread, encoder.finish)
    finally:
        # Also when the client went away mid-file: the thread gives the freed memory
        # back after its last piece and ends; the event loop does not wait for it.
        with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
            thread.submit(release_memory)
        thread.shutdown(wait=False)


def warm_parquet() -> None:
    """Write a one-row Parquet file to memory, paying once what the first Parquet
    export in a process pays (the writer's code paged in, its static state built).

    Called when the report service starts, so that an export's cost is its own.
    """
    kind = EXPORT_KINDS["audit"]
    encoder = _Encoder(kind, "parquet")
    row = tuple({"int64": 0, "double": 0.0, "bool": False}.get(str(t), "") for _, t in kind.columns)
    encoder.encode([row])
    encoder.finish()
    release_memory()
