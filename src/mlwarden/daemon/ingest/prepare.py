"""Preparing a predictions batch for the writer: decode, validate, cut, profile, encode.

Everything an accepted batch needs before its transaction is computed here, in one
blocking call with no access to the daemon's state: it runs in a worker thread or,
with ``monitoring.ingest_workers`` > 0, in a worker process (daemon/core/workers.py), so
that the JSON decode and the validation of one batch do not hold the daemon's GIL
while other batches are answered. What comes back is plain data: the validated batch,
its parts per (version, time bucket) with their journal blobs and profiles, and the
blob of its stored predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from ..profiles.columns import Columns
from ..profiles.layout import Layout
from ..profiles.profile import Profile
from .arrow import TableBody, read_table, table_predictions
from .batches import PredictionBatch, parse_predictions
from .decode import decode_batch

__all__ = ["BucketKey", "PreparedBatch", "encode_predictions", "prepare_batch"]

BucketKey = tuple[str, float]  # (version, bucket_start)


@dataclass
class PreparedBatch:
    """A validated batch, ready to be written (see the module docstring)."""

    batch: PredictionBatch
    #: Per (version, bucket): the journal blob of its columns and its profile.
    parts: list[tuple[BucketKey, bytes, Profile]]
    predictions: bytes  # the prediction_batches blob (encode_predictions)

    def attach(self, layout: Layout) -> PreparedBatch:
        """Point the profiles at the daemon's own layout (a worker sends back a copy)."""
        for _, _, profile in self.parts:
            profile.layout = layout
        return self


def prepare_batch(
    payload: object,
    layout: Layout,
    *,
    profiled: bool,
    default_version: str,
    bucket_seconds: int,
    sample_size: int,
    task: str,
    now: float,
    oldest: float,
    max_batch: int,
) -> PreparedBatch:
    """Decode (if ``payload`` is the raw body), validate, cut and profile one batch.

    ``payload`` is the decoded JSON object, the raw JSON body (bytes), or an Arrow or
    Parquet body (``TableBody``, daemon/ingest/arrow.py).

    ``profiled`` is False for a model without a feature schema (its features are not
    validated); ``task``, ``now``, ``oldest`` and ``max_batch`` are parse_predictions'.
    Raises BatchRejected (or InvalidInput for a body that is not JSON).
    """
    parse_layout = layout if profiled else None
    booleans = True
    if isinstance(payload, TableBody):  # Arrow or Parquet: typed columns, checked as such
        batch = table_predictions(
            read_table(payload),
            parse_layout,
            task=task,
            now=now,
            oldest=oldest,
            max_batch=max_batch,
        )
    else:
        if isinstance(payload, bytes | bytearray):
            payload, booleans = decode_batch(bytes(payload), parse_layout)
        batch = parse_predictions(
            payload,
            parse_layout,
            task=task,
            now=now,
            oldest=oldest,
            max_batch=max_batch,
            booleans=booleans,
        )
    batch.versions[batch.versions == ""] = default_version
    parts = [
        (key, columns.to_bytes(), profile)
        for key, columns, profile in _split(batch, layout, bucket_seconds, sample_size)
    ]
    return PreparedBatch(batch, parts, encode_predictions(batch))


def _split(
    batch: PredictionBatch, layout: Layout, bucket_seconds: int, sample_size: int
) -> list[tuple[BucketKey, Columns, Profile]]:
    """The batch cut by (version, time bucket), each part with its columns and profile."""
    rng = np.random.default_rng()  # one per batch: batches are prepared concurrently
    columns = batch.columns or Columns(
        np.zeros((len(batch), 0)), np.zeros((len(batch), 0), np.int32)
    )
    starts = np.floor(batch.ts / bucket_seconds) * bucket_seconds
    if (starts == starts[0]).all() and (batch.versions == batch.versions[0]).all():
        # The common batch: one version, one bucket (no string sort of the keys).
        key = (str(batch.versions[0]), float(starts[0]))
        return [(key, columns, Profile.from_columns(layout, columns, sample_size, rng))]
    out = []
    pairs = np.unique(np.stack([batch.versions.astype(str), starts.astype(str)]), axis=1)
    for version, start in pairs.T:
        mask = (batch.versions == version) & (starts == float(start))
        part = columns if mask.all() else columns.take(np.flatnonzero(mask))
        profile = Profile.from_columns(layout, part, sample_size, rng)
        out.append(((str(version), float(start)), part, profile))
    return out


def encode_predictions(batch: PredictionBatch) -> bytes:
    """The blob of a prediction_batches row: JSON columns (NaN written as null)."""
    columns = {
        "id": batch.ids.tolist(),
        "version": batch.versions.tolist(),
        "ts": batch.ts.tolist(),
        "prediction": batch.prediction.tolist(),
        "latency": batch.latency.tolist(),
        "error": batch.error.tolist(),
    }
    if batch.scores is not None:  # what the performance estimators read back
        columns.update(batch.scores.to_json())
    return orjson.dumps(columns)
