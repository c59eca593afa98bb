"""The client: a bounded buffer filled by callers, emptied by one sender thread.

A call (``log_predictions``, ``log_labels``) records its data (``_tables.entry``) and
appends it to the buffer under a lock: no I/O, no Arrow, no waiting unless the buffer
is full. The sender thread wakes when ``batch_rows`` rows are waiting or the oldest
has waited ``max_age_seconds``, builds one Arrow table per model and kind, and posts
it as an Arrow IPC stream with a batch id of its own. A 5xx answer, a timeout or a
connection error is retried under the same batch id (the daemon stores a batch id
once: a retry of a batch whose answer was lost is acknowledged, not counted again)
with exponential backoff and jitter, for as long as the client is open; a 4xx answer
is a refusal (the batch is wrong, retrying cannot help): its rows are counted as
rejected and the daemon's message is logged.

Rows stay counted in the buffer until the daemon acknowledged them, so while the
daemon is down the buffer fills, and callers then block (``on_full="block"``, the
default; ``block_timeout`` bounds the wait) or their rows are dropped and counted
(``on_full="drop"``). ``flush()`` waits until everything buffered is acknowledged;
``close()`` flushes, then stops the thread; an open client is closed at interpreter
exit.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import logging
import os
import random
import ssl
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from ._reference import reference_table, send_reference
from ._tables import Entry, entry, label_entry, score_columns, to_table

__all__ = ["ARROW_STREAM", "Client", "ClientStats", "tls_context"]

logger = logging.getLogger("mlwarden.client")

ARROW_STREAM = "application/vnd.apache.arrow.stream"
BATCH_ID_HEADER = "Mlwarden-Batch-Id"
CA_BUNDLE_ENV = "MLWARDEN_CA_BUNDLE"

ClientStats = dict[str, Any]


class Client:
    """Logs predictions and labels to an mlwarden daemon without slowing the caller.

    Parameters
    ----------
    url:
        The daemon's base URL (default ``http://127.0.0.1:9741``).
    token:
        A bearer token with the ``operator`` role, when the daemon has tokens.
    batch_rows:
        Rows per request at most; a batch is sent as soon as this many are waiting.
    max_age_seconds:
        The longest a row waits in the buffer before its batch is sent.
    max_buffer_rows:
        The buffer's bound, rows waiting or in flight included.
    on_full:
        ``"block"`` (wait for room, at most ``block_timeout`` seconds, then drop) or
        ``"drop"`` (drop at once); dropped rows are counted in ``stats()``.
    feature_names:
        Column names of numpy arrays given as ``data`` (default ``f0``, ``f1``, ...).
    cafile:
        For ``https://``: the CA bundle that signed the daemon's certificate (default:
        ``$MLWARDEN_CA_BUNDLE``, else the system's trust store). TLS 1.2 at least.
    certfile, keyfile:
        The client certificate and its key, when the daemon requires mutual TLS
        (``tls.client_ca_file``).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:9741",
        *,
        token: str | None = None,
        batch_rows: int = 10_000,
        max_age_seconds: float = 1.0,
        max_buffer_rows: int = 200_000,
        on_full: Literal["block", "drop"] = "block",
        block_timeout: float | None = None,
        timeout: float = 30.0,
        max_retry_delay: float = 5.0,
        feature_names: Sequence[str] | None = None,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        # What the sender needs is imported now (pyarrow imports pandas and
        # concurrent.futures on its first table): not in the background while a caller
        # waits for the import lock, nor at exit, when no import may register cleanups.
        _ipc(
            to_table([entry("m", {"x": 0.0}, ids="0", version=None, ts=0.0, predictions=0.0)], list)
        )

        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full must be 'block' or 'drop', got {on_full!r}")
        if batch_rows < 1 or max_buffer_rows < batch_rows:
            raise ValueError("expected 1 <= batch_rows <= max_buffer_rows")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
        self.url = url.rstrip("/")
        self._parsed = parsed
        self._tls = tls_context(cafile, certfile, keyfile) if parsed.scheme == "https" else None
        self.token = token
        self.batch_rows = batch_rows
        self.max_age_seconds = max_age_seconds
        self.max_buffer_rows = max_buffer_rows
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.timeout = timeout
        self.max_retry_delay = max_retry_delay
        self.feature_names = list(feature_names) if feature_names is not None else None
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # callers waiting for room, flushes
        self._work = threading.Condition(self._lock)  # the sender waiting for rows
        self._backoff = threading.Condition(self._lock)  # the sender between retries
        self._entries: deque[Entry] = deque()
        self._queued = 0  # rows in _entries
        self._held = 0  # rows in _entries or in flight: what the bound counts
        self._oldest = 0.0  # monotonic time the oldest queued entry arrived
        self._flushing = 0
        self._closing = False
        self._stop_at: float | None = None
        self._counts = {
            "sent_rows": 0,
            "sent_batches": 0,
            "dropped_rows": 0,
            "rejected_rows": 0,
            "unsent_rows": 0,
            "retries": 0,
        }
        self.last_error = ""
        self._id_prefix = uuid.uuid4().hex[:12]
        self._id_counter = itertools.count()
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="mlwarden-client", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        self._atexit = lambda: _close_at_exit(ref)
        atexit.register(self._atexit)

    # -- the caller's side ---------------------------------------------------------------

    def log_predictions(
        self,
        model: str,
        data: Any,
        *,
        ids: Any = None,
        version: str | None = None,
        timestamps: Any = None,
        predictions: Any = None,
        probabilities: Any = None,
        classes: Sequence[Any] | None = None,
    ) -> bool:
        """Buffer predictions of ``model``; False when they were dropped (buffer full).

        ``data`` holds the features: a pandas DataFrame, a numpy array (columns named
        by ``feature_names``), an Arrow table, a dict of columns, a list of dicts, or
        one dict of scalars (one record). The prediction is the ``prediction`` column of
        ``data`` or ``predictions``; ``ids`` (one per row) let labels join later and
        are generated when not given; ``timestamps`` are unix seconds (default: now);
        ``version`` defaults to the daemon's production version.

        A classifier's scores, for performance estimation: ``probabilities`` is a
        binary model's P(positive class) per row (a 1-D array, list or Series), or a
        multiclass model's probabilities: ``predict_proba``'s 2-D array with
        ``classes`` (its columns' classes, e.g. the model's ``classes_``), a DataFrame
        (columns: classes), a dict class -> values or a list of dicts. Or ``data``
        carries them as columns ``probability`` / ``probabilities.<class>``.
        """
        ts = time.time() if timestamps is None else timestamps
        item = entry(
            model,
            data,
            ids=ids,
            version=version,
            ts=ts,
            predictions=predictions,
            feature_names=self.feature_names,
            probabilities=probabilities,
            classes=classes,
        )
        return self._put(item)

    def log_labels(self, model: str, ids: Any, labels: Any) -> bool:
        """Buffer ground-truth ``labels`` of the predictions with these ``ids``."""
        return self._put(label_entry(model, ids, labels))

    def _put(self, item: Entry) -> bool:
        with self._lock:
            if self._closing:
                raise RuntimeError("the mlwarden client is closed")
            if self._held + item.rows > self.max_buffer_rows and not self._wait_for_room(item):
                self._counts["dropped_rows"] += item.rows
                return False
            if not self._entries:
                self._oldest = time.monotonic()
            self._entries.append(item)
            self._queued += item.rows
            self._held += item.rows
            if self._queued >= self.batch_rows:
                self._work.notify()
        return True

    def _wait_for_room(self, item: Entry) -> bool:
        if self.on_full == "drop" or item.rows > self.max_buffer_rows:
            return False
        return (
            self._room.wait_for(
                lambda: self._closing or self._held + item.rows <= self.max_buffer_rows,
                timeout=self.block_timeout,
            )
            and not self._closing
        )

    # -- flush, close, stats ---------------------------------------------------------------

    def upload_reference(self, model: str, data: Any) -> dict[str, Any]:
        """Send ``data`` as the model's reference (``PUT /api/models/{name}/reference``).

        ``data``: a pandas DataFrame, a pyarrow Table or the path of a Parquet, CSV,
        Arrow or Feather file, sent as an Arrow IPC stream. Blocks until the daemon has
        checked, stored and put it in force; returns its summary (rows, features,
        fingerprint). ``ReferenceRefused`` carries the daemon's message for a refusal
        (a missing or mistyped column, a bad score's row). Needs the ``operator`` role.
        """
        body = _ipc(reference_table(data))
        return send_reference(self, "PUT", model, body)

    def remove_reference(self, model: str) -> dict[str, Any]:
        """Remove the model's uploaded reference: the configured one is in force again."""
        return send_reference(self, "DELETE", model, None)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered now; True once the daemon acknowledged all of it."""
        with self._lock:
            self._flushing += 1
            self._work.notify()
            try:
                return self._room.wait_for(lambda: self._held == 0, timeout=timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> bool:
        """Flush (at most ``timeout`` seconds), then stop the sender; True if all was sent."""
        if self._thread.ident is None or not self._thread.is_alive():
            return self._held == 0
        done = self.flush(timeout)
        with self._lock:
            self._closing = True
            self._stop_at = time.monotonic()  # retries stop; the rest is counted unsent
            self._work.notify_all()
            self._backoff.notify_all()
            self._room.notify_all()
        self._thread.join(max(1.0, timeout))
        atexit.unregister(self._atexit)
        if self._connection is not None:
            self._connection.close()
        return done

    def stats(self) -> ClientStats:
        """Rows sent, dropped (buffer full), rejected (4xx), unsent at close, retries."""
        with self._lock:
            return {**self._counts, "buffered_rows": self._held, "last_error": self.last_error}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sender thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._due():
                    if self._closing and not self._entries:
                        return
                    wait = None
                    if self._entries:
                        wait = max(0.0, self._oldest + self.max_age_seconds - time.monotonic())
                    self._work.wait(wait)
                taken = self._take()
            for group in _groups(taken):
                for batch in _chunks(group, self.batch_rows):
                    self._send(batch)

    def _due(self) -> bool:
        if not self._entries:
            return False
        return (
            self._queued >= self.batch_rows
            or self._flushing > 0
            or self._closing
            or time.monotonic() - self._oldest >= self.max_age_seconds
        )

    def _take(self) -> list[Entry]:
        taken = list(self._entries)
        self._entries.clear()
        self._queued = 0
        return taken

    def _new_ids(self, n: int) -> list[str]:
        prefix = self._id_prefix
        return [f"{prefix}-{next(self._id_counter)}" for _ in range(n)]

    def _send(self, entries: list[Entry]) -> None:
        rows = sum(e.rows for e in entries)
        try:
            body = _ipc(to_table(entries, self._new_ids))
        except Exception as exc:  # data that cannot become a table: the caller's error
            logger.error("mlwarden client: %d rows of %r not sent: %s", rows, entries[0].model, exc)
            self._done(rows, "rejected_rows", f"not sent: {exc}")
            return
        model = urllib.parse.quote(entries[0].model, safe="")
        path = f"{self._parsed.path.rstrip('/')}/api/models/{model}/{entries[0].kind}"
        batch_id = uuid.uuid4().hex
        for attempt in itertools.count():
            status, text = self._post(path, body, batch_id)
            if 200 <= status < 300:
                self._done(rows, "sent_rows", "", batches=1)
                return
            if 400 <= status < 500 and status not in (408, 425, 429):
                logger.error(
                    "mlwarden client: %d rows refused by the daemon (%d): %s", rows, status, text
                )
                self._done(rows, "rejected_rows", f"{status}: {text}")
                return
            with self._lock:
                self.last_error = f"{status or 'connection'}: {text}"
                if self._stop_at is not None:
                    self._held -= rows
                    self._counts["unsent_rows"] += rows
                    self._room.notify_all()
                    return
                self._counts["retries"] += 1
                delay = min(self.max_retry_delay, 0.05 * 2 ** min(attempt, 16))
                self._backoff.wait(random.uniform(delay / 2, delay))

    def _done(self, rows: int, counter: str, error: str, batches: int = 0) -> None:
        with self._lock:
            self._held -= rows
            self._counts[counter] += rows
            self._counts["sent_batches"] += batches
            if error:
                self.last_error = error
            self._room.notify_all()

    def _post(self, path: str, body: bytes, batch_id: str) -> tuple[int, str]:
        """(status, text) of one POST; status 0 for a connection error or a timeout."""
        headers = {"Content-Type": ARROW_STREAM, BATCH_ID_HEADER: batch_id}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn = self._connection or self._connect()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            if response.will_close:
                self._drop_connection()
            return response.status, text
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            return 0, repr(exc)

    def _connect(self) -> http.client.HTTPConnection:
        parsed = self._parsed
        host = parsed.hostname or ""
        if self._tls is not None:
            self._connection = http.client.HTTPSConnection(
                host, parsed.port, timeout=self.timeout, context=self._tls
            )
        else:
            self._connection = http.client.HTTPConnection(host, parsed.port, timeout=self.timeout)
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def tls_context(
    cafile: str | None = None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A verifying client context: ``cafile`` (or ``$MLWARDEN_CA_BUNDLE``), TLS 1.2+.

    A missing or unreadable file raises at once (the caller's mistake, not a retry).
    """
    cafile = cafile or os.environ.get(CA_BUNDLE_ENV) or None
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        context.load_cert_chain(certfile, keyfile or None)
    elif keyfile:
        raise ValueError("keyfile given without certfile")
    return context


def _groups(entries: list[Entry]) -> list[list[Entry]]:
    """``entries`` by (model, kind, score columns), each group in call order.

    Calls with other score columns (or none) go in other batches: the daemon refuses a
    batch whose records carry scores in part.
    """
    groups: dict[tuple[str, str, tuple[str, ...]], list[Entry]] = {}
    for item in entries:
        groups.setdefault((item.model, item.kind, score_columns(item)), []).append(item)
    return list(groups.values())


def _chunks(entries: list[Entry], batch_rows: int) -> list[list[Entry]]:
    """Consecutive runs of ``entries`` of about ``batch_rows`` rows (a call is not split)."""
    out: list[list[Entry]] = [[]]
    rows = 0
    for item in entries:
        if out[-1] and rows + item.rows > batch_rows:
            out.append([])
            rows = 0
        out[-1].append(item)
        rows += item.rows
    return out


def _ipc(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _close_at_exit(ref: weakref.ReferenceType[Client]) -> None:
    client = ref()
    if client is not None:
        client.close(timeout=10.0)
