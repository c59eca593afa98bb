"""The daemon process's memory: malloc tuned for big numpy arrays, freed memory handed back.

The daemon's heavy numpy work (reference loads, bucket merges, drift checks) allocates
arrays of megabytes and frees them soon after. glibc's malloc serves such a block with
its own ``mmap`` (returned to the OS on free) only while it is above the *mmap
threshold*, and it raises that threshold to the size of every mmapped block freed, up
to 32 MB: after the first reference load, blocks of up to that size come from the
heap, where a few live small blocks pin the pages around them. It also gives each
thread that allocates (the ``asyncio.to_thread`` workers) an arena of its own, up to
eight per core, each holding its own freed pages: a daemon watching 20 models would
hold hundreds of MB more than its live data.

``mlwarden run`` therefore fixes the mmap threshold at 1 MB and caps the arenas at two
(:func:`tune_malloc`) before any worker thread exists, and the reference loader gives
freed memory back after each load (:func:`release_memory`). 1 MB rather than lower: the
body and blocks of an ingest batch (0.4-0.9 MB for 1,000 records of 50 features) then
come from the heap and are reused instead of costing fresh pages (page faults) at every
batch (at 256 kB, about 4 ms of system CPU per batch, 8-12% of the ingest rate, for
3 MB less RSS; docs/benchmarks.md). Neither is done for a Warden embedded in another
program: its process, its allocator. An operator's own ``MALLOC_ARENA_MAX`` /
``MALLOC_MMAP_THRESHOLD_`` (or ``GLIBC_TUNABLES``) wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

__all__ = ["DAEMON_MALLOC_ARENAS", "DAEMON_MMAP_THRESHOLD", "release_memory", "tune_malloc"]

logger = logging.getLogger(__name__)

#: Arenas for the daemon's process: the event loop's thread and one worker at a time
#: doing numpy work. More arenas buy little (the GIL serialises most allocations).
DAEMON_MALLOC_ARENAS = 2
#: Blocks from this size up get their own mmap, given back to the OS when freed.
DAEMON_MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  # glibc only (musl has no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(
    arenas: int = DAEMON_MALLOC_ARENAS, mmap_threshold: int = DAEMON_MMAP_THRESHOLD
) -> dict[str, int]:
    """Cap glibc's arenas and fix its mmap threshold; returns the settings made.

    Must run before other threads allocate: glibc fixes its arena limit when the first
    thread needs an arena of its own. A setting the operator made through the
    environment is left alone, and so is a C library other than glibc.
    """
    libc = _libc()
    if libc is None:
        return {}
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    done: dict[str, int] = {}
    for env, tunable, param, value in (
        ("MALLOC_ARENA_MAX", "arena_max", _M_ARENA_MAX, arenas),
        ("MALLOC_MMAP_THRESHOLD_", "mmap_threshold", _M_MMAP_THRESHOLD, mmap_threshold),
    ):
        if env in os.environ or tunable in tunables:
            continue
        if libc.mallopt(param, value):
            done[env.rstrip("_").lower()] = value
        else:
            logger.debug("mallopt(%s, %d) refused", env, value)
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
