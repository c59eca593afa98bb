"""The daemon's malloc settings: a fixed mmap threshold, capped arenas, the operator's say."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

from mlwarden.daemon.core.memory import _libc

pytestmark = pytest.mark.skipif(
    _libc() is None or not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"),
    reason="needs glibc >= 2.33 (mallopt, mallinfo2)",
)

# After a 16 MB block is freed, is a 4 MB block still given its own mmap? glibc's
# dynamic threshold says no (it rose to 16 MB); the daemon's fixed threshold says yes.
PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    from mlwarden.daemon.core.memory import tune_malloc

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = Info
    done = tune_malloc() if sys.argv[1] == "tune" else {}
    libc.free(libc.malloc(16 << 20))
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    print(json.dumps({"done": done, "mmapped": libc.mallinfo2().hblks - before}))
    libc.free(block)
    """
)


def run_probe(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    return json.loads(result.stdout)


def test_tuned_malloc_gives_big_blocks_their_own_mmap():
    untouched = run_probe("leave")
    tuned = run_probe("tune")
    assert untouched["mmapped"] == 0  # glibc's default: the threshold followed the 16 MB
    assert tuned["mmapped"] == 1
    assert tuned["done"] == {"malloc_arena_max": 2, "malloc_mmap_threshold": 1024 * 1024}


def test_the_operators_settings_win():
    out = run_probe("tune", MALLOC_MMAP_THRESHOLD_=str(64 << 20), MALLOC_ARENA_MAX="4")
    assert out["done"] == {} and out["mmapped"] == 0
    out = run_probe("tune", GLIBC_TUNABLES="glibc.malloc.arena_max=4")
    assert out["done"] == {"malloc_mmap_threshold": 1024 * 1024}
