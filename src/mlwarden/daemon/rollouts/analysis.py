"""Rollout analysis: the candidate compared with the baseline over the same interval.

Pure functions over numpy arrays, so they are tested against hand-computed values and
sklearn; the rollout controller gathers the samples (gateway serving stats and the
ingest path's labelled outcomes) and stores every check with its measured values and
the threshold it was held to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...types import Analysis, Check, Outcomes, Thresholds

__all__ = [
    "VersionSample",
    "compare",
    "latency_quantile",
    "model_metric",
    "sample_from_outcomes",
]


@dataclass
class VersionSample:
    """What one version did in a window: serving requests and labelled outcomes."""

    requests: int = 0
    errors: int = 0
    latency: np.ndarray = field(default_factory=lambda: np.empty(0))
    #: How many calls each ``latency`` stands for (histogram bins merged from several
    #: daemons' gateways); None: one call each.
    latency_counts: np.ndarray | None = None
    prediction: np.ndarray = field(default_factory=lambda: np.empty(0))
    label: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else float("nan")

    @property
    def outcomes(self) -> int:
        return len(self.label)


def sample_from_outcomes(outcomes: Outcomes) -> VersionSample:
    """A sample built from ``ingest.outcomes(...)`` alone (when the gateway is off).

    Serving counts then come from the labelled outcomes: each is one request, its
    ``error`` flag and reported ``latency`` (NaN when not reported) included.
    """
    error = np.asarray(outcomes.error, dtype=bool)
    latency = np.asarray(outcomes.latency, dtype=float)
    ok = ~error
    return VersionSample(
        requests=len(error),
        errors=int(error.sum()),
        latency=latency[np.isfinite(latency)],
        prediction=np.asarray(outcomes.prediction)[ok],
        label=np.asarray(outcomes.label)[ok],
    )


def latency_quantile(sample: VersionSample, q: float) -> float:
    """The ``q`` quantile of the sample's latencies (weighted by their counts, if any)."""
    if sample.latency_counts is None:
        return float(np.quantile(sample.latency, q))
    return float(
        np.quantile(sample.latency, q, weights=sample.latency_counts, method="inverted_cdf")
    )


def model_metric(task: str, prediction: np.ndarray, label: np.ndarray) -> tuple[str, float]:
    """The metric a rollout holds (lower is better): MSE, or the classification error rate."""
    if task == "classification":
        wrong = np.asarray(prediction).astype(str) != np.asarray(label).astype(str)
        return "error_rate_model", float(np.mean(wrong))
    diff = np.asarray(prediction, dtype=float) - np.asarray(label, dtype=float)
    return "mse", float(np.mean(diff * diff))


def compare(
    candidate: VersionSample,
    baseline: VersionSample,
    thresholds: Thresholds,
    *,
    task: str = "regression",
    since: float = 0.0,
    until: float = 0.0,
) -> Analysis:
    """Hold ``candidate`` to ``thresholds`` relative to ``baseline``.

    Inconclusive (wait, not fail) while either side has fewer than ``min_samples``
    requests — or, when the model metric is compared, fewer labelled outcomes.
    """
    t = thresholds
    samples: dict[str, float] = {
        "candidate_requests": candidate.requests,
        "baseline_requests": baseline.requests,
        "candidate_outcomes": candidate.outcomes,
        "baseline_outcomes": baseline.outcomes,
    }
    short = [
        f"{side} has {n} requests"
        for side, n in (("candidate", candidate.requests), ("baseline", baseline.requests))
        if n < t.min_samples
    ]
    if t.max_metric_increase is not None:
        short += [
            f"{side} has {n} labelled outcomes"
            for side, n in (("candidate", candidate.outcomes), ("baseline", baseline.outcomes))
            if n < t.min_samples
        ]
    if short:
        return Analysis(
            "inconclusive",
            reason=f"too few samples ({'; '.join(short)}; min_samples = {t.min_samples}); waiting",
            samples=samples,
            since=since,
            until=until,
        )
    checks: list[Check] = []
    error_limit = min(t.max_error_rate, baseline.error_rate + t.max_error_rate_increase)
    checks.append(
        Check(
            "error_rate",
            candidate.error_rate,
            baseline.error_rate,
            error_limit,
            candidate.error_rate <= error_limit,
            f"candidate <= min(max_error_rate {t.max_error_rate:g}, baseline + "
            f"{t.max_error_rate_increase:g})",
        )
    )
    if len(candidate.latency) and len(baseline.latency):
        q = t.latency_quantile
        cand_q, base_q = latency_quantile(candidate, q), latency_quantile(baseline, q)
        limit = base_q * t.max_latency_ratio + t.latency_slack_seconds
        checks.append(
            Check(
                f"latency_p{round(q * 100)}_seconds",
                cand_q,
                base_q,
                limit,
                cand_q <= limit,
                f"candidate <= baseline x {t.max_latency_ratio:g} + {t.latency_slack_seconds:g}s",
            )
        )
    if t.max_metric_increase is not None:
        name, cand_m = model_metric(task, candidate.prediction, candidate.label)
        _, base_m = model_metric(task, baseline.prediction, baseline.label)
        limit = base_m * (1 + t.max_metric_increase)
        checks.append(
            Check(
                name,
                cand_m,
                base_m,
                limit,
                cand_m <= limit,
                f"candidate <= baseline x (1 + {t.max_metric_increase:g})",
            )
        )
    failed = [c.metric for c in checks if not c.passed]
    return Analysis(
        "fail" if failed else "pass",
        tuple(checks),
        reason=f"failed: {', '.join(failed)}" if failed else "every check passed",
        samples=samples,
        since=since,
        until=until,
    )
