"""The gateway's decrypted model copies: one per version, private, whole or absent.

With encryption at rest the artifact store holds ciphertext; ``pyfunc.load_model``
needs files. Each version is decrypted once (``mlflow.artifacts.download_artifacts``
through the encrypting artifact repository) into a directory of its own under a
private root (``mkdtemp``: mode 0700, owned by the daemon's user; ``PrivateTmp=`` under
systemd), and reused by every later load of that version (after an eviction from the
gateway's memory, a rollout's preflight, a reload), so the cost of decryption is paid
once per version, not per load.

Nothing half-decrypted is ever loaded: a version is decrypted into a staging directory
(``.partial-*``) and renamed to its final name only once every file has passed its tag
check; a failed or interrupted decryption removes the staging directory. A version's
copy is removed when it is retired (deprecated, archived or failed) and the whole root
when the gateway closes (the daemon stops).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["DecryptedModels"]

logger = logging.getLogger(__name__)


class DecryptedModels:
    """Decrypted copies of model versions, by (model, version); see the module docstring."""

    def __init__(self, parent: str | None = None) -> None:
        self._parent = parent
        self._root: Path | None = None
        self._lock = threading.Lock()
        #: (model, version) -> the local path the download returned, inside the copy.
        self._paths: dict[tuple[str, str], Path] = {}

    @property
    def root(self) -> Path | None:
        """The private directory, once a version was decrypted (None before)."""
        return self._root

    def _private_root(self) -> Path:
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="mlwarden-models-", dir=self._parent))
            os.chmod(root, stat.S_IRWXU)  # mkdtemp makes it 0700; say so explicitly
            self._root = root
        return self._root

    @staticmethod
    def _name(model: str, version: str) -> str:
        # A digest, not the names: a model or version never becomes a path component.
        return hashlib.sha256(f"{model}\0{version}".encode()).hexdigest()[:32]

    def path(self, model: str, version: str, download: Callable[[str], str]) -> str:
        """The local path of the version's decrypted copy, decrypting it on first use.

        ``download(directory)`` decrypts the version into ``directory`` and returns the
        local path of the model in it; if it raises, nothing is kept.
        """
        key = (model, version)
        with self._lock:
            known = self._paths.get(key)
            if known is not None and known.exists():
                return str(known)
            root = self._private_root()
            final = root / self._name(model, version)
            shutil.rmtree(final, ignore_errors=True)  # a copy removed behind our back
            staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
            try:
                local = Path(download(str(staging)))
                relative = local.resolve().relative_to(staging.resolve())
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            self._paths[key] = final / relative
            return str(self._paths[key])

    def cached(self, model: str, version: str) -> bool:
        """Whether the version has a whole decrypted copy."""
        with self._lock:
            known = self._paths.get((model, version))
            return known is not None and known.exists()

    def discard(self, model: str, version: str) -> bool:
        """Remove the version's copy; whether there was one."""
        with self._lock:
            known = self._paths.pop((model, version), None)
            if known is None or self._root is None:
                return False
            shutil.rmtree(self._root / self._name(model, version), ignore_errors=True)
            logger.info("gateway removed the decrypted copy of %s@%s", model, version)
            return True

    def close(self) -> None:
        """Remove every copy and the private root."""
        with self._lock:
            self._paths.clear()
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
                self._root = None
