"""Ingest: predictions and labels in, profiles and joined outcomes out (service ``ingest``).

Per batch: decode, validate and profile the whole batch off the event loop, in a
thread or a worker process (ingest/prepare.py, batches.py, core/workers.py), then
hand it to the single writer (daemon/ingest/ledger.py), which in one transaction checks
ids against stored ones, stores the batch's predictions (for the label TTL, so labels
can join by id; one row per batch plus an id index, daemon/ingest/tables.py and predictions.py),
and journals the batch's feature columns for its open time bucket; only after
the commit is the batch folded into the in-memory open profile and the call answered.
What a 2xx acknowledged is therefore on disk: at start the journal is replayed into the
open buckets. A bucket that has closed is written as one profile row and its journal
rows are deleted in the same transaction. Concurrent batches share one commit.

What other services may call is in ingest/interfaces.py (``WindowSource``,
``PredictionSink``, ``PredictionCounter``); the service needs the registry's production
version (``VersionRecords``) for records that name no version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from ...errors import NotFound
from ...types import Outcomes
from ..core.config import Config
from ..core.context import Context
from ..core.service import Service
from ..core.workers import WorkerPool
from ..profiles.profile import Profile
from ..registry.interfaces import VersionRecords
from .arrow import TableBody, read_table, table_labels
from .batches import BatchRejected, LabelBatch, parse_labels
from .id_migration import prepare_ids
from .ids import open_outcomes, outcome_keys
from .interfaces import ScoredPredictions, WatchedModel
from .ledger import Ledger
from .predictions import count_stored, window_predictions
from .prepare import prepare_batch
from .scores import Scores
from .shared import shared_count
from .state import ModelState
from .tables import INGEST_SCHEMA, outcomes_table, profile_table
from .uploads import reference_info, remove_reference, upload_reference

__all__ = ["IngestService", "Outcomes"]

logger = logging.getLogger(__name__)

_VERSION_TTL_SECONDS = 2.0
#: What ``outcomes()`` reads of a row, in this order (_outcomes_from_rows).
_OUTCOME_COLUMNS = (
    "id", "version", "ts", "prediction_num", "prediction_cls", "label_num", "label_cls",
    "latency", "error", "probability", "probabilities", "sealed_key", "sealed",
)  # fmt: skip


class IngestService(Service):
    """Accepts predictions and labels, keeps profiles and outcomes (see the module doc)."""

    name = "ingest"
    schema = INGEST_SCHEMA

    def __init__(self, context: Context, *, registry: VersionRecords) -> None:
        super().__init__(context)
        self.registry = registry
        self.ledger = Ledger(context)
        self.workers = WorkerPool(context.config.monitoring.ingest_workers)
        self.unmatched_labels: dict[str, int] = {}
        #: Refused batches per model and reason since start (the schema violations).
        self._rejections: dict[str, dict[str, int]] = {}
        self._versions: dict[str, tuple[float, str]] = {}

    async def start(self) -> None:
        # Ids are digested with encryption on (ids.py); ids stored in clear before are
        # rewritten first (id_migration.py), so every stored prediction still joins.
        context = self.context
        self.ledger.ids = await prepare_ids(
            context.store,
            context.sealer,
            context.clock,
            clear=context.config.encryption.ids == "clear",
        )
        await self.ledger.start()

    async def stop(self) -> None:
        await self.ledger.stop()
        await self.workers.close()

    async def reload(self, config: Config) -> None:
        await self.workers.resize(config.monitoring.ingest_workers)
        await self.ledger.reload(config)

    async def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "models": {
                name: {
                    "profiled": not state.open_schema,
                    "reference": state.reference_status,
                    "open_buckets": len(state.open),
                }
                for name, state in self.ledger.models.items()
            },
            "unmatched_labels": dict(self.unmatched_labels),
        }

    def _rejected(self, model: str, exc: BatchRejected) -> None:
        self.context.metrics.ingest_rejected.labels(model, exc.reason).inc()
        reasons = self._rejections.setdefault(model, {})
        reasons[exc.reason] = reasons.get(exc.reason, 0) + 1

    # -- the contract (ingest/interfaces.py) ----------------------------------------------

    def watched(self) -> list[str]:
        """The models whose reference profile is loaded (the ones the monitor checks)."""
        return [name for name, state in self.ledger.models.items() if state.reference is not None]

    async def watched_model(self, model: str) -> WatchedModel:
        """``model`` once its reference is loaded; NotFound (404) names the known models."""
        state = self.model_state(model)
        await state.ready.wait()
        return WatchedModel(
            state.config, state.reference, state.reference_status, bool(state.uploaded)
        )

    def rejections(self, model: str) -> Mapping[str, int]:
        """Batches of ``model`` refused since start, by reason."""
        return dict(self._rejections.get(model, {}))

    async def scored_predictions(
        self, model: str, since: float, until: float, version: str | None = None
    ) -> ScoredPredictions:
        """The stored predictions of ``model`` in [since, until) with their scores.

        Read from the stored prediction batches (kept for ``monitoring.label_ttl_hours``),
        decoded in a thread.
        """
        self.model_state(model)
        async with self.context.store.connect() as conn:
            blobs = await window_predictions(conn, model, since, until)
        return await asyncio.to_thread(_scored, blobs, since, until, version)

    def model_state(self, model: str) -> ModelState:
        """The state of a watched model; NotFound (404) names the known models."""
        state = self.ledger.models.get(model)
        if state is None:
            known = ", ".join(sorted(self.ledger.models)) or "none"
            raise NotFound(f"unknown model {model!r} (watched models: {known})")
        return state

    async def stored_ids(self, model: str, ids: list[str]) -> list[str]:
        """``ids`` of ``model`` as the store keys them (digests with encryption on: ids.py)."""
        return await self.ledger.ids.digest(model, ids)

    async def record_predictions(
        self, model: str, payload: object, *, batch_id: str | None = None
    ) -> dict[str, Any]:
        """Validate and store one batch (as ``POST /api/models/{name}/predictions``).

        ``payload`` is the decoded JSON object, the raw request body (bytes) or an Arrow
        or Parquet body (``TableBody``), which is then decoded where the batch is
        validated and profiled: in a worker thread, or in a worker process with
        ``monitoring.ingest_workers`` (daemon/core/workers.py). A ``batch_id`` stored
        already is a retry: acknowledged again, counted once (``"replayed": true``).
        """
        if batch_id is not None:
            check_batch_id(batch_id)
        state = self.model_state(model)
        await state.ready.wait()
        config = self.context.config.monitoring
        now = self.context.clock()
        try:
            prepared = await self.workers.run(
                prepare_batch,
                payload,
                state.layout,
                profiled=not state.open_schema,
                default_version=await self.default_version(model),
                bucket_seconds=config.bucket_seconds,
                sample_size=config.sample_size,
                task=state.config.task,
                now=now,
                oldest=now - config.retention_days * 86400.0,
                max_batch=config.max_batch_records,
            )
            batch = prepared.attach(state.layout).batch
            result = await self.ledger.record_predictions(state, prepared, batch_id)
        except BatchRejected as exc:
            self._rejected(model, exc)
            raise
        if result.get("replayed"):
            return result
        self.context.metrics.predictions.labels(model).inc(len(batch))
        finite = batch.latency[np.isfinite(batch.latency)]
        if len(finite):
            for version in np.unique(batch.versions[np.isfinite(batch.latency)]):
                histogram = self.context.metrics.prediction_latency.labels(model, version)
                mask = batch.versions[np.isfinite(batch.latency)] == version
                for value in finite[mask][:1000]:  # bounded: a metric, not a profile
                    histogram.observe(float(value))
        return result

    async def record_labels(self, model: str, payload: object) -> dict[str, Any]:
        """Join ground truth to stored predictions by id (as ``POST .../labels``)."""
        state = self.model_state(model)
        task, max_batch = state.config.task, self.context.config.monitoring.max_batch_records
        try:
            if isinstance(payload, TableBody):
                batch = await asyncio.to_thread(_table_labels, payload, task, max_batch)
            else:
                batch = parse_labels(payload, task=task, max_batch=max_batch)
        except BatchRejected as exc:
            self._rejected(model, exc)
            raise
        result = await self.ledger.record_labels(state, batch)
        self.context.metrics.labels.labels(model).inc(len(batch))
        if result["unmatched"]:
            self.unmatched_labels[model] = self.unmatched_labels.get(model, 0) + result["unmatched"]
        return result

    # -- uploaded references (daemon/ingest/uploads.py) -----------------------------------

    async def upload_reference(self, model: str, data: bytes, media_type: str) -> dict[str, Any]:
        """Check, profile and store ``data`` (Arrow stream, Parquet or CSV) as the model's
        reference, in force over the configured one; 400 names a bad column or row."""
        return await upload_reference(self.ledger, self.model_state(model), data, media_type)

    async def remove_reference(self, model: str) -> dict[str, Any]:
        """Delete the model's uploaded reference (404 when none): the configured one is back."""
        return await remove_reference(self.ledger, self.model_state(model))

    async def reference_info(self, model: str) -> dict[str, Any]:
        """Which reference is in force for ``model``, and its summary."""
        return await reference_info(self.ledger, self.model_state(model))

    async def outcomes(
        self,
        model: str,
        *,
        version: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Outcomes:
        """Joined pairs of ``model`` (optionally one version, prediction time in [since, until))."""
        state = self.model_state(model)
        t = outcomes_table
        # The sealed raw values read as stored: opened in the thread, not on the loop.
        query = sa.select(
            *(t.c[name] for name in _OUTCOME_COLUMNS[:-1]),
            sa.type_coerce(t.c.sealed, sa.LargeBinary()),
        ).where(t.c.model == model)
        if version is not None:
            query = query.where(t.c.version == version)
        if since is not None:
            query = query.where(t.c.ts >= since)
        if until is not None:
            query = query.where(t.c.ts < until)
        # With encryption on the rows are sealed and sorted by their clear ids once opened
        # (open_outcomes): the store's order by digest would be wasted work.
        ordered = not self.ledger.ids.sealing
        if ordered:
            query = query.order_by(t.c.ts, t.c.id)
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(query)).all()
            # The data keys of the sealed rows, one per label batch (with its outcomes).
            seqs = {row[-2] for row in rows if row[-2] is not None}
            keys = await outcome_keys(conn, seqs) if seqs else {}
        classification = state.config.task == "classification"
        sealer = self.context.sealer

        def build() -> Outcomes:  # in a thread: a label batch's outcomes are one decryption
            return _outcomes_from_rows(
                open_outcomes(model, rows, _OUTCOME_COLUMNS, sealer, keys, ordered=ordered),
                classification,
            )

        return await asyncio.to_thread(build)

    async def count_predictions(self, model: str, *, since: float | None = None) -> int:
        """Predictions accepted for ``model`` (with ``ts >= since``, when given).

        Exact within the label TTL (the stored predictions); older than that, counted
        from the profile buckets (at bucket granularity) and the open buckets: this
        daemon's and, on a shared store, every other daemon's (their journal rows).
        """
        state = self.model_state(model)
        now = self.context.clock()
        ttl_start = now - self.context.config.monitoring.label_ttl_hours * 3600.0
        if since is not None and since >= ttl_start:
            async with self.context.store.connect() as conn:
                return await count_stored(conn, model, since)
        b = profile_table
        if self.ledger.shared:  # with every other daemon's open buckets (journal rows)
            stored = await shared_count(self.context.store, model, self.ledger.writer, since)
        else:
            query = sa.select(sa.func.coalesce(sa.func.sum(b.c.rows), 0)).where(b.c.model == model)
            if since is not None:
                query = query.where(b.c.bucket_start >= since)
            async with self.context.store.connect() as conn:
                stored = int((await conn.execute(query)).scalar() or 0)
        opened = sum(
            p.rows for (_, start), p in state.open.items() if since is None or start >= since
        )
        return stored + opened

    async def default_version(self, model: str) -> str:
        """The version of records that name none: the registry's production version.

        Looked up at most every few seconds per model (a promotion shows up that fast).
        """
        now = self.context.clock()
        cached = self._versions.get(model)
        if cached is not None and now - cached[0] < _VERSION_TTL_SECONDS:
            return cached[1]
        version = await self._production_version(model)
        self._versions[model] = (now, version)
        return version

    async def _production_version(self, model: str) -> str:
        try:
            record = await self.registry.production(model)
        except Exception:  # the registry may not know the model: not an ingest error
            record = None
        if record:
            return str(record.get("version", "")) or "unversioned"
        return "unversioned"

    async def window(
        self, model: str, since: float, until: float, version: str | None = None
    ) -> Profile:
        """The merged profile of ``model`` over [since, until) (see Ledger.window)."""
        return await self.ledger.window(self.model_state(model), since, until, version)


