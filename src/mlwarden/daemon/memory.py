"""The daemon process's memory: fewer malloc arenas, freed memory handed back to the OS.

The daemon does its heavy numpy work (reference loads, bucket merges, drift checks) in
``asyncio.to_thread`` workers. glibc gives each thread that allocates its own malloc
arena (up to eight per core) and keeps what a thread freed in that thread's arena, so
a daemon watching twenty models held the peaks of twenty reference loads spread over
several arenas: ~230 MB more than with one arena (docs/benchmarks.md, memory). The
``mlwarden run`` command therefore caps the arenas (:func:`limit_malloc_arenas`) before
any worker thread exists, and the reference loader gives freed memory back after each
load (:func:`release_memory`). Neither is done for a Warden embedded in another
program: its process, its allocator.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

__all__ = ["DAEMON_MALLOC_ARENAS", "limit_malloc_arenas", "release_memory"]

logger = logging.getLogger(__name__)

#: Arenas for the daemon's process: the event loop's thread and one worker at a time
#: doing numpy work. More arenas buy little (the GIL serialises most allocations).
DAEMON_MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc <malloc.h>


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  # glibc only (musl has no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = DAEMON_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; True when the cap was set.

    Must run before other threads allocate: glibc fixes its arena limit when the
    first thread needs an arena of its own. Leaves the allocator alone when the
    operator chose (``MALLOC_ARENA_MAX`` or a ``glibc.malloc.arena_max`` tunable)
    and where the C library is not glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    if libc is None:
        return False
    done = bool(libc.mallopt(_M_ARENA_MAX, arenas))
    if not done:
        logger.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return done


def release_memory() -> None:
    """Give memory freed after a big load back to the OS (blocking).

    Reading Parquet goes through Arrow's memory pool, which keeps freed blocks, and
    glibc's malloc keeps its arenas' free pages; without this a daemon watching many
    models holds the peak of every reference load, not the small profiles that remain.
    """
    pyarrow = sys.modules.get("pyarrow")  # never imported just for this
    if pyarrow is not None:
        with contextlib.suppress(Exception):  # too old a pyarrow: nothing to release
            pyarrow.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
