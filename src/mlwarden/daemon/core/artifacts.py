"""An MLflow artifact repository that seals every artifact file it writes.

Registered on MLflow's ``mlflow.artifact_repository`` entry point (pyproject.toml) for
the URI scheme ``mlwarden-encrypted``: ``mlwarden-encrypted:///var/lib/mlwarden/mlartifacts``
is the local directory ``/var/lib/mlwarden/mlartifacts`` whose files are each an
envelope (:mod:`.encryption`, purpose ``artifact``). With encryption on, the daemon
creates its MLflow experiment with such a location, so every run and logged model of
the experiment (a trainer's ``mlflow.sklearn.log_model``, a registration) is sealed on
disk; any process with mlwarden installed and the key ring in its environment
(``MLWARDEN_KEY_FILE``, ``MLWARDEN_ENCRYPTION_KEYS`` or the systemd credential) reads
the artifacts through MLflow's own client, as plaintext, transparently.

Downloads decrypt each file completely before it appears at its destination; a file
that fails its tag check raises :class:`~mlwarden.errors.DecryptionFailed` naming it and
leaves nothing behind.

With a shared ``mlflow server`` that proxies artifacts (docs/registry.md), the scheme
``mlwarden-encrypted-proxied:/…`` seals the same way on this side and hands the sealed
files to the server's artifact proxy (as ``mlflow-artifacts:/…``): the server and its
artifact store only ever hold envelopes, and its UI cannot show the files. (Not
``mlwarden-encrypted+mlflow-artifacts``: the server's check of model version sources
unquotes a ``+`` to a space and then refuses the URI.)
Key rotation re-wraps local artifact directories only (:func:`iter_artifact_files`).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

from .encryption import Sealer, current_sealer, is_sealed
from .keys import load_keyring

__all__ = [
    "PROXIED_SCHEME",
    "SCHEME",
    "EncryptedArtifactRepository",
    "check_file",
    "encrypted_uri",
    "iter_artifact_files",
    "local_path",
    "register_scheme",
    "rewrap_file",
    "sealed_location",
]

SCHEME = "mlwarden-encrypted"
#: Sealed here, stored through an ``mlflow server``'s artifact proxy.
PROXIED_SCHEME = SCHEME + "-proxied"
PURPOSE = "artifact"

_env_sealer: Sealer | None = None
_env_lock = threading.Lock()


def encrypted_uri(directory: str | Path) -> str:
    """The ``mlwarden-encrypted://`` URI of a local directory."""
    return SCHEME + "://" + Path(directory).resolve().as_uri().removeprefix("file://")


def sealed_location(location: str) -> str:
    """The sealed form of an ``mlflow-artifacts:`` location (ConfigError for another)."""
    from ...errors import ConfigError

    if not location.startswith("mlflow-artifacts:"):
        raise ConfigError(
            f"mlflow.artifact_location: with encryption on and an MLflow tracking server, "
            f"artifacts are sealed here and stored through the server's artifact proxy; "
            f"expected an 'mlflow-artifacts:/…' location (or none), got {location!r}"
        )
    return PROXIED_SCHEME + location.removeprefix("mlflow-artifacts")


def local_path(uri: str) -> Path:
    """The local directory of an ``mlwarden-encrypted://`` URI."""
    return Path(unquote(urlparse(uri).path))


def _sealer() -> Sealer:
    """The daemon's sealer in the daemon; otherwise one built from the environment."""
    global _env_sealer
    sealer = current_sealer()
    if sealer is not None and sealer.enabled:
        return sealer
    with _env_lock:
        if _env_sealer is None:
            _env_sealer = Sealer(load_keyring())
        return _env_sealer


