"""The serving gateway: predictions from the versions' MLflow pyfunc models, routed by traffic.

Each version's model is loaded once (``mlflow.pyfunc.load_model`` in a thread) and kept
in a least-recently-used cache of at most ``deployment.max_loaded_models`` models; with
encryption at rest, from a decrypted copy kept per version (decrypted.py) until the
version is retired or the daemon stops.
Records are routed by sticky hashing of their key (the traffic table), or mirrored to a
shadow candidate whose answers are recorded but never returned. Every prediction is
recorded on the ingest path with its version and latency; per-version serving stats
(requests, errors, latency) feed the rollout analysis. A version that fails to load or
to predict is counted as errors against it and its records are served by the version
with the most traffic among the others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import numpy as np
import sqlalchemy as sa

from ...errors import InvalidInput, MlwardenError
from ..core.context import Context
from ..core.store import upsert
from ..ingest.interfaces import PredictionSink
from ..registry.interfaces import VersionRecord, VersionRecords
from .decrypted import DecryptedModels
from .records import shadow_table
from .serving_stats import SharedServingStats
from .traffic import Router, key_point

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel

__all__ = [
    "Answer",
    "Gateway",
    "ModelUnavailable",
    "PredictRecord",
    "Served",
    "ServingStats",
    "parse_predict_body",
]

logger = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()


class ModelUnavailable(MlwardenError):
    """No version of the model could answer (each failed to load or to predict)."""

    status = 502
    code = "model_unavailable"


@dataclass
class ServingStats:
    """Recent serving calls of one version: (time, latency seconds, failed)."""

    calls: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=200_000))

    def add(self, ts: float, latency: float, error: bool, count: int = 1) -> None:
        for _ in range(count):
            self.calls.append((ts, latency, error))

    def window(self, since: float, until: float) -> tuple[int, int, np.ndarray]:
        """Requests, errors and latencies of successful calls within [since, until]."""
        picked = [c for c in self.calls if since <= c[0] <= until]
        errors = sum(1 for c in picked if c[2])
        latency = np.array([c[1] for c in picked if not c[2]], dtype=float)
        return len(picked), errors, latency


class Served(NamedTuple):
    """A version's gateway calls in a window (``Gateway.served``)."""

    requests: int
    errors: int
    #: The latencies of the successful calls, seconds; with ``counts``, bin values
    #: and how many calls each stands for (merged from several daemons).
    latency: np.ndarray
    counts: np.ndarray | None


@dataclass(frozen=True)
class PredictRecord:
    """One record to predict: its id, its routing key and its features (JSON values)."""

    id: str
    key: str
    features: dict[str, Any]


class Answer(TypedDict):
    """The prediction of one record, and the version that made it."""

    id: str
    version: str
    #: What the model returned for the record (JSON).
    prediction: object


def parse_predict_body(model: str, body: object) -> list[PredictRecord]:
    """``{"records": [{id?, key?, features}]}`` or one record; InvalidInput names the place."""
    if not isinstance(body, dict):
        raise InvalidInput(f"predict for model {model!r}: expected a JSON object")
    raw = body.get("records") if "records" in body else [body]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"predict for model {model!r}: 'records' must be a non-empty array")
    out = []
    for i, rec in enumerate(raw):
        where = f"records[{i}]" if "records" in body else "body"
        if not isinstance(rec, dict):
            raise InvalidInput(f"predict for model {model!r}: {where} must be an object")
        features = rec.get("features")
        if not isinstance(features, dict) or not features:
            raise InvalidInput(
                f"predict for model {model!r}: {where}.features must be a non-empty object "
                "{feature: value}"
            )
        rid = rec.get("id", uuid.uuid4().hex)
        key = rec.get("key", rid)
        for name, value in (("id", rid), ("key", key)):
            if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
                raise InvalidInput(
                    f"predict for model {model!r}: {where}.{name} must be a "
                    f"non-empty string or integer, got {value!r}"
                )
        out.append(PredictRecord(str(rid), str(key), features))
    return out


