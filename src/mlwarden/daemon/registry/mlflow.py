"""The registry's MLflow side: resolving model URIs, runs, versions, tags, aliases.

Every function here is blocking (it talks to the tracking store); the registry calls
them through ``asyncio.to_thread``. MLflow 3 conventions: no stages, a status tag on
every version, aliases ``champion`` (production) and ``challenger`` (rollout candidate).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import InvalidInput
from .records import VersionFields, VersionRecord

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "TAG_PREFIX",
    "ModelSource",
    "aliases",
    "create_version",
    "delete_artifacts",
    "delete_version",
    "mirror_model",
    "record_on_run",
    "resolve_source",
    "set_alias",
    "set_version_tags",
    "status_tags",
]

logger = logging.getLogger(__name__)

#: Prefix of the tags the registry writes on MLflow model versions.
TAG_PREFIX = "mlwarden."


@dataclass
class ModelSource:
    """Where a model to register lives, as MLflow knows it."""

    source: str
    artifact_uri: str
    run_id: str | None = None
    model_id: str | None = None
    framework: str | None = None
    inputs: list[str] | None = None
    run_params: dict[str, str] = field(default_factory=dict)
    run_metrics: dict[str, float] = field(default_factory=dict)


def _mlflow_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def resolve_source(client: MlflowClient, model_uri: str) -> ModelSource:
    """Find the model behind ``model_uri``; InvalidInput says what was not found.

    Accepted: ``runs:/<run_id>/<path>``, ``models:/<logged model id>``,
    ``models:/<name>/<version>``, ``models:/<name>@<alias>`` and a bare ``m-…`` id.
    """
    uri = model_uri.strip()
    try:
        if uri.startswith("m-"):
            found = _from_logged_model(client, uri)
        elif uri.startswith("models:/"):
            found = _from_models_uri(client, uri)
        elif uri.startswith("runs:/"):
            found = _from_runs_uri(client, uri)
        else:
            raise InvalidInput(
                f"model_uri: expected 'runs:/<run_id>/<path>', 'models:/…' or a logged model "
                f"id 'm-…', got {model_uri!r}"
            )
    except _mlflow_errors() as exc:
        raise InvalidInput(f"model_uri {model_uri!r}: {_first_line(exc)}") from None
    _read_mlmodel(found, model_uri)
    if found.run_id:
        run = client.get_run(found.run_id)
        found.run_params = dict(run.data.params)
        found.run_metrics = dict(run.data.metrics)
    return found


def _from_logged_model(client: MlflowClient, model_id: str) -> ModelSource:
    logged = client.get_logged_model(model_id)
    return ModelSource(
        source=f"models:/{model_id}",
        artifact_uri=logged.artifact_location,
        run_id=logged.source_run_id,
        model_id=model_id,
    )


def _from_models_uri(client: MlflowClient, uri: str) -> ModelSource:
    from mlflow.store.artifact.utils.models import _parse_model_uri

    try:
        parsed = _parse_model_uri(uri)
    except _mlflow_errors():
        raise InvalidInput(f"model_uri: {uri!r} is not a valid models:/ URI") from None
    if parsed.model_id:
        return _from_logged_model(client, parsed.model_id)
    name = parsed.name or ""
    if parsed.alias:
        version = client.get_model_version_by_alias(name, parsed.alias)
    elif parsed.version:
        version = client.get_model_version(name, parsed.version)
    else:
        raise InvalidInput(f"model_uri: {uri!r} names no version or alias (stages are not used)")
    source = version.source or ""
    if version.model_id:
        found = _from_logged_model(client, version.model_id)
    elif source.startswith("models:/m-"):
        found = _from_logged_model(client, source.removeprefix("models:/"))
    else:
        found = ModelSource(
            source=source,
            artifact_uri=client.get_model_version_download_uri(version.name, version.version),
        )
    found.run_id = found.run_id or version.run_id
    return found


def _from_runs_uri(client: MlflowClient, uri: str) -> ModelSource:
    run_id, _, path = uri.removeprefix("runs:/").partition("/")
    path = path.strip("/")
    if not run_id or not path:
        raise InvalidInput(f"model_uri: expected 'runs:/<run_id>/<artifact path>', got {uri!r}")
    run = client.get_run(run_id)
    # MLflow 3 logs models as logged models (models:/m-...) linked to the run; a model
    # saved among the run's own artifacts (MLflow 2 style) is the fallback.
    logged = [
        m
        for m in client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"name = '{path}'"
        )
        if m.source_run_id == run_id
    ]
    if logged:
        newest = max(logged, key=lambda m: m.creation_timestamp or 0)
        found = _from_logged_model(client, newest.model_id)
        found.run_id = run_id
        return found
    files = {a.path for a in client.list_artifacts(run_id, path)}
    if f"{path}/MLmodel" not in files:
        raise InvalidInput(f"model_uri {uri!r}: run {run_id} has no model logged at {path!r}")
    artifact_uri = f"{run.info.artifact_uri.rstrip('/')}/{path}"
    return ModelSource(source=artifact_uri, artifact_uri=artifact_uri, run_id=run_id)


def _read_mlmodel(found: ModelSource, model_uri: str) -> None:
    import tempfile

    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(
                artifact_uri=f"{found.artifact_uri.rstrip('/')}/MLmodel", dst_path=tmp
            )
            mlmodel = Model.load(local)
    except Exception as exc:
        raise InvalidInput(
            f"model_uri {model_uri!r}: no readable MLmodel at {found.artifact_uri} "
            f"({_first_line(exc)})"
        ) from None
    flavors = [f for f in mlmodel.flavors if f != "python_function"]
    found.framework = flavors[0] if flavors else "python_function"
    if mlmodel.signature is not None and mlmodel.signature.inputs is not None:
        names = mlmodel.signature.inputs.input_names()
        found.inputs = [str(n) for n in names] if names else None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def record_on_run(
    client: MlflowClient,
    run_id: str | None,
    experiment_id: str,
    model: str,
    params: dict[str, str],
    metrics: dict[str, float],
    existing_params: dict[str, str],
) -> str:
    """Put the registration's params and metrics on its run (a new run when there is none).

    MLflow params are immutable: a param the run already has keeps its value (the
    registry's record shows what was given); new ones are added.
    """
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    if run_id is None:
        run = client.create_run(
            experiment_id,
            run_name=f"register {model}",
            tags={"mlwarden.model": model, "mlwarden.kind": "registration"},
        )
        run_id = run.info.run_id
        created = True
    else:
        created = False
    new_params = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing_params]
    batch_metrics = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for start in range(0, max(len(new_params), len(batch_metrics)), 100):
        client.log_batch(
            run_id,
            metrics=batch_metrics[start : start + 100],
            params=new_params[start : start + 100],
            tags=[RunTag("mlwarden.model", model)] if start == 0 else [],
        )
    if created:
        client.set_terminated(run_id)
    return run_id


def create_version(
    client: MlflowClient,
    model: str,
    found: ModelSource,
    run_id: str | None,
    tags: dict[str, str],
    description: str,
    version: str,
) -> int:
    """Create the MLflow model version of semantic ``version`` (and the registered model
    when new); its MLflow version number.

    Done once even when asked twice: an MLflow version of the same source already
    tagged ``mlwarden.version = version`` (left by a daemon stopped between this and
    its registry row) is taken over, and a second one created by the MLflow client's
    own retry of a request whose answer was lost is deleted again.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    earlier = _tagged(client, model, found.source, version)
    if earlier:
        logger.warning(
            "model %s version %s: taking over MLflow version %d left by an interrupted "
            "registration", model, version, earlier[0],
        )  # fmt: skip
        set_version_tags(client, model, earlier[0], tags)
        return earlier[0]
    created = client.create_model_version(
        model,
        source=found.source,
        run_id=run_id,
        tags=tags,
        description=description or None,
        model_id=found.model_id,
    )
    number = int(created.version)
    for extra in _tagged(client, model, found.source, version):
        if extra != number:
            logger.warning("model %s: deleting duplicate MLflow version %d", model, extra)
            delete_version(client, model, extra)
    return number


def _tagged(client: MlflowClient, model: str, source: str, version: str) -> list[int]:
    """MLflow versions of ``model`` from ``source`` tagged as semantic ``version``."""
    return sorted(
        int(v.version)
        for v in client.search_model_versions(f"name = '{_quote(model)}'")
        if v.source == source and (v.tags or {}).get("mlwarden.version") == version
    )


def set_version_tags(
    client: MlflowClient, model: str, mlflow_version: int, tags: dict[str, str]
) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(model, str(mlflow_version), key, value)


def set_alias(client: MlflowClient, model: str, alias: str, mlflow_version: int | None) -> None:
    """Point ``alias`` at a version, or remove it (``None``)."""
    from mlflow.exceptions import MlflowException

    if mlflow_version is None:
        try:
            client.delete_registered_model_alias(model, alias)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        return
    client.set_registered_model_alias(model, alias, str(mlflow_version))


def aliases(client: MlflowClient, model: str) -> dict[str, int]:
    """The aliases of a registered model ({} when it is not registered in MLflow)."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(model)
    except MlflowException:
        return {}
    return {alias: int(v) for alias, v in (registered.aliases or {}).items()}


def delete_version(client: MlflowClient, model: str, mlflow_version: int) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.delete_model_version(model, str(mlflow_version))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def delete_artifacts(client: MlflowClient, artifact_uri: str, model_id: str | None) -> None:
    """Remove a model's artifacts (and its logged-model entry, when it has one)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(artifact_uri).delete_artifacts()
    if model_id:
        try:
            client.delete_logged_model(model_id)
        except MlflowException as exc:
            logger.warning("could not delete logged model %s: %s", model_id, exc)


def status_tags(record: VersionFields) -> dict[str, str]:
    """The ``mlwarden.*`` tags every MLflow model version carries."""
    lineage = record.get("lineage") or {}
    report = record.get("gate_report")
    tags = {
        "mlwarden.status": record["status"],
        "mlwarden.version": record["version"],
        "mlwarden.framework": record.get("framework") or "",
        "mlwarden.author": record.get("author") or "",
        "mlwarden.parent": record.get("parent") or "",
        "mlwarden.gates": "" if not report else ("passed" if report.get("passed") else "failed"),
    }
    for key in ("training_job", "data_reference", "holdout"):
        if lineage.get(key):
            tags[f"mlwarden.{key}"] = str(lineage[key])
    if record.get("data_window"):
        tags["mlwarden.data_window"] = json.dumps(record["data_window"], sort_keys=True)
    return {k: v for k, v in tags.items() if v != ""}


def mirror_model(
    client: MlflowClient,
    model: str,
    records: list[VersionRecord],
    wanted: dict[str, str],
    managed: tuple[str, ...] = ("champion", "challenger"),
) -> None:
    """Make MLflow's status tags and aliases of ``model`` match the registry's records."""
    by_version = {r["version"]: r for r in records}
    # One read, then only the writes that change something (a transition touches one
    # or two versions; the reconcile at start usually none).
    current = {
        int(v.version): dict(v.tags or {})
        for v in client.search_model_versions(f"name = '{_quote(model)}'")
    }
    for record in records:
        have = current.get(record["mlflow_version"], {})
        wanted_tags = status_tags(record)
        changed = {k: v for k, v in wanted_tags.items() if have.get(k) != v}
        if changed:
            set_version_tags(client, model, record["mlflow_version"], changed)
    present = aliases(client, model)
    for alias, version in wanted.items():
        number = by_version[version]["mlflow_version"] if version in by_version else None
        if present.get(alias) != number:
            set_alias(client, model, alias, number)
    for alias in set(present) - set(wanted):
        if alias in managed:
            set_alias(client, model, alias, None)


def _quote(name: str) -> str:
    """A model name inside a single-quoted MLflow filter string."""
    return name.replace("'", "\\'")
