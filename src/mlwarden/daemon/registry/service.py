"""The model registry: versions on MLflow 3 with semantic versions, a lifecycle and gates.

MLflow holds the models, runs and artifacts; every version is an MLflow model version
carrying ``mlwarden.*`` tags (status, semantic version, lineage), its params and
metrics are on its run, and the aliases ``champion`` (the production version) and
``challenger`` (a rollout's candidate) mirror the lifecycle. The registry's own tables
hold the lifecycle, so it survives restarts and answers fast; at start the MLflow
mirror (aliases and status tags) is reconciled with them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ...errors import Conflict, InvalidInput, NotFound
from ...types import Event, Severity
from ..core.context import Context
from ..core.service import Service
from ..core.store import upsert
from . import mlflow as mlf
from . import promotion
from .cleanup import CleanupReport, cleanup
from .gates import GateReport, evaluate_gates
from .input import check_model_name, clean_registration
from .locks import ModelLocks
from .reads import (
    ModelSummary,
    fetch_aliases,
    fetch_history,
    fetch_version,
    fetch_versions,
    registered_models,
    summarize,
)
from .records import (
    GateCheckRecord,
    GateReportRecord,
    RollbackPlan,
    TransitionRecord,
    VersionFields,
    VersionRecord,
)
from .registration import register_version
from .status import Status, check_transition, parse_status
from .tables import (
    REGISTRY_SCHEMA,
    aliases_table,
    log_transition,
    versions_table,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["CHALLENGER", "CHAMPION", "ModelSummary", "RegistryService"]

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")


class RegistryService(Service):
    """Model versions: register, look up, move through the lifecycle, mirror to MLflow."""

    name = "registry"
    schema = REGISTRY_SCHEMA

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        #: One writer per model, across the daemons sharing the store (locks.py).
        self.locks = ModelLocks(context.store)
        #: Models whose MLflow mirror failed last time (repaired at the next change or start).
        self.mirror_failing: set[str] = set()

    async def start(self) -> None:
        for model in await self.model_names():
            for record in await self.versions(model):
                self.context.metrics.model_info.labels(
                    model, record["version"], record["status"]
                ).set(1)
            try:
                await self._mirror(model)
            except Exception as exc:
                self._mirror_failed(model, exc)

    async def health(self) -> dict[str, Any]:
        status = "degraded" if self.mirror_failing else "ok"
        out: dict[str, Any] = {"status": status, "models": len(await self.model_names())}
        if self.mirror_failing:
            out["mlflow_mirror_failing"] = sorted(self.mirror_failing)
        return out

    def exclusive(self, model: str) -> AbstractAsyncContextManager[None]:
        """Hold ``model``'s lock, cluster-wide (re-entrant within a task; locks.py)."""
        return self.locks.hold(model)

    @property
    def client(self) -> MlflowClient:
        return self.context.tracking.client

    # -- reads ---------------------------------------------------------------------

    async def model_names(self) -> list[str]:
        """Every model with a registered version or a ``[[models]]`` entry."""
        names = await registered_models(self.context.store)
        names.update(m.name for m in self.context.config.models)
        return sorted(names)

    async def get(self, model: str, version: str) -> VersionRecord:
        """The record of one version; NotFound names the model and version."""
        return await fetch_version(self.context.store, model, version)

    async def versions(self, model: str) -> list[VersionRecord]:
        """Every version of ``model``, oldest semantic version first."""
        return await fetch_versions(self.context.store, model)

    async def production(self, model: str) -> VersionRecord | None:
        """The version in ``production``, or None."""
        return next(
            (r for r in await self.versions(model) if r["status"] == Status.PRODUCTION), None
        )

    async def history(self, model: str, version: str | None = None) -> list[TransitionRecord]:
        """Status transitions of ``model`` (of one version when given), oldest first."""
        return await fetch_history(self.context.store, model, version)

    async def model(self, model: str) -> ModelSummary:
        """A model's summary: config, production version, latest version, aliases."""
        records = await self.versions(model)
        config = self.context.config.model(model)
        if not records and config is None:
            raise NotFound(f"model {model!r} is neither configured nor registered")
        async with self.context.store.connect() as conn:
            aliases = await fetch_aliases(conn, model)
        return summarize(model, records, aliases, config, await self.rollback_target(model))

    async def rollback_target(self, model: str) -> str | None:
        """The previous production version: the latest to leave production, still deprecated."""
        current = await self.production(model)
        for entry in reversed(await self.history(model)):
            if entry["from_status"] != Status.PRODUCTION:
                continue
            if current and entry["version"] == current["version"]:
                continue
            try:
                record = await self.get(model, entry["version"])
            except NotFound:
                continue
            if record["status"] == Status.DEPRECATED:
                return record["version"]
        return None

    # -- registration ----------------------------------------------------------------

    async def register(
        self,
        model: str,
        *,
        model_uri: str | None = None,
        version: str | None = None,
        metrics: dict[str, float] | None = None,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
        parent: str | None = None,
        lineage: Mapping[str, object] | None = None,
        author: str | None = None,
        run_id: str | None = None,
        artifact_path: str | None = None,
        bump: str | None = None,
        data_window: Mapping[str, object] | None = None,
        description: str | None = None,
        status: str = Status.VALIDATION.value,
    ) -> VersionRecord:
        """Register ``model_uri`` (or a run's model) as a new version in ``validation``
        (or ``training``, for a job that is still running)."""
        body = {
            "model_uri": model_uri, "version": version, "metrics": metrics, "params": params,
            "tags": tags, "parent": parent, "lineage": lineage, "author": author,
            "run_id": run_id, "artifact_path": artifact_path, "bump": bump,
            "data_window": data_window, "description": description,
        }  # fmt: skip
        return await self.register_body(
            model, {k: v for k, v in body.items() if v is not None}, status=status
        )

    async def register_body(
        self, model: str, body: Mapping[str, Any], *, status: str = Status.VALIDATION.value
    ) -> VersionRecord:
        """Register from a request body (the fields of ``POST .../versions``)."""
        check_model_name(model)
        initial = parse_status(status)
        if initial not in (Status.TRAINING, Status.VALIDATION):
            raise InvalidInput(f"a new version starts in training or validation, not {status}")
        given = clean_registration(body)
        # What was there before waiting for the lock: a version that appears meanwhile
        # may be this very registration, made by another daemon at the same time.
        before = {r["version"] for r in await self.versions(model)}
        async with self.locks.hold(model):
            existing = await self.versions(model)
            record = await register_version(
                self.context,
                self.client,
                model,
                given,
                existing,
                functools.partial(self.gate_report, model),
                initial,
                [r for r in existing if r["version"] not in before],
            )
        return await self.get(model, record["version"])

    async def settle_training(
        self, model: str, job_id: str, *, succeeded: bool, reason: str
    ) -> list[str]:
        """Move the versions job ``job_id`` registered that are still ``training`` on:
        to ``validation`` when the job succeeded, to ``failed`` otherwise. Returns them."""
        moved = []
        target = Status.VALIDATION if succeeded else Status.FAILED
        for record in await self.versions(model):
            if record["status"] == Status.TRAINING and (
                record["lineage"].get("training_job") == job_id
            ):
                await self.transition(
                    model, record["version"], target.value, actor="mlwarden", reason=reason
                )
                moved.append(record["version"])
        return moved

    def gate_report(
        self, model: str, record: VersionFields, production: VersionFields | None
    ) -> GateReport:
        """``record`` held to the model's gates against ``production`` (nothing stored)."""
        config = self.context.config.model(model)
        gates = dict(config.gates) if config else {}
        return evaluate_gates(gates, record, production, now=self.context.clock())

    async def evaluate(self, model: str, version: str) -> GateReportRecord:
        """Re-run the gates on a version against today's production; store the report."""
        record = await self.get(model, version)
        production = await self.production(model)
        if production and production["version"] == version:
            production = None
        report = self.gate_report(model, record, production)
        async with self.context.store.begin() as conn:
            await conn.execute(
                versions_table.update()
                .where(versions_table.c.model == model, versions_table.c.version == version)
                .values(gate_report=json.dumps(report.to_dict(), sort_keys=True))
            )
        return report.to_dict()

    # -- lifecycle -------------------------------------------------------------------

    async def transition(
        self, model: str, version: str, status: str, *, actor: str, reason: str = ""
    ) -> VersionRecord:
        """Move a version to ``status``; Conflict (409) when the lifecycle forbids it.

        Leaving ``validation`` for ``staging`` re-runs the gates and needs them to pass.
        Entering ``production`` deprecates the version that held it. Each change is an
        event, an audit entry, and mirrored to MLflow (status tag, ``champion`` alias).
        """
        target = parse_status(status)
        async with self.locks.hold(model):
            return await self._transition(model, version, target, actor=actor, reason=reason)

    async def _transition(
        self, model: str, version: str, target: Status, *, actor: str, reason: str
    ) -> VersionRecord:
        record = await self.get(model, version)
        current = Status(record["status"])
        check_transition(model, version, current, target)
        if current == Status.VALIDATION and target == Status.STAGING:
            report = await self.evaluate(model, version)
            if not report["passed"]:
                failed = [c for c in report["checks"] if not c["passed"]]
                error = Conflict(
                    f"model {model!r} version {version} failed its validation gates: "
                    + "; ".join(_describe(c) for c in failed)
                )
                error.code = "gates_failed"
                raise error
        changes = [(record, current, target, reason)]
        if target == Status.PRODUCTION:
            previous = await self.production(model)
            if previous is not None:
                changes.insert(
                    0,
                    (previous, Status.PRODUCTION, Status.DEPRECATED, f"replaced by {version}"),
                )
        now = self.context.clock()
        async with self.context.store.begin() as conn:
            for rec, old, new, why in changes:
                await conn.execute(
                    versions_table.update()
                    .where(
                        versions_table.c.model == model,
                        versions_table.c.version == rec["version"],
                    )
                    .values(status=new.value, status_changed_at=now)
                )
                await log_transition(conn, model, rec["version"], old, new, actor, why, now)
            if target == Status.PRODUCTION:
                await _put_alias(conn, model, CHAMPION, version)
                await conn.execute(
                    aliases_table.delete().where(
                        aliases_table.c.model == model,
                        aliases_table.c.alias == CHALLENGER,
                        aliases_table.c.version == version,
                    )
                )
            elif current == Status.PRODUCTION:
                await conn.execute(
                    aliases_table.delete().where(
                        aliases_table.c.model == model, aliases_table.c.alias == CHAMPION
                    )
                )
        for rec, old, new, why in changes:
            self.context.metrics.model_info.remove(model, rec["version"], old.value)
            self.context.metrics.model_info.labels(model, rec["version"], new.value).set(1)
            await self.context.audit.record(
                actor=actor,
                action="version status change",
                target=f"model={model},version={rec['version']}",
                outcome="ok",
                detail={"from": old.value, "to": new.value, "reason": why},
            )
        try:
            await self._mirror(model)
        except Exception as exc:
            self._mirror_failed(model, exc)
        for rec, old, new, why in changes:
            await self.context.emit(
                Event(
                    kind="version_status_changed",
                    model=model,
                    version=rec["version"],
                    severity=Severity.INFO,
                    message=f"{model} {rec['version']}: {old.value} -> {new.value}",
                    data={
                        "version": rec["version"],
                        "from": old.value,
                        "to": new.value,
                        "reason": why,
                        "actor": actor,
                    },
                )
            )
        return await self.get(model, version)

    async def rollback_plan(
        self, model: str, version: str | None = None, *, seen: str | None
    ) -> RollbackPlan:
        """What rolling production back would do, checked (registry/promotion.py)."""
        return await promotion.rollback_plan(self, model, version, seen=seen)

    async def cleanup(
        self,
        *,
        older_than_days: float = 30.0,
        dry_run: bool = False,
        model: str | None = None,
        actor: str = "mlwarden",
    ) -> CleanupReport:
        """Remove old deprecated/archived/failed versions (registry/cleanup.py)."""
        return await cleanup(
            self.context, self, older_than_days=older_than_days, dry_run=dry_run, model=model,
            actor=actor,
        )  # fmt: skip

    async def set_alias(self, model: str, alias: str, version: str | None) -> None:
        """Point an alias at a version (or remove it with ``None``), here and in MLflow."""
        if not _ALIAS.match(alias):
            raise InvalidInput(f"alias: expected letters, digits, '_' or '-', got {alias!r}")
        async with self.locks.hold(model):
            async with self.context.store.begin() as conn:
                if version is None:
                    await conn.execute(
                        aliases_table.delete().where(
                            aliases_table.c.model == model, aliases_table.c.alias == alias
                        )
                    )
                else:
                    await self.get(model, version)
                    await _put_alias(conn, model, alias, version)
            try:
                await self._mirror(model)
            except Exception as exc:
                self._mirror_failed(model, exc)

    async def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        """Set a tag on the version's MLflow model version (NotFound for an unknown one)."""
        record = await self.get(model, version)
        await asyncio.to_thread(
            self.client.set_model_version_tag, model, str(record["mlflow_version"]), key, value
        )

    # -- the MLflow mirror -------------------------------------------------------------

    async def _mirror(self, model: str) -> None:
        """Make MLflow's aliases and status tags of ``model`` match the registry's state."""
        records = await self.versions(model)
        if not records:
            return
        async with self.context.store.connect() as conn:
            wanted = await fetch_aliases(conn, model)
        await asyncio.to_thread(mlf.mirror_model, self.client, model, records, wanted)
        self.mirror_failing.discard(model)

    def _mirror_failed(self, model: str, exc: Exception) -> None:
        self.mirror_failing.add(model)
        logger.error("could not mirror model %s to MLflow: %s", model, exc, exc_info=exc)
        self.context.record_error(f"registry mirror {model}", repr(exc))


async def _put_alias(conn: AsyncConnection, model: str, alias: str, version: str) -> None:
    # One statement: atomic when two daemons move the same alias at once.
    await conn.execute(
        upsert(conn.dialect, aliases_table), {"model": model, "alias": alias, "version": version}
    )


def _describe(check: GateCheckRecord) -> str:
    name = check["name"] if not check.get("metric") else f"{check['name']}({check['metric']})"
    text = f"{name}: measured {check['measured']!r}, threshold {check['threshold']!r}"
    return text + (f" ({check['detail']})" if check.get("detail") else "")