class Gateway:
    """Serves predictions for the rollouts service."""

    def __init__(
        self, context: Context, *, registry: VersionRecords, ingest: PredictionSink
    ) -> None:
        self.context = context
        self.registry = registry
        self.ingest = ingest
        self._models: OrderedDict[tuple[str, str], PyFuncModel] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Lock] = {}
        self.stats: dict[tuple[str, str], ServingStats] = {}
        #: On a store several daemons share: the calls per interval, every daemon's.
        self.shared: SharedServingStats | None = None
        if not context.store.is_sqlite:
            self.shared = SharedServingStats(context.store, context.config.instance, context.clock)
        self._flusher: asyncio.Task[None] | None = None
        self.load_errors: dict[tuple[str, str], str] = {}
        self._mirrors: set[asyncio.Task[None]] = set()
        self.decrypted = DecryptedModels()

    @property
    def loaded(self) -> list[str]:
        return [f"{m}@{v}" for m, v in self._models]

    def serving(self, model: str, version: str) -> ServingStats:
        return self.stats.setdefault((model, version), ServingStats())

    async def served(self, model: str, version: str, since: float, until: float) -> Served:
        """The gateway calls of ``version`` in [since, until]: this daemon's on SQLite
        (one daemon), every daemon's on a shared store (daemon/rollouts/serving_stats.py)."""
        if self.shared is None:
            stats = self.stats.get((model, version))
            if stats is None:
                return Served(0, 0, np.empty(0), None)
            return Served(*stats.window(since, until), None)
        totals = await self.shared.window(model, version, since, until)
        values, counts = totals.latency.arrays()
        return Served(totals.requests, totals.errors, values, counts)

    async def load(self, model: str, version: str) -> PyFuncModel:
        """The version's pyfunc model, loaded once; the least recently used is evicted."""
        key = (model, version)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._models:
                return self._models[key]
            record = await self.registry.get(model, version)
            try:
                loaded = await asyncio.to_thread(self._load_sync, model, record)
            except Exception as exc:
                self.load_errors[key] = f"{type(exc).__name__}: {exc}"
                raise
            self.load_errors.pop(key, None)
            self._models[key] = loaded
            limit = max(1, self.context.config.deployment.max_loaded_models)
            while len(self._models) > limit:
                evicted, _ = self._models.popitem(last=False)
                logger.info("gateway evicted %s@%s (max_loaded_models = %d)", *evicted, limit)
            return loaded

    def _load_sync(self, model: str, record: VersionRecord) -> PyFuncModel:
        """Resolve the version's artifacts through the daemon's own MLflow client, load them.

        The registry's ``models:/`` URIs would resolve against MLflow's process-global
        registry URI; the daemon's client asks its own store for the download URI.
        """
        import mlflow.artifacts
        import mlflow.pyfunc

        tracking = self.context.tracking.uri
        uri = record.get("artifact_uri") or record.get("source") or ""
        if not uri or uri.startswith("models:/"):
            uri = self.context.tracking.client.get_model_version_download_uri(
                model, str(record["mlflow_version"])
            )
        if self.context.sealer.enabled:
            # Decrypted once per version into a private directory (decrypted.py).

            def download(directory: str) -> str:
                with _LOAD_LOCK:
                    return mlflow.artifacts.download_artifacts(
                        artifact_uri=uri,
                        tracking_uri=tracking,
                        registry_uri=tracking,
                        dst_path=directory,
                    )

            return mlflow.pyfunc.load_model(
                self.decrypted.path(model, str(record["version"]), download)
            )
        with _LOAD_LOCK:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, tracking_uri=tracking, registry_uri=tracking
            )
        return mlflow.pyfunc.load_model(local)

    async def _predict_version(
        self, model: str, version: str, records: list[PredictRecord]
    ) -> tuple[list[object], float]:
        import pandas as pd

        pyfunc = await self.load(model, version)
        frame = pd.DataFrame([r.features for r in records])
        start = time.perf_counter()
        raw = await asyncio.to_thread(pyfunc.predict, frame)
        latency = time.perf_counter() - start
        values = _to_list(raw)
        if len(values) != len(records):
            raise ValueError(f"model returned {len(values)} predictions for {len(records)} rows")
        return values, latency

    async def predict(
        self,
        model: str,
        records: list[PredictRecord],
        table: Mapping[str, float],
        mirror: str | None,
    ) -> list[Answer]:
        """Route, predict, record; returns one answer per record, in order."""
        router = Router(table)
        groups: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            groups.setdefault(router.pick(key_point(model, rec.key)), []).append(i)
        answers: list[Answer | None] = [None] * len(records)
        for version, idx in groups.items():
            await self._serve_group(model, version, [records[i] for i in idx], idx, answers, table)
        if mirror and mirror not in table:
            task = asyncio.get_running_loop().create_task(
                self._mirror(model, mirror, records), name=f"gateway-mirror-{model}"
            )
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)
        return [a for a in answers if a is not None]

    async def _serve_group(
        self,
        model: str,
        version: str,
        group: list[PredictRecord],
        idx: list[int],
        answers: list[Answer | None],
        table: Mapping[str, float],
    ) -> None:
        tried: list[str] = []
        while True:
            tried.append(version)
            try:
                values, latency = await self._predict_version(model, version, group)
            except Exception as exc:
                logger.warning(
                    "gateway: %s@%s failed on %d records: %r", model, version, len(group), exc
                )
                await self._record(model, version, group, None, 0.0, error=True)
                others = sorted((v for v in table if v not in tried), key=lambda v: -table[v])
                if not others:
                    raise ModelUnavailable(
                        f"model {model!r}: no version could answer (tried "
                        f"{', '.join(tried)}; last error: {type(exc).__name__}: {exc})"
                    ) from exc
                version = others[0]
                continue
            await self._record(model, version, group, values, latency, error=False)
            for i, rec, value in zip(idx, group, values, strict=True):
                answers[i] = {"id": rec.id, "version": version, "prediction": value}
            return

    async def _mirror(self, model: str, version: str, records: list[PredictRecord]) -> None:
        """Predict with the shadow candidate; its answers are stored, never returned.

        The user-facing prediction owns the request id on the ingest path, so the
        mirrored one is kept in ``shadow_predictions`` (joined to the request's label
        at analysis) and recorded on the ingest path as ``<id>~shadow``.
        """
        try:
            values, latency = await self._predict_version(model, version, records)
            error = False
        except Exception as exc:
            logger.warning("gateway: shadow %s@%s failed: %r", model, version, exc)
            values, latency, error = None, 0.0, True
        now = self.context.clock()
        # The id as the store keys it (a digest with encryption on, like a prediction's).
        stored = await self.ingest.stored_ids(model, [rec.id for rec in records])
        # Keyed by id: a repeated id is stored once (PostgreSQL's upsert refuses to touch
        # a row twice in one statement), its last prediction kept.
        rows = {
            sid: {"model": model, "version": version, "id": sid, "ts": now,
                  "prediction": None if values is None else json.dumps(values[i]),
                  "latency": None if error else latency, "error": error}
            for i, sid in enumerate(stored)
        }  # fmt: skip
        async with self.context.store.begin() as conn:
            await conn.execute(upsert(conn.dialect, shadow_table), list(rows.values()))
        shadow = [PredictRecord(f"{rec.id}~shadow", rec.key, rec.features) for rec in records]
        await self._record(model, version, shadow, values, latency, error=error)

    async def shadow_sample(
        self, model: str, version: str, ids: np.ndarray, since: float, until: float
    ) -> dict[str, tuple[object, float | None, bool]]:
        """Mirrored predictions of ``version`` for request ``ids``: {id: (pred, latency, error)}.

        Rows are keyed by the stored id (a digest with encryption on); a row stored in
        clear before (a rollout running across the upgrade) is found by its id as well.
        """
        t = shadow_table
        clear = [str(i) for i in ids.tolist()]
        wanted = {c: c for c in clear}
        wanted.update(zip(await self.ingest.stored_ids(model, clear), clear, strict=True))
        async with self.context.store.connect() as conn:
            rows = (await conn.execute(
                sa.select(t.c.id, t.c.prediction, t.c.latency, t.c.error).where(
                    t.c.model == model, t.c.version == version, t.c.ts >= since,
                    t.c.ts <= until,
                )
            )).all()  # fmt: skip
        return {
            wanted[r.id]: (None if r.prediction is None else json.loads(r.prediction), r.latency,
                           bool(r.error))
            for r in rows if r.id in wanted
        }  # fmt: skip

    async def drain(self) -> None:
        """Wait for mirrored (shadow) predictions in flight."""
        while self._mirrors:
            await asyncio.gather(*list(self._mirrors), return_exceptions=True)

    async def _record(
        self,
        model: str,
        version: str,
        records: list[PredictRecord],
        values: list[object] | None,
        latency: float,
        *,
        error: bool,
    ) -> None:
        now = self.context.clock()
        self.serving(model, version).add(now, latency, error, len(records))
        if self.shared is not None:
            self.shared.add(model, version, now, latency, error, len(records))
            if self._flusher is None:
                self._flusher = self.context.spawn(self.shared.run(), name="gateway-stats")
        payload = {
            "records": [
                {
                    "id": rec.id,
                    "ts": now,
                    "version": version,
                    "features": rec.features,
                    "prediction": None if values is None else values[i],
                    "latency_ms": None if error else latency * 1000.0,
                    "error": error,
                }
                for i, rec in enumerate(records)
            ]
        }
        try:
            await self.ingest.record_predictions(model, payload)
        except Exception as exc:
            logger.error(
                "gateway: recording %d predictions of %s@%s failed: %r",
                len(records),
                model,
                version,
                exc,
            )
            self.context.record_error(f"gateway {model}@{version}", repr(exc))

    async def close(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        await asyncio.gather(*list(self._mirrors), return_exceptions=True)
        self._models.clear()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self.shared is not None:
            try:  # the calls counted since the last write
                await self.shared.flush()
            except Exception as exc:
                logger.warning("writing the gateway's serving stats at stop failed: %r", exc)
        await asyncio.to_thread(self.decrypted.close)

    async def retire(self, model: str, version: str) -> None:
        """Forget a retired version: its loaded model and its decrypted copy."""
        key = (model, version)
        async with self._loading.setdefault(key, asyncio.Lock()):
            self._models.pop(key, None)
            await asyncio.to_thread(self.decrypted.discard, model, version)


def _to_list(raw: Any) -> list[object]:
    if hasattr(raw, "to_numpy"):
        raw = raw.to_numpy()
    arr = np.asarray(raw)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr.tolist()
