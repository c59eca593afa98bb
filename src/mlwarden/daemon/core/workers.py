"""Blocking work off the event loop: in threads, or in a pool of worker processes.

Threads keep the event loop responsive, but pure-Python work (decoding JSON, building
numpy arrays from Python values) holds the GIL, so a daemon doing it in threads uses
one core however many it has. A ``WorkerPool`` with ``processes`` > 0 runs such work
in that many worker processes instead (spawned, not forked: the daemon has threads),
and the daemon's own process only moves the results. With 0 it runs the work in a
thread, as ``asyncio.to_thread`` does.

The function and its arguments and result must be picklable (module-level functions,
plain data). A worker that dies (killed, out of memory) breaks the pool: the call that
saw it is run again in a thread, and the next call starts a new pool. Workers start
with the first call and live until ``close``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["WorkerPool"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerPool:
    """Runs blocking calls in ``processes`` worker processes, or in threads when 0."""

    def __init__(self, processes: int = 0) -> None:
        if processes < 0:
            raise ValueError(f"processes must be >= 0, got {processes}")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker process (or a thread); its result or error."""
        call = functools.partial(fn, *args, **kwargs)
        if not self.processes:
            return await asyncio.to_thread(call)
        executor = self._executor
        if executor is None:
            executor = self._executor = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn")
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, call)
        except BrokenProcessPool:
            logger.warning("a worker process died; the call runs in a thread, the pool restarts")
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            return await asyncio.to_thread(call)

    async def resize(self, processes: int) -> None:
        """Use ``processes`` workers from the next call on (the old pool is closed)."""
        if processes != self.processes:
            await self.close()
            self.processes = processes

    async def close(self) -> None:
        """Stop the worker processes (the calls already submitted finish first)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
