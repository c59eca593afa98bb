from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...errors import Conflict, InvalidInput
from ...types import Event
from ..core.context import Context
from . import mlflow as mlf
from .gates import GateReport
from .input import Registration
from .records import VersionFields, VersionRecord
from .semver import VersionTraits, choose_bump, next_version
from .status import Status
from .tables import log_transition, row_values, versions_table

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["choose_version", "register_version"]

logger = logging.getLogger(__name__)


#: The gate report of a new version against the production version (or None).
Gates = Callable[[VersionFields, VersionFields | None], GateReport]


async def register_version(
    context: Context,
    client: MlflowClient,
    model: str,
    given: Registration,
    existing: list[VersionRecord],
    gates: Gates,
    status: Status = Status.VALIDATION,
    concurrent: list[VersionRecord] | None = None,
) -> VersionRecord:
    """Register a validated registration (see ``registry/input.py``) of a model whose
    versions are ``existing`` in ``status`` (``validation``, or ``training`` while the
    job that made it runs); returns the new version's record as stored.

    Idempotent under races: ``concurrent`` are the versions registered while this
    caller waited for the model's lock. When one of them is this registration (the same
    model URI, or one resolving to the same source; the same version when one is given),
    it is returned and nothing changes, so two daemons asked at once to register one
    run's model both answer with one version. Asked again later, the same model is
    registered again (a new version; an explicit version that exists is a Conflict).
    """
    by_version = {r["version"]: r for r in existing}
    concurrent = concurrent or []
    replayed = _replayed(concurrent, given, None)
    if replayed is not None:
        return replayed
    if given.get("version") in by_version:
        error = Conflict(f"model {model!r} already has version {given.get('version')}")
        error.code = "version_exists"
        raise error
    parent = given.get("parent")
    if parent is not None and parent not in by_version:
        raise InvalidInput(f"parent: model {model!r} has no version {parent!r}")
    found = await asyncio.to_thread(mlf.resolve_source, client, given["model_uri"])
    replayed = _replayed(concurrent, given, found.source)
    if replayed is not None:
        return replayed
    now = context.clock()
    lineage = dict(given["lineage"])
    if parent:
        lineage.setdefault("parent", parent)
    params = {**found.run_params, **given["params"]}
    traits: VersionTraits = {"framework": found.framework, "inputs": found.inputs, "params": params}
    version, version_reason = choose_version(existing, traits, given)
    fields: VersionFields = {
        "model": model,
        "version": version,
        "status": status.value,
        "model_uri": given["model_uri"],
        "source": found.source,
        "artifact_uri": found.artifact_uri,
        "run_id": found.run_id,
        "model_id": found.model_id,
        "framework": found.framework,
        "inputs": found.inputs,
        "metrics": {**found.run_metrics, **given["metrics"]},
        "params": params,
        "tags": given["tags"],
        "lineage": lineage,
        "data_window": given["data_window"],
        "parent": parent,
        "author": given.get("author", ""),
        "description": given["description"],
        "gate_report": None,
        "created_at": now,
        "status_changed_at": now,
    }
    production = next((r for r in existing if r["status"] == Status.PRODUCTION), None)
    report = gates(fields, production)
    fields["gate_report"] = report.to_dict()
    fields["run_id"] = await asyncio.to_thread(
        mlf.record_on_run,
        client,
        found.run_id,
        str(context.tracking.experiment_id),
        model,
        params,
        given["metrics"],  # the run's own metrics are already on it
        found.run_params,
    )
    mlflow_tags = {**fields["tags"], **mlf.status_tags(fields)}
    mlflow_version = await asyncio.to_thread(
        mlf.create_version,
        client,
        model,
        found,
        fields["run_id"],
        mlflow_tags,
        fields["description"],
        version,
    )
    # A new version: no alias points at it yet.
    record: VersionRecord = {**fields, "mlflow_version": mlflow_version, "aliases": []}
    try:
        async with context.store.begin() as conn:
            await conn.execute(versions_table.insert(), row_values(record))
            await log_transition(
                conn, model, record["version"], None, status,
                record["author"] or "mlwarden", version_reason, now,
            )  # fmt: skip
    except Exception:
        # No partial state: the MLflow version goes when the registry row cannot be kept.
        await asyncio.to_thread(mlf.delete_version, client, model, record["mlflow_version"])
        raise
    context.metrics.model_info.labels(model, record["version"], record["status"]).set(1)
    await context.audit.record(
        actor=record["author"] or "mlwarden",
        action="register version",
        target=f"model={model},version={record['version']}",
        outcome="ok",
        detail={"mlflow_version": record["mlflow_version"], "gates_passed": report.passed},
    )
    await context.emit(
        Event(
            kind="version_registered",
            model=model,
            version=record["version"],
            message=f"registered {model} {record['version']} ({version_reason})",
            data={
                "version": record["version"],
                "mlflow_version": record["mlflow_version"],
                "model_uri": record["model_uri"],
                "gates_passed": report.passed,
                "to": status.value,
            },
        )
    )
    return record


def _replayed(
    existing: list[VersionRecord], given: Registration, source: str | None
) -> VersionRecord | None:
    """The version that ``given`` registers again, if any (see ``register_version``)."""
    explicit = given.get("version")
    for record in existing:
        same = record["model_uri"] == given["model_uri"] or record["source"] == source
        if same and explicit in (None, record["version"]):
            logger.info(
                "model %s: %s was registered as %s meanwhile; registration returns it",
                record["model"], given["model_uri"], record["version"],
            )  # fmt: skip
            return record
    return None


def choose_version(
    existing: list[VersionRecord], traits: VersionTraits, given: Registration
) -> tuple[str, str]:
    """The new version's semantic version and why (``traits``: the new version's)."""
    explicit = given.get("version")
    if explicit:
        return explicit, "explicit version"
    if not existing:
        return "1.0.0", "first version"
    by_version = {r["version"]: r for r in existing}
    parent = given.get("parent")
    base = by_version[parent] if parent else existing[-1]
    requested = given.get("bump")
    if requested:
        bump, why = requested, f"{requested} bump requested"
    else:
        bump, why = choose_bump(base, traits)
    new = next_version(by_version, base["version"], bump)
    return str(new), f"{bump} bump from {base['version']}: {why}"
