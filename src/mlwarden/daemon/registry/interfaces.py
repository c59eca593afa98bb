"""What the registry offers other services, as Protocols (wired in daemon/warden.py).

Another service never imports the registry's modules: it is handed the registry
service as one of these, and may import only this module from ``registry/``. A version
record is a :class:`VersionRecord`, the dict ``GET /api/models/{name}/versions/{version}``
answers (docs/registry.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ...types import AliasRegistry
from .records import (
    DataWindow,
    DirectPromotion,
    DirectRollback,
    GateCheckRecord,
    GateReportRecord,
    RollbackPlan,
    VersionRecord,
)

__all__ = [
    "DataWindow",
    "DirectPromotion",
    "DirectRollback",
    "GateCheckRecord",
    "GateReportRecord",
    "RollbackPlan",
    "VersionLifecycle",
    "VersionRecord",
    "VersionRecords",
    "VersionRegistrar",
]


class VersionRecords(Protocol):
    """Reading model versions."""

    async def get(self, model: str, version: str) -> VersionRecord:
        """The record of one version; NotFound (404) names the model and version."""
        ...

    async def versions(self, model: str) -> list[VersionRecord]:
        """Every version of ``model``, oldest semantic version first."""
        ...

    async def production(self, model: str) -> VersionRecord | None:
        """The version in ``production``, or None."""
        ...

    async def model_names(self) -> list[str]:
        """Every model with a registered version or a ``[[models]]`` entry."""
        ...

    async def rollback_target(self, model: str) -> str | None:
        """The previous production version (the latest to leave it, still deprecated)."""
        ...


class VersionLifecycle(VersionRecords, AliasRegistry, Protocol):
    """Reading versions, moving them through their statuses, pointing aliases at them
    (the rollouts service and its traffic backends)."""

    async def transition(
        self, model: str, version: str, status: str, *, actor: str, reason: str = ""
    ) -> VersionRecord:
        """Move a version to ``status``; Conflict (409) when the lifecycle forbids it."""
        ...

    def exclusive(self, model: str) -> AbstractAsyncContextManager[None]:
        """Hold ``model``'s write lock: one writer per model across every daemon that
        shares the store (re-entrant within a task). Whoever reads a model's state to
        decide a change holds it from the read to the last write."""
        ...

    async def rollback_plan(
        self, model: str, version: str | None = None, *, seen: str | None
    ) -> RollbackPlan:
        """What rolling production back would do, checked: the version it restores
        (``version``, else the previous production version) and the one it replaces.

        Conflict (409) when there is none to restore, it is already in production, it is
        not deprecated, or (no ``version`` given) production moved from ``seen``, the
        production version the caller saw when it asked. The caller holds the model's
        lock from this check to its change of what serves.
        """
        ...


class VersionRegistrar(Protocol):
    """Registering a trained model as a new version (the training jobs)."""

    async def register(
        self,
        model: str,
        *,
        model_uri: str | None = None,
        metrics: dict[str, float] | None = None,
        params: Mapping[str, object] | None = None,
        lineage: Mapping[str, object] | None = None,
        author: str | None = None,
        status: str = "validation",
    ) -> VersionRecord:
        """Register ``model_uri`` as a new version in ``status`` (``validation``, or
        ``training`` while its job runs); its record."""
        ...

    async def register_body(
        self, model: str, body: Mapping[str, Any], *, status: str = "validation"
    ) -> VersionRecord:
        """Register from the fields of ``POST .../versions`` in ``status``."""
        ...

    async def settle_training(
        self, model: str, job_id: str, *, succeeded: bool, reason: str
    ) -> list[str]:
        """Move the job's versions still in ``training`` to ``validation`` (it
        succeeded) or ``failed``; the versions moved."""
        ...
