"""The statistics of one A/B test: its analysis settings and each evaluation's verdict.

Used by :class:`~mlwarden.daemon.experiments.service.ExperimentService`: the settings are fixed
when the experiment starts (its arguments over ``[ab_testing]``) and stored with it; an
evaluation reads both arms' joined outcomes from ingest and runs
``mlwarden.stats.analyse`` on them in a thread.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ...errors import InvalidInput
from ...stats import METRICS, AnalysisSettings, Evaluation, SequentialState, analyse
from ...types import OutcomeSource
from ..core.config import Config
from ..core.context import Clock
from .records import ExperimentRecord, arm_from_outcomes, default_metric

__all__ = ["analysis_settings", "evaluate_arms"]


def analysis_settings(
    config: Config,
    model: str,
    weight_b: float,
    duration: float,
    metric: str | None,
    test: str | None,
    sequential: bool | None,
) -> AnalysisSettings:
    """The analysis settings of a new experiment: its arguments over ``[ab_testing]``.

    InvalidInput (400) for a split outside (0, 1), a negative duration, an unknown
    metric or test, or a z-test on a metric that is not 0/1.
    """
    ab = config.ab_testing
    if not 0 < weight_b < 1:
        raise InvalidInput(f"traffic_split must be in (0, 1) (the share of B), got {weight_b}")
    # 0 is a duration: with ``ab_testing.min_duration_hours = 0`` (the default duration)
    # a fixed-horizon experiment decides at its first evaluation.
    if not (math.isfinite(duration) and duration >= 0):
        raise InvalidInput(f"duration_hours must be a number >= 0, got {duration}")
    chosen = metric or ab.metric or default_metric(config.model(model))
    if chosen not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, got {chosen!r}")
    chosen_test = test or ab.test
    if chosen_test not in ("auto", "welch", "ztest", "mann_whitney"):
        raise InvalidInput(
            f"test must be one of auto, welch, ztest, mann_whitney, got {chosen_test!r}"
        )
    if chosen_test == "ztest" and chosen != "accuracy":
        raise InvalidInput(f"test 'ztest' needs a 0/1 metric (accuracy), not {chosen!r}")
    return AnalysisSettings(
        metric=chosen,
        test=chosen_test,
        weight_b=float(weight_b),
        confidence_level=ab.confidence_level,
        significance_threshold=ab.significance_threshold,
        min_samples=ab.min_samples,
        min_duration_hours=ab.min_duration_hours,
        duration_hours=duration,
        sequential=ab.sequential if sequential is None else bool(sequential),
        tuning_samples=ab.sequential_tuning_samples,
        srm_threshold=ab.srm_threshold,
        relative_mde=ab.minimum_detectable_effect,
        target_power=ab.power,
        guardrails=tuple(ab.guardrails),
    )


async def evaluate_arms(
    outcomes: OutcomeSource, record: ExperimentRecord, clock: Clock
) -> tuple[Evaluation, dict[str, Any]]:
    """Judge arm B against arm A on their outcomes since the start (off the loop).

    Returns the evaluation and its dict form with the winning arm's version.
    """
    model, since = record["model"], record["started_at"]
    out_a = await outcomes.outcomes(model, version=record["version_a"], since=since)
    out_b = await outcomes.outcomes(model, version=record["version_b"], since=since)
    settings = AnalysisSettings(**{
        **record["settings"], "guardrails": tuple(record["settings"]["guardrails"]),
    })  # fmt: skip
    states = {k: SequentialState.from_dict(v) for k, v in record["_state"].items()}
    elapsed = (clock() - since) / 3600.0

    def run() -> Evaluation:
        return analyse(
            arm_from_outcomes(settings.metric, out_a),
            arm_from_outcomes(settings.metric, out_b),
            settings,
            elapsed_hours=elapsed,
            states=states,
        )

    evaluation = await asyncio.to_thread(run)
    data = evaluation.to_dict()
    arm_version = {"A": record["version_a"], "B": record["version_b"]}
    data["winner_arm"] = evaluation.winner
    data["winner"] = arm_version.get(evaluation.winner or "")
    data["versions"] = arm_version
    data["evaluated_at"] = clock()
    return evaluation, data
