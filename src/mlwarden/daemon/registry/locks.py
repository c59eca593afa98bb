"""One writer per model at a time, across every daemon that shares the store.

Registering a version (choosing its semantic version, creating the MLflow version,
inserting the row), moving a version's status, pointing an alias and applying a
serving change each read the model's state and then write it; two daemons doing that
at once would both choose ``1.0.1``, both deprecate the old production version, both
write the traffic table. So each holds the model's lock while it does:

- always an :class:`asyncio.Lock` per model (the tasks of this daemon);
- on PostgreSQL also a session advisory lock keyed by the model's name
  (``pg_advisory_lock``), held on a connection of its own for the duration: the other
  daemons wait for it, and PostgreSQL drops it by itself if the holder's connection
  dies (a daemon killed with ``-9``), so a dead holder never wedges the model. On
  SQLite only one daemon runs on a base path, so the first is enough.

The lock is re-entrant within one task (a serving change holds it while the registry
moves statuses under it); another task, even one spawned by the holder, waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa

from ..core.store import Store

__all__ = ["ModelLocks", "lock_key"]

logger = logging.getLogger(__name__)


def lock_key(model: str) -> int:
    """The advisory-lock key of ``model``: a signed 64-bit hash of a namespaced name."""
    digest = hashlib.blake2b(f"mlwarden.registry:{model}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ModelLocks:
    """Per-model locks: this daemon's tasks, and (on PostgreSQL) every daemon's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: model -> the task that holds its lock.
        self._owners: dict[str, asyncio.Task[object]] = {}

    def held(self, model: str) -> bool:
        """Whether the current task holds ``model``'s lock."""
        owner = self._owners.get(model)
        return owner is not None and owner is asyncio.current_task()

    @asynccontextmanager
    async def hold(self, model: str) -> AsyncIterator[None]:
        """Hold ``model``'s lock (re-entrant within a task)."""
        if self.held(model):
            yield
            return
        async with self._local[model]:
            task = asyncio.current_task()
            assert task is not None
            self._owners[model] = task
            try:
                if self.store.is_sqlite or self.store.engine is None:
                    yield
                else:
                    async with self._advisory(model):
                        yield
            finally:
                del self._owners[model]

    @asynccontextmanager
    async def _advisory(self, model: str) -> AsyncIterator[None]:
        assert self.store.engine is not None
        key = lock_key(model)
        async with self.store.engine.connect() as conn:
            try:
                await conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
                # Leave no transaction open while the work runs (idle in transaction).
                await conn.commit()
            except BaseException:
                # Cancelled (or failed) while waiting: the server may have granted the
                # lock all the same. Close the session rather than pool a connection
                # that holds it; PostgreSQL releases it with the session.
                await conn.invalidate()
                raise
            try:
                yield
            finally:
                try:
                    await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    await conn.commit()
                except Exception as exc:  # the connection died: so did its lock
                    logger.warning("releasing the lock of model %s: %s", model, exc)
                    await conn.invalidate()
