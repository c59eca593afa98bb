"""The plugin contract: every hook mlwarden calls, typed and documented.

Registration hooks (``mlwarden_drift_methods`` and its siblings) return *classes*; the
core instantiates them with keyword-only options from the configuration and refers to
them by their ``name`` attribute. Event hooks may be ``async def`` (run on the event
loop) or plain functions (run on a worker thread, so blocking work never freezes the
daemon) and may return an awaitable; the core awaits each with a timeout, and an
exception or a timeout is logged with the plugin's name, counted in
``mlwarden_plugin_errors_total`` and never stops the daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .daemon.core.context import Context
    from .types import Event

__all__ = ["hookimpl", "hookspec"]

#: Marker for hook specifications (this module's functions).
hookspec = pluggy.HookspecMarker("mlwarden")
#: Marker for plugin hook implementations: ``@hookimpl``, also ``mlwarden.hookimpl``.
hookimpl = pluggy.HookimplMarker("mlwarden")


@hookspec
def mlwarden_drift_methods() -> list[type]:
    """Return drift method classes to make available by their ``name``.

    Called once when the plugin manager is built. Each class has a unique ``name``, a
    ``kinds`` tuple naming the feature kinds it accepts (``"numeric"``, ``"categorical"``,
    ``"multivariate"``), keyword-only options, ``fit(reference: FeatureData) -> Self``
    and ``score(current: FeatureData) -> DriftScore``. Results of all plugins are
    concatenated; a duplicate ``name`` stops start-up.
    """


@hookspec
def mlwarden_performance_estimators() -> list[type]:
    """Return performance estimator classes (``cbpe``, ``dle``, ...).

    Called once when the plugin manager is built. Each class has a unique ``name``, a
    ``tasks`` tuple (``"classification"``, ``"regression"``), the ``metrics`` it
    estimates, keyword-only options, ``fit(reference: EstimationData) -> Self`` (the
    reference has labels; ValueError naming what is missing otherwise) and
    ``estimate(current: EstimationData) -> dict[str, MetricEstimate]`` (value and
    band per metric, the realized value filled in when ``current`` has labels). The
    monitor runs both in a worker thread with a timeout. Results of all plugins are
    concatenated; a duplicate ``name`` stops start-up.
    """


@hookspec
def mlwarden_deployment_strategies() -> list[type]:
    """Return deployment strategy classes (``blue_green``, ``canary``, ...).

    Called once when the plugin manager is built. A strategy is given the rollout's
    persisted state and the latest analysis and returns the next step: set traffic
    weights, wait, promote, or roll back. Results are concatenated; names are unique.
    """


@hookspec
def mlwarden_triggers() -> list[type]:
    """Return retraining trigger classes (``schedule``, ``drift``, ``performance``, ...).

    Called once when the plugin manager is built. A trigger has
    ``evaluate(context) -> Decision`` and a cooldown, so that a storm of events yields
    one training job. Results are concatenated; names are unique.
    """


@hookspec
def mlwarden_notifiers() -> list[type]:
    """Return notifier classes (``apprise``, ``log``, ...).

    Called once when the plugin manager is built. A notifier has
    ``async send(notification: Notification) -> None`` and raises on failure, so the
    durable outbox retries it. A notifier with several destinations may also offer
    ``targets() -> list[str]`` (stable keys) and ``send(notification, *, target=key)``:
    the outbox then retries each destination on its own, so none receives a message
    twice. ``send_delay(target) -> float`` (optional) says how long the notifier's
    library will hold the next send back; the outbox adds it to the send timeout, and
    a send that overruns is awaited, never retried while it runs. Results are
    concatenated; names are unique.
    """


@hookspec
def mlwarden_trainers() -> list[type]:
    """Return trainer classes (``command``, ``python``, ...).

    Called once when the plugin manager is built. A trainer has
    ``async train(job: TrainingJob) -> TrainingResult``, runs the work in a subprocess
    with the job's timeout and never blocks the event loop. Names are unique.
    """


@hookspec
def mlwarden_traffic_backends() -> list[type]:
    """Return traffic backend classes (``mlflow_alias``, a webhook, an Envoy writer, ...).

    Called once when the plugin manager is built. A backend has
    ``async apply(model: str, weights: dict[str, float]) -> None`` and is called every
    time a model's traffic table changes. A backend whose ``__init__`` takes
    ``registry`` is given the model registry (:class:`mlwarden.types.AliasRegistry`).
    Names are unique.
    """


@hookspec
def mlwarden_startup(warden: Context) -> Awaitable[None] | None:
    """Called once the daemon's services have started, before it reports READY.

    ``warden`` is the running :class:`mlwarden.Warden`, typed as the core context it
    extends (configuration, store, metrics, ``spawn`` for a background task the daemon
    owns, ``emit``); its in-process API (``monitor_model_drift``, ...) is there too.

    May return an awaitable, which is awaited. An exception is logged and counted; it
    does not stop start-up.
    """


@hookspec
def mlwarden_shutdown(warden: Context) -> Awaitable[None] | None:
    """Called when the daemon stops, before its services are stopped (``warden`` as in
    ``mlwarden_startup``).

    May return an awaitable, which is awaited with the shutdown timeout.
    """


@hookspec
def mlwarden_event(event: Event) -> Awaitable[None] | None:
    """Called for every event (drift detected, training failed, rollout promoted, ...).

    Every implementation is called, each isolated from the others: one that raises or
    times out is counted in ``mlwarden_plugin_errors_total`` and the rest still run.
    May return an awaitable, which is awaited. The return value is ignored.
    """


@hookspec
def mlwarden_confirm_promotion(
    model: str, version: str, rollout: dict[str, Any]
) -> Awaitable[bool | None] | bool | None:
    """Asked before a rollout promotes ``version`` of ``model`` (a confirm-promotion gate).

    Return ``False`` (or an awaitable of it) to hold the rollout at its current step,
    ``True`` to allow, or ``None`` to abstain. Promotion goes ahead only when no
    implementation returns ``False``; an implementation that raises counts as ``False``.
    """
