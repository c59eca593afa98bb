"""The evidence a rollout step is decided on: load check, gateway errors, analysis.

Used by :class:`~mlwarden.daemon.rollouts.controller.RolloutController`. The pre-flight
check loads the candidate in the gateway before it gets traffic; the fast path fails a
candidate whose gateway calls error too often within a step; the analysis compares the
candidate against the baseline from the gateway serving stats plus the ingest path's
labelled outcomes, or, for a shadow candidate, its mirrored answers joined to the same
requests' labels.
"""

from __future__ import annotations

import numpy as np

from ...types import Analysis, Check, OutcomeSource, RolloutView
from ..core.context import Context
from .analysis import VersionSample, compare, sample_from_outcomes
from .gateway import Gateway
from .records import Rollout
from .strategy import DeploymentStrategy

__all__ = ["analyze", "gateway_errors", "preflight"]

#: A candidate failing more than ``max_error_rate`` of its gateway calls in a step (over
#: at least this many calls, or ``min_samples`` when smaller) is rolled back at once.
_FAST_FAIL_MIN_CALLS = 20


async def preflight(context: Context, gateway: Gateway, rollout: Rollout) -> Analysis | None:
    """With the gateway on, the candidate must load before it gets any traffic."""
    if not context.config.deployment.gateway:
        return None
    now = context.clock()
    try:
        await gateway.load(rollout["model"], rollout["candidate"])
    except Exception as exc:
        return Analysis(
            "fail",
            (Check("model_load", 0.0, None, 1.0, False, "the candidate's pyfunc model loads"),),
            since=now,
            until=now,
            reason=f"candidate failed to load: {type(exc).__name__}: {exc}",
        )
    return None


async def gateway_errors(
    context: Context, gateway: Gateway, rollout: Rollout, strategy: DeploymentStrategy
) -> Analysis | None:
    """The fast path: gateway errors of the candidate over the threshold in this step
    (every daemon's gateway calls on a shared store)."""
    now = context.clock()
    served = await gateway.served(
        rollout["model"], rollout["candidate"], rollout["step_started_at"], now
    )
    calls, errors = served.requests, served.errors
    limit = strategy.thresholds.max_error_rate
    if calls < min(_FAST_FAIL_MIN_CALLS, strategy.thresholds.min_samples):
        return None
    rate = errors / calls
    if rate <= limit:
        return None
    return Analysis(
        "fail",
        (
            Check(
                "gateway_error_rate",
                rate,
                None,
                limit,
                False,
                "candidate's gateway error rate <= max_error_rate",
            ),
        ),
        samples={"candidate_requests": calls, "candidate_errors": errors},
        since=rollout["step_started_at"],
        until=now,
        reason=f"gateway errors over the threshold: {errors} of {calls} calls failed "
        f"({rate:.1%} > {limit:.1%})",
    )


async def analyze(
    context: Context,
    outcomes: OutcomeSource,
    gateway: Gateway,
    rollout: Rollout,
    strategy: DeploymentStrategy,
    view: RolloutView,
) -> Analysis:
    """Compare the candidate with the baseline over the strategy's windows."""
    (cs, cu), (bs, bu) = strategy.windows(view)
    model, baseline_version = rollout["model"], rollout["baseline"]
    if baseline_version is None:  # a first version is promoted without an analysis
        raise ValueError(f"rollout {rollout['id']} of {model!r} has no baseline to compare with")
    baseline = await _sample(outcomes, gateway, model, baseline_version, bs, bu)
    if rollout["mirror"]:
        candidate = await _shadow_sample(
            outcomes, gateway, model, rollout["candidate"], baseline_version, cs, cu
        )
    else:
        candidate = await _sample(outcomes, gateway, model, rollout["candidate"], cs, cu)
    config = context.config.model(model)
    analysis = compare(
        candidate,
        baseline,
        strategy.thresholds,
        task=config.task if config else "regression",
        since=cs,
        until=cu,
    )
    if bs != cs or bu != cu:
        analysis.samples["baseline_since"] = bs
        analysis.samples["baseline_until"] = bu
    return analysis


async def _sample(
    outcomes: OutcomeSource,
    gateway: Gateway,
    model: str,
    version: str,
    since: float,
    until: float,
) -> VersionSample:
    sample = sample_from_outcomes(
        await outcomes.outcomes(model, version=version, since=since, until=until)
    )
    served = await gateway.served(model, version, since, until)
    if served.requests:  # the gateways saw every call, labelled or not
        sample.requests, sample.errors = served.requests, served.errors
        sample.latency, sample.latency_counts = served.latency, served.counts
    return sample


async def _shadow_sample(
    outcomes: OutcomeSource,
    gateway: Gateway,
    model: str,
    version: str,
    baseline_version: str,
    since: float,
    until: float,
) -> VersionSample:
    """The shadow candidate's mirrored answers joined to the labels of the same requests."""
    sample = VersionSample()
    baseline = await outcomes.outcomes(model, version=baseline_version, since=since, until=until)
    mirrored = await gateway.shadow_sample(model, version, baseline.id, since, until)
    pairs = [
        (mirrored[str(i)][0], label)
        for i, label in zip(baseline.id.tolist(), baseline.label.tolist(), strict=True)
        if str(i) in mirrored and not mirrored[str(i)][2]
    ]
    sample.prediction = np.array([p for p, _ in pairs])
    sample.label = np.array([y for _, y in pairs])
    served = await gateway.served(model, version, since, until)
    sample.requests, sample.errors = served.requests, served.errors
    sample.latency, sample.latency_counts = served.latency, served.counts
    return sample