def check_batch_id(batch_id: str) -> None:
    """BatchRejected (400) unless ``batch_id`` is 1-200 printable characters."""
    if not 0 < len(batch_id) <= 200 or not batch_id.isprintable():
        raise BatchRejected(
            "malformed",
            f"header 'Mlwarden-Batch-Id': expected 1 to 200 printable characters, "
            f"got {batch_id[:40]!r}",
        )


def _table_labels(body: TableBody, task: str, max_batch: int) -> LabelBatch:
    return table_labels(read_table(body), task=task, max_batch=max_batch)


def _outcomes_from_rows(rows: Sequence[Sequence[Any]], classification: bool) -> Outcomes:
    n = len(rows)
    if not n:
        kind = object if classification else np.float64
        return Outcomes(
            np.empty(0, object), np.empty(0, object), np.empty(0), np.empty(0, kind),
            np.empty(0, kind), np.empty(0), np.empty(0, bool), np.empty(0, object),
        )  # fmt: skip
    cols = list(zip(*rows, strict=True))
    if classification:
        prediction = np.array(cols[4], dtype=object)
        label = np.array(cols[6], dtype=object)
    else:
        prediction = np.array(cols[3], dtype=np.float64)
        label = np.array(cols[5], dtype=np.float64)
    latency = np.array([np.nan if v is None else v for v in cols[7]], dtype=np.float64)
    scores = np.empty(n, dtype=object)  # None, P(positive class) or {class: probability}
    for k, (p, by_class) in enumerate(zip(cols[9], cols[10], strict=True)):
        scores[k] = p if by_class is None else orjson.loads(by_class)
    return Outcomes(
        id=np.array(cols[0], dtype=object),
        version=np.array(cols[1], dtype=object),
        ts=np.array(cols[2], dtype=np.float64),
        prediction=prediction,
        label=label,
        latency=latency,
        error=np.array(cols[8], dtype=bool),
        scores=scores,
    )


