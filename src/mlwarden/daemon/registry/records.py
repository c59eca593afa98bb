"""The registry's records: what it stores of a version and hands to other services.

Typed dictionaries, so that a record is the JSON the API answers and the dict the
tests compare, typed for mypy. This module imports nothing else of the registry:
``tables.py``, ``gates.py``, ``promotion.py`` and ``interfaces.py`` all build on it.
"""

from __future__ import annotations

from typing import TypedDict

__all__ = [
    "DataWindow",
    "DirectPromotion",
    "DirectRollback",
    "GateCheckRecord",
    "GateReportRecord",
    "Measure",
    "RollbackPlan",
    "TransitionRecord",
    "VersionFields",
    "VersionRecord",
]

#: What a check measured or was held to: a metric's value, a tag, a holdout name.
Measure = float | str | None


class GateCheckRecord(TypedDict):
    """One check of a version's ``gate_report``, as stored and shown."""

    name: str
    metric: str | None
    measured: Measure
    threshold: Measure
    passed: bool
    detail: str


class GateReportRecord(TypedDict):
    """A version's ``gate_report``, as stored and shown."""

    passed: bool
    evaluated_at: float
    production_version: str | None
    checks: list[GateCheckRecord]


class DataWindow(TypedDict, total=False):
    """The data a version was trained on: ISO dates or Unix times."""

    start: str | float | None
    end: str | float | None


class VersionFields(TypedDict):
    """What registering decides of a version: all of its record but MLflow's version
    number and the aliases pointing at it."""

    model: str
    version: str
    status: str
    model_uri: str
    source: str
    artifact_uri: str
    run_id: str | None
    model_id: str | None
    framework: str | None
    #: The model's input columns (its MLflow signature), when it has one.
    inputs: list[str] | None
    metrics: dict[str, float]
    #: As MLflow keeps params: text (structured values as JSON text).
    params: dict[str, str]
    tags: dict[str, str]
    lineage: dict[str, str]
    data_window: DataWindow | None
    parent: str | None
    author: str
    description: str
    gate_report: GateReportRecord | None
    created_at: float
    status_changed_at: float


class VersionRecord(VersionFields):
    """A model version: a ``registry_versions`` row (JSON columns decoded) with the
    aliases pointing at it; what ``GET /api/models/{name}/versions/{version}`` answers."""

    mlflow_version: int
    aliases: list[str]


class TransitionRecord(TypedDict):
    """One status change of a version (a ``registry_transitions`` row)."""

    id: int
    model: str
    version: str
    from_status: str | None
    #: A status, or ``removed`` for a version the cleanup removed.
    to_status: str
    actor: str
    reason: str
    ts: float


class DirectPromotion(TypedDict):
    """What a direct promotion did (``POST /api/models/{name}/promote`` without a rollout)."""

    model: str
    version: str
    strategy: str
    #: The strategy the caller asked for (``direct`` or none).
    requested_strategy: str | None
    previous_version: str | None
    record: VersionRecord


class RollbackPlan(TypedDict):
    """What a rollback of production would do, checked but not done (``rollback_plan``)."""

    #: The deprecated version put back into production.
    version: str
    #: The production version it replaces (None: nothing is in production).
    previous_version: str | None


class DirectRollback(TypedDict):
    """What a rollback in the registry did (no rollout was active)."""

    model: str
    version: str
    previous_version: str | None
    record: VersionRecord
