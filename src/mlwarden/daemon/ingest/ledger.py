"""The ingest service's storage: tables, the single writer, open buckets, windows.

Every write goes through one writer task. Consecutive batches queued while a commit is
in progress share the next transaction (group commit), which is what keeps ingest fast
with many concurrent senders while each answer still waits for its own commit.
Flushing closed buckets and purging old rows run as exclusive writer items, so a flush
never deletes the journal rows of a batch that is committed but not yet folded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.config import Config, ModelConfig
from ..core.context import Context
from ..core.outage import Outage, log_failure
from ..profiles.profile import Profile
from ..profiles.reference import layout_without_reference
from .batches import BatchRejected, LabelBatch
from .ids import IdDigests, purge_outcome_keys
from .labels import label_write
from .orphans import JournalTaken, adopt_gone, rebuild_open
from .predictions import (
    at_rest,
    check_new_ids,
    claim_batch_id,
    insert_rows,
    known_batch,
    purge_predictions,
    store_predictions,
)
from .prepare import PreparedBatch
from .shared import merge_open, shared_window
from .startup import load_reference, replay_journal
from .state import ModelState
from .tables import INGEST_SCHEMA, journal_table, outcomes_table, profile_table
from .uploads import follow_uploads
from .window import closed_buckets, move_windows
from .work import Work, fold

__all__ = ["INGEST_SCHEMA", "Ledger"]

logger = logging.getLogger(__name__)

#: Tries of an item alone after its group hit another daemon's row (a unique key).
_ALONE_ATTEMPTS = 3

T = TypeVar("T")


class Ledger:
    """Tables, the writer task, open buckets and windows of the ingest service."""

    def __init__(self, context: Context) -> None:
        self.context = context
        #: This daemon in the ``writer`` column of its journal rows and buckets.
        self.writer = context.config.instance
        self.models: dict[str, ModelState] = {}
        self._queue: deque[Work[Any]] = deque()
        self._wake = asyncio.Event()
        # One reference is read at a time: the peak memory is that of one load.
        self.loading = asyncio.Semaphore(1)
        # One reference upload (or removal) at a time (daemon/ingest/uploads.py).
        self.uploading = asyncio.Lock()
        #: How ids are stored (digests with encryption on; set at start, ids.py).
        self.ids = IdDigests()

    @property
    def shared(self) -> bool:
        """Whether other daemons may write the store too (any store but SQLite)."""
        return not self.context.store.is_sqlite

    @property
    def sample_size(self) -> int:
        return self.context.config.monitoring.sample_size

    async def start(self) -> None:
        self.context.spawn(self._writer(), name="ingest-writer")
        await self.reload(self.context.config)
        self.context.spawn(self._housekeeping(), name="ingest-housekeeping")

    async def stop(self) -> None:
        # Open buckets need no flush: their journal rows are replayed at the next start.
        await self.submit(Work(_noop, _ignore, exclusive=True))

    async def reload(self, config: Config) -> None:
        """Watch the configured models; a changed model reloads its reference."""
        wanted = {m.name: m for m in config.models}
        for name in list(self.models):
            if name not in wanted:
                del self.models[name]
        for name, mc in wanted.items():
            state = self.models.get(name)
            if state is not None and state.config == mc:
                continue
            self.prepare_again(mc)

    def prepare_again(self, mc: ModelConfig) -> ModelState:
        """A fresh state for model ``mc`` whose reference is loaded anew (a changed
        configuration or uploaded reference); its open buckets start empty, as the
        journal rows of the previous reference's layout are dropped on replay."""
        state = ModelState(config=mc)
        self.models[mc.name] = state
        self.context.spawn(self._prepare(state), name=f"ingest-reference-{mc.name}")
        return state

    # -- the writer --------------------------------------------------------------------

    async def submit(self, work: Work[T]) -> T:
        self._queue.append(work)
        self._wake.set()
        return await work.future

    async def submit_moving(self, states: Iterable[ModelState], work: Work[T]) -> T:
        """Submit ``work``, which moves open rows of ``states`` into the store (a flush
        writes them as closed buckets, a takeover makes another daemon's rows ours): a
        window read while it is under way is read again (see :meth:`window`)."""
        moving = list({id(s): s for s in states}.values())
        for state in moving:
            state.moving += 1
            state.settled.clear()
        try:
            return await self.submit(work)
        finally:
            for state in moving:
                state.moving -= 1
                state.moves += 1
                if not state.moving:
                    state.settled.set()

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            group = [self._queue.popleft()]
            while not group[0].exclusive and self._queue and not self._queue[0].exclusive:
                group.append(self._queue.popleft())
            try:
                results = await self._commit(group)
            except sa.exc.IntegrityError:
                # Another daemon committed the same key first (a batch id, a prediction
                # id, a label): each item is tried again alone, and now sees that row.
                for work in group:
                    await self._commit_alone(work)
                continue
            except Exception as exc:
                _fail(group, exc, self.context.store.outage)
                continue
            _settle(group, results)

    async def _commit(self, group: list[Work[Any]]) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        async with self.context.store.begin() as conn:
            for work in group:
                try:
                    results.append((True, await self._write(conn, work)))
                except BatchRejected as exc:  # nothing of it is written
                    results.append((False, exc))
        return results

    async def _commit_alone(self, work: Work[Any]) -> None:
        for attempt in range(_ALONE_ATTEMPTS):
            try:
                results = await self._commit([work])
            except sa.exc.IntegrityError as exc:
                if attempt + 1 < _ALONE_ATTEMPTS:
                    continue
                _fail([work], exc, self.context.store.outage)
            except Exception as exc:
                _fail([work], exc, self.context.store.outage)
            else:
                _settle([work], results)
            return

    async def _write(self, conn: AsyncConnection, work: Work[T]) -> T:
        """``work.write`` in the group's transaction.

        On SQLite the single writer makes every check before a write final, so an item
        refuses before it writes. On PostgreSQL another daemon may write between the
        check and the write; a savepoint undoes the item's rows when it then refuses.
        """
        if not self.context.store.is_postgresql:
            return await work.write(conn)
        async with conn.begin_nested():
            return await work.write(conn)

    # -- predictions and labels ----------------------------------------------------------

    async def record_predictions(
        self, state: ModelState, prepared: PreparedBatch, batch_id: str | None = None
    ) -> dict[str, Any]:
        """Store a prepared batch (daemon/ingest/prepare.py) and fold it into its buckets.

        A ``batch_id`` already stored for the model (a sender's retry of a batch whose
        answer it lost) stores and folds nothing: the answer says ``"replayed": true``.
        """
        name = state.config.name
        batch = prepared.batch
        fingerprint = state.layout.fingerprint
        replayed = False
        stored = await at_rest(self.ids, name, prepared)
        clear, ids = stored.clear, stored.ids

        async def write(conn: AsyncConnection) -> None:
            nonlocal replayed
            replayed = False  # tried again alone after a unique-key race (see _writer)
            if batch_id is not None and await known_batch(conn, name, batch_id) is not None:
                replayed = True
                return
            # Refusals first: a refused item's statements are not rolled back (the group
            # shares one transaction), so nothing may be written before this check.
            try:
                await check_new_ids(conn, name, ids, clear)
            except BatchRejected:
                # Another daemon committed this very batch since known_batch looked.
                if batch_id is not None and await known_batch(conn, name, batch_id) is not None:
                    replayed = True
                    return
                raise
            if batch_id is not None and not await claim_batch_id(
                conn, name, batch_id, len(batch), now
            ):
                replayed = True  # another daemon stored it since known_batch looked
                return
            await store_predictions(conn, name, batch, stored.predictions, ids)
            journal = [
                (name, version, start, fingerprint, blob, self.writer)
                for ((version, start), _, _), blob in zip(
                    prepared.parts, stored.journal, strict=True
                )
            ]
            await insert_rows(conn, journal_table, journal, skip_first=True)

        def after(_result: None) -> None:
            if replayed:
                return
            for key, _, profile in prepared.parts:
                fold(state, key, profile)

        now = self.context.clock()
        await self.submit(Work(write, after))
        result: dict[str, Any] = {"accepted": len(batch), "profiled": not state.open_schema}
        if replayed:
            result["replayed"] = True
        return result

    async def record_labels(self, state: ModelState, batch: LabelBatch) -> dict[str, Any]:
        """Join ``batch`` to the stored predictions by id and store the pairs (labels.py)."""
        name = state.config.name
        labels = dict(zip(batch.ids.tolist(), batch.labels.tolist(), strict=True))
        clear = list(labels)
        stored = dict(zip(clear, await self.ids.digest(name, clear), strict=True))
        write = label_write(
            name,
            labels,
            stored,
            classification=state.config.task == "classification",
            sealed=self.ids.sealing,
            now=self.context.clock(),
        )
        matched = await self.submit(Work(write, _ignore))
        return {"accepted": len(batch), "matched": matched, "unmatched": len(batch) - matched}

    # -- buckets and windows -------------------------------------------------------------

    async def flush(self, *, everything: bool = False) -> int:
        """Write every closed open bucket (all of them with ``everything``); return how many."""
        now = self.context.clock()
        bucket_seconds = self.context.config.monitoring.bucket_seconds
        due = [
            (state, key, profile)
            for state in self.models.values()
            for key, profile in state.open.items()
            if everything or key[1] + bucket_seconds <= now
        ]
        if not due:
            return 0

        async def write(conn: AsyncConnection) -> None:
            # A concurrent flush may have written some of them meanwhile (the writer runs
            # its items one by one): each open bucket is written once.
            due[:] = [(s, key, p) for s, key, p in due if s.open.get(key) is p]
            if not due:
                return
            rows = [
                {
                    "model": s.config.name,
                    "version": key[0],
                    "bucket_start": key[1],
                    "layout": s.layout.fingerprint,
                    "rows": profile.rows,
                    "has_sample": True,
                    "profile": profile.to_bytes(),
                    "created_at": now,
                    "writer": self.writer,
                }
                for s, key, profile in due
            ]
            await conn.execute(profile_table.insert(), rows)
            j = journal_table
            taken = set()
            for s, key, _ in due:
                mine = (j.c.model == s.config.name, j.c.writer == self.writer)
                deleted = await conn.execute(
                    j.delete().where(
                        *mine,  # other daemons' rows are theirs to flush
                        j.c.version == key[0],
                        j.c.bucket_start == key[1],
                        j.c.layout == s.layout.fingerprint,
                    )
                )
                if deleted.rowcount != s.journalled.get(key, 0):
                    taken.add(s.config.name)  # daemon/ingest/orphans.py
                # A batch acknowledged while the model's reference changed (an upload,
                # a new configuration) may be journalled under the previous layout after
                # the replay dropped those rows: dropped now, as the replay does.
                await conn.execute(j.delete().where(*mine, j.c.layout != s.layout.fingerprint))
            if taken:  # rolled back: the bucket holds batches another daemon has now
                raise JournalTaken(taken)

        def after(_result: None) -> None:
            for s, key, profile in due:
                if s.open.get(key) is profile:
                    del s.open[key]
                    s.journalled.pop(key, None)
                s.generation += 1

        try:
            await self.submit_moving([s for s, _, _ in due], Work(write, after, exclusive=True))
        except JournalTaken as exc:
            await rebuild_open(self, exc.models)
            return 0
        return len(due)  # as written

    async def adopt(self) -> int:
        """Take over the open buckets of daemons that are gone (daemon/ingest/orphans.py);
        returns the journalled batches taken over."""
        return await adopt_gone(self)

    async def window(
        self, state: ModelState, since: float, until: float, version: str | None = None
    ) -> Profile:
        """The merged profile of ``state``'s buckets starting in [since, until).

        The open buckets are taken before the store is read and the read is done again
        when a flush or a takeover was under way meanwhile: a bucket flushed between
        the two reads would otherwise be in neither (or, taken after, in both).
        """
        await state.ready.wait()
        bucket_seconds = self.context.config.monitoring.bucket_seconds
        first = math.floor(since / bucket_seconds) * bucket_seconds
        last = math.ceil(until / bucket_seconds) * bucket_seconds  # buckets starting < until
        store = self.context.store
        while True:
            await state.settled.wait()
            moves = state.moves
            opened = [
                profile
                for (v, start), profile in state.open.items()
                if first <= start < last and (version is None or v == version)
            ]
            if self.shared:  # with the other daemons' buckets, closed and open
                total = await shared_window(
                    store, state, self.writer, first, last, version, self.sample_size
                )
            else:
                total = await closed_buckets(store, state, first, last, version, self.sample_size)
            if not state.moving and state.moves == moves:
                break
        for profile in opened:
            total = merge_open(total, profile)
        return total

    async def move_windows(self) -> int:
        """Move the kept windows to the current window now, not on the next drift check."""
        monitoring = self.context.config.monitoring
        since = self.context.clock() - monitoring.window_hours * 3600.0
        first = math.floor(since / monitoring.bucket_seconds) * monitoring.bucket_seconds
        moved = 0
        for state in list(self.models.values()):
            try:
                moved += await move_windows(self.context.store, state, first, self.sample_size)
            except Exception as exc:  # dropped: the model's next check reads it anew
                name = state.config.name
                self.context.failed(
                    logger, exc, f"window {name}", "moving the window of %s failed", name
                )
        return moved

    # -- start-up: references and the journal --------------------------------------------

    async def _prepare(self, state: ModelState) -> None:
        try:
            await load_reference(self.context, state, self.loading)
        except Exception as exc:
            logger.error("model %s: reference not loaded: %s", state.config.name, exc)
            self.context.record_error(f"reference {state.config.name}", str(exc))
            state.reference_status = f"error: {exc}"
            fallback = layout_without_reference(state.config, self.context.config.monitoring)
            if fallback is not None:
                state.layout, state.open_schema = fallback, False
        try:
            profiles = await replay_journal(self.context, state, self.sample_size, self.writer)
            for key, profile in profiles:
                fold(state, key, profile)
        finally:
            state.ready.set()

    # -- housekeeping --------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        last_purge = 0.0
        last_adopt = -math.inf  # monotonic: the injected clock may stand still
        while True:
            monitoring = self.context.config.monitoring
            await asyncio.sleep(min(1.0, monitoring.bucket_seconds / 10))
            try:
                if time.monotonic() - last_adopt >= self.context.cluster.heartbeat_seconds:
                    last_adopt = time.monotonic()
                    await self.adopt()
                    if self.shared:
                        await follow_uploads(self)
                await self.flush()
                await self.move_windows()
                now = self.context.clock()
                if now - last_purge >= 60:
                    last_purge = now
                    await self.purge(now)
            except Exception as exc:
                self.context.failed(
                    logger, exc, "ingest housekeeping", "ingest housekeeping failed"
                )

    async def purge(self, now: float) -> None:
        """Delete what is past its time: predictions (label TTL), outcomes and buckets."""
        monitoring = self.context.config.monitoring
        ttl = now - monitoring.label_ttl_hours * 3600
        retention = now - monitoring.retention_days * 86400
        o, b = outcomes_table, profile_table

        async def write(conn: AsyncConnection) -> None:
            await purge_predictions(conn, ttl)
            await conn.execute(o.delete().where(o.c.ts < retention))
            await conn.execute(b.delete().where(b.c.bucket_start < retention))
            await purge_outcome_keys(conn)

        await self.submit(Work(write, _ignore, exclusive=True))


# -- helpers (pure; the blocking ones run in threads) --------------------------------------


async def _noop(conn: AsyncConnection) -> None:
    return None


def _ignore(_: object) -> None:
    return None


def _fail(group: list[Work[Any]], exc: Exception, outage: Outage) -> None:
    """Fail every caller of ``group``: nothing of it was committed (or, if the store
    dropped the connection during the commit, nothing is acknowledged)."""
    if not isinstance(exc, JournalTaken):  # expected: the flush rebuilds and says so
        log_failure(logger, outage, exc, "ingest commit failed")
    for work in group:
        if not work.future.done():
            work.future.set_exception(exc)


def _settle(group: list[Work[Any]], results: list[tuple[bool, Any]]) -> None:
    for work, (ok, value) in zip(group, results, strict=True):
        if work.future.done():
            continue
        if not ok:
            work.future.set_exception(value)
            continue
        try:
            work.after(value)
            work.future.set_result(value)
        except Exception as exc:  # never leave a caller hanging
            logger.exception("ingest fold failed after commit")
            work.future.set_exception(exc)