class EncryptedArtifactRepository(ArtifactRepository):
    """Wraps MLflow's local (or the server's proxied) artifact repository; each file is
    sealed on the way in and opened on the way out."""

    def __init__(
        self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self.root: Path | None = None
        self.inner: ArtifactRepository
        if artifact_uri.startswith(PROXIED_SCHEME + ":"):
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            inner_uri = "mlflow-artifacts" + artifact_uri.removeprefix(PROXIED_SCHEME)
            self.inner = get_artifact_repository(inner_uri, tracking_uri, registry_uri)
        else:
            self.root = local_path(artifact_uri)
            self.inner = LocalArtifactRepository(self.root.as_uri())

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        data = Path(local_file).read_bytes()
        sealed = _sealer().seal(data, PURPOSE)
        with tempfile.TemporaryDirectory(prefix="mlwarden-seal-") as tmp:
            staged = Path(tmp) / Path(local_file).name
            staged.write_bytes(sealed)
            self.inner.log_artifact(str(staged), artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        for root, _dirs, files in os.walk(local_dir):
            rel = os.path.relpath(root, local_dir)
            parts = [p for p in (artifact_path, None if rel == "." else rel) if p]
            dest = posixpath.join(*(p.replace(os.sep, "/") for p in parts)) if parts else None
            for name in files:
                self.log_artifact(os.path.join(root, name), dest)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        return self.inner.list_artifacts(path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        dest = Path(local_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.root is not None:
            source = self.root / remote_file_path
            sealed, what = source.read_bytes(), f"artifact {source}"
        else:
            with tempfile.TemporaryDirectory(prefix="mlwarden-open-") as tmp:
                staged = Path(tmp) / "sealed"
                self.inner._download_file(remote_file_path, str(staged))
                sealed = staged.read_bytes()
            what = f"artifact {self.artifact_uri.rstrip('/')}/{remote_file_path}"
        plaintext = _sealer().open(sealed, PURPOSE, what)
        tmp_path = dest.with_name(f".{dest.name}.partial")
        tmp_path.write_bytes(plaintext)
        os.replace(tmp_path, dest)

    def download_artifacts(self, artifact_path: str, dst_path: str | None = None) -> str:
        """Decrypt ``artifact_path`` (a file or a directory) under ``dst_path``; its path.

        Locally a direct walk of the tree: MLflow's generic download (a listing per
        directory, a thread pool per file) costs more than the decryption itself.
        Through a server, MLflow's generic download, each file opened by ``_download_file``.
        """
        if self.root is None:
            return super().download_artifacts(artifact_path, dst_path)
        source = self.root / artifact_path if artifact_path else self.root
        dst = Path(dst_path or tempfile.mkdtemp(prefix="mlwarden-artifacts-"))
        target = dst / artifact_path if artifact_path else dst
        sealer = _sealer()
        files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
        if not source.exists():
            raise FileNotFoundError(f"artifact {source} does not exist")
        for path in files:
            rel = path.relative_to(self.root)
            plaintext = sealer.open(path.read_bytes(), PURPOSE, f"artifact {path}")
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.partial")
            tmp.write_bytes(plaintext)
            os.replace(tmp, out)
        return str(target)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        self.inner.delete_artifacts(artifact_path)


def register_scheme() -> None:
    """Register the scheme in this process's MLflow (the entry point does it when installed)."""
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry

    _artifact_repository_registry.register(SCHEME, EncryptedArtifactRepository)
    _artifact_repository_registry.register(PROXIED_SCHEME, EncryptedArtifactRepository)


def iter_artifact_files(root: Path) -> Iterator[Path]:
    """Every sealed file under ``root`` (for rotation and the start-up key check)."""
    if not root.is_dir():
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                with path.open("rb") as fh:
                    head = fh.read(4)
            except OSError:
                continue
            if is_sealed(head):
                yield path


def rewrap_file(sealer: Sealer, path: Path) -> bool:
    """Re-wrap one artifact's data key with the active key, atomically; True if changed."""
    data = path.read_bytes()
    out = sealer.rewrap(data, f"artifact {path}")
    if out is None:
        return False
    tmp = path.with_name(f".{path.name}.rewrap")
    tmp.write_bytes(out)
    os.chmod(tmp, path.stat().st_mode & 0o777)
    os.replace(tmp, path)
    return True


def check_file(sealer: Sealer, path: Path) -> None:
    """Open ``path`` fully (raise DecryptionFailed naming it)."""
    sealer.open(path.read_bytes(), PURPOSE, f"artifact {path}")
