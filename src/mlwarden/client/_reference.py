"""A model's reference data sent to the daemon (``PUT /api/models/{name}/reference``).

The data (a pandas DataFrame, an Arrow table, or the path of a Parquet, CSV, Arrow or
Feather file) is sent as one Arrow IPC stream; the daemon checks it against the
model's features, profiles it and puts it in force, or refuses it whole with a
message naming the column (and row). A PUT is idempotent, so a connection error or a
5xx answer is tried again (``attempts`` times in all) before it is raised.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._core import Client

__all__ = ["ReferenceRefused", "reference_table", "send_reference"]


class ReferenceRefused(RuntimeError):
    """The daemon refused a reference (``status``; the message is the daemon's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def reference_table(data: Any) -> Any:
    """``data`` as an Arrow table: a DataFrame, an Arrow table or a file path."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, str | Path):
        path = Path(data)
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        if suffix in (".arrow", ".feather"):
            import pyarrow.feather as feather

            return feather.read_table(path)
        raise ValueError(f"{path}: expected a .parquet, .csv, .arrow or .feather file")
    if hasattr(data, "columns") and hasattr(data, "index"):  # a pandas DataFrame
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(
        f"expected a pandas DataFrame, a pyarrow Table or a file path, got {type(data).__name__}"
    )


def send_reference(
    client: Client, method: str, model: str, body: bytes | None, attempts: int = 3
) -> dict[str, Any]:
    """The daemon's JSON answer to ``method`` on the model's reference; ReferenceRefused
    for a 4xx (or the last 5xx), OSError when the daemon stays out of reach."""
    path = client._parsed.path.rstrip("/") + f"/api/models/{urllib.parse.quote(model)}/reference"
    headers = {"Content-Type": "application/vnd.apache.arrow.stream"} if body is not None else {}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    delay = 0.2
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        conn = _connection(client)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            status, text = response.status, response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            if last:
                raise
            time.sleep(delay)
            delay *= 2
            continue
        finally:
            conn.close()
        if 200 <= status < 300:
            answer: dict[str, Any] = json.loads(text)
            return answer
        if status < 500 or last:
            raise ReferenceRefused(status, _message(text))
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _connection(client: Client) -> http.client.HTTPConnection:
    """A connection of its own: the client's one belongs to its sender thread."""
    parsed = client._parsed
    host = parsed.hostname or ""
    if client._tls is not None:
        return http.client.HTTPSConnection(
            host, parsed.port, timeout=client.timeout, context=client._tls
        )
    return http.client.HTTPConnection(host, parsed.port, timeout=client.timeout)


def _message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text
