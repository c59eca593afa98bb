"""``mlwarden backfill``: past predictions (and labels) from a Parquet or CSV file.

The file is read with pyarrow (``.parquet``/``.pq``, or ``.csv``), sorted by ``ts``
(unix seconds or a timestamp column; the file's order when it has none) and sent in
batches of ``batch_rows`` as Arrow IPC bodies, each with its own batch id and
retried like the client's (5xx and connection errors, with backoff). Each batch is
stored whole or not at all: a batch the daemon refuses (4xx) is reported with its row
range in the sorted file and the daemon's message, nothing of it is stored, and the
other batches go on. A ``label`` column (or ``--label-column``) is sent afterwards to
the labels endpoint. The daemon refuses times older than
``monitoring.retention_days``: those rows are reported as refused ranges. A
classifier's scores are columns of the file, sent as they are: ``probability``
(binary) or ``probabilities.<class>`` (docs/api.md); a bad score refuses its batch.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ._core import Client, _ipc

__all__ = ["BackfillSummary", "backfill", "read_file"]


@dataclass
class BackfillSummary:
    rows: int = 0
    loaded: int = 0
    labels: int = 0
    batches: int = 0
    refused: list[tuple[int, int, str]] = field(default_factory=list)  # (first, last, why)

    @property
    def ok(self) -> bool:
        return not self.refused


def read_file(path: Path) -> Any:
    """The file's table, sorted by ``ts`` when it has one."""
    import pyarrow.compute as pc

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
    else:
        raise ValueError(f"{path}: expected a .parquet or .csv file")
    if "ts" in table.column_names:
        table = table.take(pc.sort_indices(table, [("ts", "ascending")]))
    return table


def backfill(
    url: str,
    model: str,
    path: Path,
    *,
    token: str | None = None,
    batch_rows: int = 10_000,
    label_column: str = "label",
    progress: TextIO | None = sys.stderr,
) -> BackfillSummary:
    """Load ``path`` into ``model``'s history (see the module doc)."""
    table = read_file(path)
    summary = BackfillSummary(rows=table.num_rows)
    labels = None
    if label_column in table.column_names:
        labels = table.select(["id", label_column]).rename_columns(["id", "label"])
        table = table.drop_columns([label_column])
    client = Client(url, token=token, batch_rows=batch_rows, max_buffer_rows=batch_rows)
    try:
        base = client._parsed.path.rstrip("/") + f"/api/models/{urllib.parse.quote(model)}"
        loaded_ids = []
        for start in range(0, table.num_rows, batch_rows):
            part = table.slice(start, batch_rows)
            error = _send(client, base + "/predictions", _ipc(part))
            summary.batches += 1
            if error is None:
                summary.loaded += part.num_rows
                if labels is not None:
                    loaded_ids.append((start, part.num_rows))
            else:
                summary.refused.append(_range(start, part.num_rows, error))
            _progress(progress, "predictions", start + part.num_rows, table.num_rows)
        if labels is not None:
            for start, n in loaded_ids:
                part = labels.slice(start, n)
                error = _send(client, base + "/labels", _ipc(part))
                if error is None:
                    summary.labels += n
                else:
                    summary.refused.append(_range(start, n, f"labels: {error}"))
                _progress(progress, "labels", start + n, table.num_rows)
    finally:
        client.close(timeout=1.0)
    if progress is not None:
        progress.write("\n")
    return summary


def _send(client: Client, path: str, body: bytes) -> str | None:
    """None once the daemon stored ``body``; its message when it refused it."""
    batch_id = uuid.uuid4().hex
    delay = 0.1
    while True:
        status, text = client._post(path, body, batch_id)
        if 200 <= status < 300:
            return None
        if 400 <= status < 500 and status not in (408, 425, 429):
            return f"{status}: {text}"
        time.sleep(delay)
        delay = min(delay * 2, client.max_retry_delay)


def _range(start: int, n: int, error: str) -> tuple[int, int, str]:
    """The refused batch's rows, and the daemon's message with its row made absolute."""
    found = re.search(r"record (\d+)", error)
    if found:
        error += f" (row {start + int(found.group(1))} of the sorted file)"
    return (start, start + n - 1, error)


def _progress(out: TextIO | None, what: str, done: int, total: int) -> None:
    if out is None:
        return
    width = 30
    filled = width * done // max(total, 1)
    out.write(f"\r{what:12s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows")
    out.flush()
