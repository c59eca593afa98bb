"""The deployment-strategy contract: what a strategy sees of a rollout, and its answer.

A strategy is a small, pure object: it never talks to MLflow, the store or the network.
The rollout controller shows it a :class:`RolloutView` (the rollout's persisted state
and the clock) and, when the strategy's interval has elapsed, an :class:`Analysis` of
the candidate against the baseline over the same interval (each :class:`Check` holds
one measured value to one of the :class:`Thresholds`). The strategy answers with a
:class:`Step`: set the candidate's traffic share (optionally mirrored), wait, retry the
step (a failed check within the failure budget), promote, or roll back. Because it is
pure, a strategy is tested without a daemon, and the controller can resume it after a
restart from the persisted view alone.

The built-in strategies share a base class, ``mlwarden.plugins.strategies.Strategy``;
a third-party strategy needs none (see ``mlwarden_deployment_strategies`` in
docs/plugin_hooks.md). :func:`check_option` is the option check with the message
every strategy option error uses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "Action",
    "AliasRegistry",
    "Analysis",
    "Check",
    "RolloutView",
    "Step",
    "Thresholds",
    "Verdict",
    "check_option",
]

Verdict = Literal["pass", "fail", "inconclusive"]
Action = Literal["traffic", "wait", "retry", "promote", "complete", "rollback"]


@dataclass(frozen=True)
class RolloutView:
    """What a strategy sees of a rollout: persisted state plus the current time.

    ``step`` is the index of the step in force (-1 before the first one); ``weight`` is
    the candidate's traffic share now (0..1); ``mirror`` says whether the candidate
    receives a mirrored copy of the traffic; ``failures`` counts failed analyses so far;
    ``memo`` is the strategy's own JSON-serialisable scratch space, persisted with the
    rollout.
    """

    model: str
    candidate: str
    baseline: str | None
    step: int
    step_started_at: float
    now: float
    weight: float = 0.0
    mirror: bool = False
    failures: int = 0
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        """Seconds since the step in force began."""
        return self.now - self.step_started_at


@dataclass(frozen=True)
class Check:
    """One measured value held to one threshold."""

    metric: str
    candidate: float | None
    baseline: float | None
    threshold: float
    passed: bool
    rule: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Analysis:
    """The verdict on one interval: each check with its measured values and threshold.

    ``inconclusive`` means too few samples on either side: the rollout waits, it does
    not fail. ``samples`` counts requests and labelled outcomes per side, and holds the
    baseline's own window (``baseline_since``, ``baseline_until``) when it differs.
    """

    verdict: Verdict
    checks: tuple[Check, ...] = ()
    samples: dict[str, float] = field(default_factory=dict)
    since: float = 0.0
    until: float = 0.0
    reason: str = ""

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "since": self.since,
            "until": self.until,
            "samples": dict(self.samples),
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class Step:
    """A strategy's answer.

    - ``traffic``: give the candidate ``weight`` (0..1) of the traffic as step ``index``;
      ``mirror`` also sends it a copy of the baseline's traffic (answers discarded);
      ``confirm`` asks the confirm-promotion hook first (blue-green's switch does).
    - ``wait``: nothing to do yet (interval not elapsed, or too few samples).
    - ``retry``: a failed analysis within the failure budget; the step's interval
      starts again.
    - ``promote``: the candidate takes all traffic and becomes production (the
      confirm-promotion hook is asked unless ``confirm`` is False).
    - ``complete``: end the rollout without promoting (a shadow comparison that was
      only meant to be recorded); traffic goes back to the baseline alone.
    - ``rollback``: all traffic back to the baseline.
    """

    action: Action
    weight: float | None = None
    index: int | None = None
    mirror: bool = False
    confirm: bool | None = None
    reason: str = ""
    memo: dict[str, Any] | None = None


@dataclass(frozen=True)
class Thresholds:
    """What an analysis holds the candidate to (canary vs. stable, same interval).

    - ``min_samples``: fewer requests (or labelled outcomes, for the model metric) on
      either side make the analysis inconclusive;
    - ``max_error_rate``: absolute ceiling on the candidate's serving error rate, and
      ``max_error_rate_increase``: how far above the baseline's it may be;
    - ``max_latency_ratio`` and ``latency_slack_seconds``: the candidate's p95 latency
      may be at most ``ratio x baseline p95 + slack``;
    - ``max_metric_increase``: relative increase of the model metric allowed (MSE for
      regression, error rate for classification; lower is better); ``None`` or
      ``False`` (``false`` in TOML, which has no null) skips the model-metric check;
    - ``latency_quantile``: which latency quantile is compared.
    """

    min_samples: int = 100
    max_error_rate: float = 0.05
    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    latency_slack_seconds: float = 0.025
    max_metric_increase: float | None = 0.1
    latency_quantile: float = 0.95

    def __post_init__(self) -> None:
        # Types first, so that a string or a boolean is named with its key instead of
        # surfacing as a TypeError from a comparison (TOML has no null: ``false`` is
        # how a config file says "no metric check").
        if self.max_metric_increase is False:
            object.__setattr__(self, "max_metric_increase", None)
        check_option(
            _is_number(self.min_samples) and float(self.min_samples).is_integer(),
            "min_samples",
            "an integer >= 1",
            self.min_samples,
        )
        for key in (
            "max_error_rate",
            "max_error_rate_increase",
            "max_latency_ratio",
            "latency_slack_seconds",
            "latency_quantile",
        ):
            value = getattr(self, key)
            check_option(_is_number(value), key, "a finite number", value)
        if self.max_metric_increase is not None:
            check_option(
                _is_number(self.max_metric_increase),
                "max_metric_increase",
                "a number >= 0, or false for no model-metric check",
                self.max_metric_increase,
            )
        check_option(self.min_samples >= 1, "min_samples", "an integer >= 1", self.min_samples)
        for key in ("max_error_rate", "max_error_rate_increase"):
            value = getattr(self, key)
            check_option(0 <= value <= 1, key, "a number in [0, 1]", value)
        check_option(
            self.max_latency_ratio >= 1,
            "max_latency_ratio",
            "a number >= 1",
            self.max_latency_ratio,
        )
        check_option(
            self.latency_slack_seconds >= 0,
            "latency_slack_seconds",
            "a number >= 0",
            self.latency_slack_seconds,
        )
        if self.max_metric_increase is not None:
            check_option(
                self.max_metric_increase >= 0,
                "max_metric_increase",
                "a number >= 0, or false for no model-metric check",
                self.max_metric_increase,
            )
        check_option(
            0 < self.latency_quantile < 1,
            "latency_quantile",
            "a number in (0, 1)",
            self.latency_quantile,
        )


def _is_number(value: Any) -> bool:
    """A finite int or float, and not a boolean (``True`` is an int to Python)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def check_option(ok: bool, key: str, expected: str, value: Any) -> None:
    """Raise ``ValueError`` naming option ``key`` and what was expected unless ``ok``."""
    if not ok:
        raise ValueError(f"option {key!r}: expected {expected}, got {value!r}")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class AliasRegistry(Protocol):
    """The model registry as a traffic backend sees it (``registry=`` at instantiation).

    Versions are the semantic version strings; a record is the dict of
    ``GET /api/models/{name}/versions/{version}``.
    """

    async def production(self, model: str) -> Mapping[str, Any] | None:
        """The record of the version in production, or None."""
        ...

    async def set_alias(self, model: str, alias: str, version: str | None) -> None:
        """Point ``alias`` at ``version`` (None removes it), in mlwarden and in MLflow."""
        ...

    async def set_version_tag(self, model: str, version: str, key: str, value: str) -> None:
        """Set a tag on the version's MLflow model version."""
        ...
