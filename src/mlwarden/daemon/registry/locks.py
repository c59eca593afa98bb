"""One writer per model at a time, across every daemon that shares the store.

Registering a version (choosing its semantic version, creating the MLflow version,
inserting the row), moving a version's status, pointing an alias and applying a
serving change each read the model's state and then write it; two daemons doing that
at once would both choose ``1.0.1``, both deprecate the old production version, both
write the traffic table. So each holds the model's lock while it does:

- always an :class:`asyncio.Lock` per model (the tasks of this daemon);
- on PostgreSQL also a session advisory lock keyed by the model's name, taken with
  ``pg_try_advisory_lock`` (retried until it is granted) on **one session of its
  own** per daemon, outside the connection pool (``Store.session``). The other daemons
  wait for it, and PostgreSQL drops it by itself if that session dies (a daemon killed
  with ``-9``), so a dead holder never wedges the model. On SQLite only one daemon runs
  on a base path, so the first is enough.

Every model lock of a daemon lives on that one session, so holding locks takes no
pooled connection: many models changing at once never exhaust ``store.pool_size``
while the work under the locks needs connections of its own. The session runs one
statement at a time (a try, an unlock: a few hundred microseconds), and a waiter never
blocks it: it tries again after a short sleep (10 ms, doubling up to 200 ms).

The lock is re-entrant within one task (a serving change holds it while the registry
moves statuses under it); another task, even one spawned by the holder, waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.store import Store

__all__ = ["ModelLocks", "lock_key"]

logger = logging.getLogger(__name__)


def lock_key(model: str) -> int:
    """The advisory-lock key of ``model``: a signed 64-bit hash of a namespaced name."""
    digest = hashlib.blake2b(f"mlwarden.registry:{model}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: A waiter's first and longest sleep between two tries of a held lock.
_FIRST_RETRY, _LONGEST_RETRY = 0.01, 0.2


class ModelLocks:
    """Per-model locks: this daemon's tasks, and (on PostgreSQL) every daemon's."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._local: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        #: model -> the task that holds its lock.
        self._owners: dict[str, asyncio.Task[object]] = {}
        self._session: AsyncConnection | None = None
        self._statement = asyncio.Lock()  # one statement at a time on the session

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

    async def close(self) -> None:
        """End the session of the advisory locks (PostgreSQL drops what it held)."""
        if self._session is not None:
            session, self._session = self._session, None
            await self.store.end_session(session)

    @asynccontextmanager
    async def _advisory(self, model: str) -> AsyncIterator[None]:
        key = lock_key(model)
        delay = _FIRST_RETRY
        while not await self._try(key):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LONGEST_RETRY)
        try:
            yield
        finally:
            try:
                await asyncio.shield(self._run(sa.select(sa.func.pg_advisory_unlock(key))))
            except Exception as exc:  # the session died: so did its locks
                logger.warning("releasing the lock of model %s: %s", model, exc)

    async def _try(self, key: int) -> bool:
        """One ``pg_try_advisory_lock``; a cancelled caller leaves no lock behind."""
        attempt = asyncio.ensure_future(self._run(sa.select(sa.func.pg_try_advisory_lock(key))))
        try:
            return bool(await asyncio.shield(attempt))
        except asyncio.CancelledError:
            # The statement runs on (shielded): if the server granted the lock, let go.
            with contextlib.suppress(Exception):
                if await attempt:
                    await self._run(sa.select(sa.func.pg_advisory_unlock(key)))
            raise

    async def _run(self, query: sa.Select[Any]) -> Any:
        """Run ``query`` on the locks' session (opened on first use, again after a loss)."""
        async with self._statement:
            if self._session is None:
                self._session = await self.store.session()
            try:
                return (await self._session.execute(query)).scalar()
            except (OSError, sa.exc.DBAPIError):
                # The session is gone, and every advisory lock it held with it.
                session, self._session = self._session, None
                logger.warning("the session of the model locks was lost; it is reopened")
                await self.store.end_session(session)
                raise
