"""Memory and CPU limits for a trainer's process tree, and telling a limit kill apart.

Under systemd (the daemon is a unit: ``INVOCATION_ID`` or ``NOTIFY_SOCKET`` is set,
``/run/systemd/system`` exists and ``systemd-run`` works) the trainer runs in a
transient scope, ``systemd-run --scope -p MemoryMax= -p CPUQuota=``: the kernel's
cgroup accounting holds the whole tree to the memory limit (the OOM killer ends it
with SIGKILL) and throttles it to the CPU quota. Elsewhere the limits are
``setrlimit`` calls in the trainer process before it execs (``RLIMIT_AS`` for memory:
an allocation past it fails, so Python raises ``MemoryError``; ``RLIMIT_CPU`` for CPU
time: SIGXCPU at the limit, SIGKILL a second later). ``RLIMIT_CPU`` is set in both
cases, since a CPU quota throttles but never ends a job. Both are inherited by every
process the trainer starts (rlimits per process, the cgroup for the tree).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LIMIT_KEYS",
    "ResourceLimits",
    "limit_reason",
    "systemd_scope_usable",
    "wrap_for_limits",
]

logger = logging.getLogger(__name__)

#: The keys of ``[training]`` (defaults) and ``[models.trainer]`` (per model).
LIMIT_KEYS: tuple[str, ...] = ("memory_limit_mb", "cpu_limit_seconds", "cpu_quota_percent")

#: What a process that ran out of (address space) memory leaves in its log.
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|std::bad_alloc|Cannot allocate memory|[Oo]ut of memory|"
    r"failed to allocate|Unable to allocate"
)

#: Seconds of CPU between SIGXCPU (the soft limit) and SIGKILL (the hard limit).
_CPU_HARD_MARGIN = 1


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """A trainer's limits; 0 means none.

    ``memory_limit_mb``: MemoryMax of the scope, else RLIMIT_AS of each process.
    ``cpu_limit_seconds``: CPU time of each process (RLIMIT_CPU), killed past it.
    ``cpu_quota_percent``: CPUQuota of the scope (100 = one core); systemd only.
    """

    memory_limit_mb: float = 0.0
    cpu_limit_seconds: float = 0.0
    cpu_quota_percent: float = 0.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> ResourceLimits:
        """From a mapping with (some of) the ``LIMIT_KEYS``; other keys are ignored."""
        options = options or {}
        return cls(**{k: float(options[k]) for k in LIMIT_KEYS if options.get(k)})

    def as_options(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in LIMIT_KEYS}

    @property
    def any(self) -> bool:
        return bool(self.memory_limit_mb or self.cpu_limit_seconds or self.cpu_quota_percent)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_limit_mb * 1024 * 1024)

    def preexec(self, *, memory: bool) -> Callable[[], None] | None:
        """The function the child runs before exec: its rlimits (None when there are none).

        ``memory`` is false when a systemd scope holds the memory limit instead.
        """
        memory_bytes = self.memory_bytes if memory else 0
        cpu = int(self.cpu_limit_seconds + 0.999) if self.cpu_limit_seconds else 0
        if not memory_bytes and not cpu:
            return None

        def apply() -> None:  # runs in the forked child: no logging, no locks
            if memory_bytes:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
            if cpu:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + _CPU_HARD_MARGIN))

        return apply


_scope_usable: dict[tuple[str, bool], bool] = {}


def _under_systemd(environ: Mapping[str, str], run_dir: Path) -> bool:
    return bool(environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET")) and run_dir.is_dir()


async def systemd_scope_usable(
    environ: Mapping[str, str] | None = None,
    *,
    run_dir: Path = Path("/run/systemd/system"),
    systemd_run: str | None = None,
) -> list[str] | None:
    """The ``systemd-run`` argv prefix to start a scope with, or None when there is none.

    Needs the daemon to run as a systemd unit, ``systemd-run`` on the path, and a trial
    scope that starts (``--user`` for a daemon that is not root). The trial's outcome
    is remembered for the life of the process.
    """
    environ = os.environ if environ is None else environ
    if not _under_systemd(environ, run_dir):
        return None
    binary = systemd_run or shutil.which("systemd-run")
    if not binary:
        return None
    user = os.geteuid() != 0
    prefix = [binary, *(["--user"] if user else []), "--scope", "--quiet", "--collect"]
    key = (binary, user)
    if key not in _scope_usable:
        _scope_usable[key] = await _try_scope(prefix)
        if not _scope_usable[key]:
            logger.warning(
                "running under systemd but %s cannot start a scope; trainer limits fall "
                "back to setrlimit (cpu_quota_percent is not enforced)",
                " ".join(prefix),
            )
    return prefix if _scope_usable[key] else None


async def _try_scope(prefix: Sequence[str]) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            "-p",
            "MemoryMax=infinity",
            "true",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(15):
            return await proc.wait() == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


def wrap_for_limits(
    argv: Sequence[str], limits: ResourceLimits, scope: Sequence[str] | None, unit: str
) -> tuple[list[str], Callable[[], None] | None]:
    """The argv to run and the child's pre-exec function for ``limits``.

    With a ``scope`` prefix (see :func:`systemd_scope_usable`) the memory limit and
    the CPU quota become properties of a transient scope named ``unit``; the CPU-time
    limit stays an rlimit either way.
    """
    if not limits.any:
        return list(argv), None
    if scope and (limits.memory_limit_mb or limits.cpu_quota_percent):
        properties: list[str] = []
        if limits.memory_limit_mb:
            properties += ["-p", f"MemoryMax={limits.memory_bytes}", "-p", "MemorySwapMax=0"]
        if limits.cpu_quota_percent:
            properties += ["-p", f"CPUQuota={limits.cpu_quota_percent:g}%"]
        wrapped = [*scope, f"--unit={unit}", *properties, "--", *argv]
        return wrapped, limits.preexec(memory=False)
    return list(argv), limits.preexec(memory=True)


def limit_reason(code: int, limits: ResourceLimits, *, scoped: bool, log_text: str) -> str | None:
    """``"memory limit"`` or ``"cpu limit"`` when exit ``code`` is a limit's doing, else None.

    CPU time: killed by SIGXCPU (or by the SIGKILL that follows it a second later, when
    the process ignored SIGXCPU). Memory in a scope: killed by the OOM killer's
    SIGKILL. Memory as an rlimit: a non-zero exit whose log (``log_text``: what this
    attempt wrote) shows an allocation failure.
    """
    if (
        limits.cpu_limit_seconds
        and code in (-signal.SIGXCPU, -signal.SIGKILL)
        and not (scoped and limits.memory_limit_mb and code == -signal.SIGKILL)
    ):
        return "cpu limit"
    if not limits.memory_limit_mb or code == 0:
        return None
    if scoped:
        return "memory limit" if code == -signal.SIGKILL else None
    return "memory limit" if _OUT_OF_MEMORY.search(log_text) else None