def _scored(
    blobs: list[bytes], since: float, until: float, version: str | None
) -> ScoredPredictions:
    """The predictions (and scores) of the batch blobs in [since, until) of ``version``."""
    predictions: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    classes: tuple[str, ...] | None = None
    unscored = 0
    for blob in blobs:
        columns = orjson.loads(blob)
        ts = np.asarray(columns["ts"], dtype=np.float64)
        keep = (ts >= since) & (ts < until)
        if version is not None:
            keep &= np.asarray(columns["version"], dtype=object) == version
        if not keep.any():
            continue
        found = Scores.from_json(columns)
        # A model's classes are the first scored batch's; a batch with others is skipped,
        # one with the same classes in another order is read in the first one's.
        if found is None or (classes is not None and set(found.classes) != set(classes)):
            unscored += int(keep.sum())
            continue
        values = found.values[keep]
        if classes is None:
            classes = found.classes
        elif found.classes != classes:
            values = values[:, [found.classes.index(c) for c in classes]]
        predictions.append(np.asarray(columns["prediction"], dtype=object)[keep])
        scores.append(values)
    if not predictions:
        return ScoredPredictions(np.zeros(0, dtype=object), None, (), unscored)
    return ScoredPredictions(
        np.concatenate(predictions), np.concatenate(scores), classes or (), unscored
    )
