"""MLflow's entry point for the ``mlwarden-encrypted`` scheme (pyproject.toml).

MLflow loads its ``mlflow.artifact_repository`` entry points while ``mlflow`` itself is
being imported. When that first import happens inside :mod:`.artifacts` (which needs
MLflow's base classes), the class it names does not exist yet and MLflow drops the
scheme with a warning. This module imports nothing at load time: the factory builds
the repository only when MLflow asks for one, long after both imports finished.
"""

from __future__ import annotations

from typing import Any

__all__ = ["open_repository"]


def open_repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    """An :class:`~.artifacts.EncryptedArtifactRepository` for ``artifact_uri``."""
    from .artifacts import EncryptedArtifactRepository

    return EncryptedArtifactRepository(artifact_uri, tracking_uri, registry_uri)
