"""The A/B decision: per-request metrics, guardrails, gates, Holm, SRM and a recommendation.

``analyse`` is pure: given the per-request values of both arms, the settings and the
sequential state carried from earlier looks, it returns an ``Evaluation``. The
experiments service feeds it outcomes and persists what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .design import holm, power_report, srm_check
from .hypothesis import Comparison, compare
from .sequential import SequentialState, sequential_compare

__all__ = [
    "METRICS",
    "AnalysisSettings",
    "Arm",
    "Evaluation",
    "Recommendation",
    "analyse",
    "is_final",
    "metric_values",
]


class Recommendation(StrEnum):
    KEEP_A = "KEEP_A"
    PROMOTE_B = "PROMOTE_B"
    CONTINUE = "CONTINUE"
    STOP_NO_DIFFERENCE = "STOP_NO_DIFFERENCE"
    INVALID_SRM = "INVALID_SRM"


#: Primary metrics: name -> (higher is better, default test).
METRICS: dict[str, tuple[bool, str]] = {
    "squared_error": (False, "welch"),
    "absolute_error": (False, "welch"),
    "accuracy": (True, "ztest"),
    "strategy_return": (True, "welch"),
}


def metric_values(metric: str, prediction: Any, label: Any) -> np.ndarray:
    """Per-request values of ``metric`` from joined predictions and labels.

    ``squared_error`` / ``absolute_error``: ``(prediction - label)^2`` / ``|...|``;
    ``accuracy``: 1 where the prediction equals the label, else 0 (compared as strings
    when they are not numeric); ``strategy_return``: ``sign(prediction) * label`` — the
    return of holding the position the predicted return points to, when the label is
    the realised return.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if metric == "accuracy":
        pred, lab = np.asarray(prediction), np.asarray(label)
        if pred.dtype.kind in "fiub" and lab.dtype.kind in "fiub":
            return (pred.astype(float) == lab.astype(float)).astype(float)
        return (pred.astype(str) == lab.astype(str)).astype(float)
    pred, lab = np.asarray(prediction, float), np.asarray(label, float)
    if metric == "squared_error":
        return (pred - lab) ** 2
    if metric == "absolute_error":
        return np.abs(pred - lab)
    return np.sign(pred) * lab


@dataclass(frozen=True)
class Arm:
    """What one arm served: the primary metric per request and the guardrail signals."""

    values: np.ndarray
    latency: np.ndarray | None = None  # seconds; NaN where not reported
    error: np.ndarray | None = None  # True where the serving call failed
    assigned: int | None = None  # requests routed to the arm (for SRM); default len(values)


@dataclass(frozen=True)
class AnalysisSettings:
    """How an experiment is judged (from ``[ab_testing]`` and the experiment's options)."""

    metric: str = "squared_error"
    test: str = "auto"  # auto | welch | ztest | mann_whitney
    weight_b: float = 0.5
    confidence_level: float = 0.95
    significance_threshold: float = 0.05
    min_samples: int = 100
    min_duration_hours: float = 24.0
    duration_hours: float = 24.0
    sequential: bool = True
    tuning_samples: int = 10_000
    srm_threshold: float = 0.001
    relative_mde: float = 0.05
    target_power: float = 0.8
    guardrails: tuple[str, ...] = ("latency", "error_rate")

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric][0]

    @property
    def resolved_test(self) -> str:
        return METRICS[self.metric][1] if self.test == "auto" else self.test


@dataclass(frozen=True)
class Evaluation:
    """One look at an experiment: the verdict and everything it rests on."""

    recommendation: Recommendation
    winner: str | None  # "A", "B" or None
    reason: str
    primary: Comparison | None
    p_value: float | None
    p_value_adjusted: float | None
    samples: dict[str, int]
    srm: dict[str, Any]
    power: dict[str, Any] | None
    guardrails: dict[str, Any]
    gates: dict[str, Any]
    settings: dict[str, Any]
    states: dict[str, SequentialState] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        primary = self.primary.to_dict() if self.primary else None
        return {
            "recommendation": str(self.recommendation),
            "winner": self.winner,
            "reason": self.reason,
            "metric": self.settings["metric"],
            "higher_is_better": self.settings["higher_is_better"],
            "test": primary["method"] if primary else self.settings["test"],
            "sequential": self.settings["sequential"],
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "confidence_level": self.settings["confidence_level"],
            "significance_threshold": self.settings["significance_threshold"],
            "estimate": primary["estimate"] if primary else None,
            "interval": primary["interval"] if primary else None,
            "lift": primary["lift"] if primary else None,
            "lift_interval": primary["lift_interval"] if primary else None,
            "samples": self.samples,
            "means": {"A": primary["mean_a"], "B": primary["mean_b"]} if primary else None,
            "srm": self.srm,
            "power": self.power,
            "guardrails": self.guardrails,
            "gates": self.gates,
            "primary": primary,
            "sequential_state": {k: s.to_dict() for k, s in self.states.items()},
        }


def _run_test(
    name: str,
    test: str,
    a: np.ndarray,
    b: np.ndarray,
    s: AnalysisSettings,
    states: dict[str, SequentialState],
    out_states: dict[str, SequentialState],
) -> Comparison:
    if s.sequential and test != "mann_whitney":
        comparison, out_states[name] = sequential_compare(
            test,
            a,
            b,
            alpha=s.significance_threshold,
            confidence=s.confidence_level,
            tuning_samples=s.tuning_samples,
            state=states.get(name),
        )
        return comparison
    return compare(test, a, b, s.confidence_level)


def analyse(
    a: Arm,
    b: Arm,
    settings: AnalysisSettings,
    *,
    elapsed_hours: float,
    states: dict[str, SequentialState] | None = None,
) -> Evaluation:
    """Judge B against A now. Never names a winner before the gates are passed.

    Gates: both arms have ``min_samples`` values, ``min_duration_hours`` have elapsed,
    and — without the sequential mode, where only one look is valid — the planned
    ``duration_hours`` are over. A sample-ratio mismatch blocks any winner. The primary
    metric and the guardrails (latency and error rate, lower is better, B must not be
    significantly worse) form one family under Holm's correction.
    """
    s = settings
    states = states or {}
    out_states: dict[str, SequentialState] = dict(states)
    test = s.resolved_test
    n_a, n_b = int(a.values.size), int(b.values.size)
    srm = srm_check(
        a.assigned if a.assigned is not None else n_a,
        b.assigned if b.assigned is not None else n_b,
        s.weight_b,
        s.srm_threshold,
    )
    samples_ok = min(n_a, n_b) >= max(s.min_samples, 2)
    duration_ok = elapsed_hours >= s.min_duration_hours
    horizon = elapsed_hours >= s.duration_hours
    sequential = s.sequential and test != "mann_whitney"
    gates = {
        "min_samples": s.min_samples,
        "samples_ok": samples_ok,
        "min_duration_hours": s.min_duration_hours,
        "elapsed_hours": elapsed_hours,
        "duration_ok": duration_ok,
        "duration_hours": s.duration_hours,
        "horizon_reached": horizon,
    }
    settings_out = {
        "metric": s.metric,
        "higher_is_better": s.higher_is_better,
        "test": test,
        "sequential": sequential,
        "confidence_level": s.confidence_level,
        "significance_threshold": s.significance_threshold,
        "weight_b": s.weight_b,
    }
    samples = {"A": n_a, "B": n_b}
    if min(n_a, n_b) < 2:
        return Evaluation(
            Recommendation.INVALID_SRM if srm.mismatch else Recommendation.CONTINUE,
            None,
            "not enough samples to compare yet",
            None, None, None, samples, srm.to_dict(), None, {}, gates, settings_out, out_states,
        )  # fmt: skip

    family: dict[str, Comparison] = {
        "primary": _run_test("primary", test, a.values, b.values, s, states, out_states)
    }
    for guardrail in s.guardrails:
        pair = _guardrail_values(guardrail, a, b)
        if pair is not None:
            gtest = "ztest" if guardrail == "error_rate" else "welch"
            family[guardrail] = _run_test(guardrail, gtest, pair[0], pair[1], s, states, out_states)
    names = list(family)
    adjusted = dict(zip(names, holm([family[n].p_value for n in names]), strict=True))
    alpha = s.significance_threshold
    guardrails: dict[str, Any] = {}
    violations = []
    for name in names[1:]:
        c = family[name]
        violated = bool(adjusted[name] <= alpha and c.estimate > 0)
        guardrails[name] = {
            **c.to_dict(),
            "p_value_adjusted": float(adjusted[name]),
            "violated": violated,
        }
        if violated:
            violations.append(name)

    primary = family["primary"]
    significant = adjusted["primary"] <= alpha and primary.estimate != 0
    b_better = (primary.estimate > 0) == s.higher_is_better
    mde = s.relative_mde * abs(primary.mean_a)
    power = power_report(
        n=n_a + n_b, var_a=primary.var_a, var_b=primary.var_b, weight_b=s.weight_b, effect=mde,
        relative_mde=s.relative_mde, alpha=alpha, target_power=s.target_power,
        sequential=sequential, tuning_samples=s.tuning_samples,
    )  # fmt: skip
    lo, hi = primary.interval
    futile = sequential and mde > 0 and -mde < lo and hi < mde

    def verdict(rec: Recommendation, winner: str | None, reason: str) -> Evaluation:
        return Evaluation(
            rec, winner, reason, primary, primary.p_value, float(adjusted["primary"]), samples,
            srm.to_dict(), power.to_dict() if power else None, guardrails, gates, settings_out,
            out_states,
        )  # fmt: skip

    if srm.mismatch:
        return verdict(
            Recommendation.INVALID_SRM, None,
            f"sample ratio mismatch: {n_a}/{n_b} under a {1 - s.weight_b:g}/{s.weight_b:g} "
            f"split (chi-square p={srm.p_value:.2g} < {s.srm_threshold:g}); results are invalid",
        )  # fmt: skip
    if not samples_ok:
        return verdict(
            Recommendation.CONTINUE,
            None,
            f"waiting for {s.min_samples} samples per arm (have {n_a}/{n_b})",
        )
    if not duration_ok:
        return verdict(
            Recommendation.CONTINUE,
            None,
            f"waiting for the minimum duration of {s.min_duration_hours:g} h "
            f"({elapsed_hours:.2f} h elapsed)",
        )
    if not sequential and not horizon:
        return verdict(
            Recommendation.CONTINUE,
            None,
            f"fixed-horizon test: decides once, after {s.duration_hours:g} h",
        )
    if significant and b_better and not violations:
        return verdict(
            Recommendation.PROMOTE_B,
            "B",
            f"B is better on {s.metric} (adjusted p={adjusted['primary']:.3g})",
        )
    if significant and not b_better:
        return verdict(
            Recommendation.KEEP_A,
            "A",
            f"A is better on {s.metric} (adjusted p={adjusted['primary']:.3g})",
        )
    if violations:
        return verdict(
            Recommendation.KEEP_A,
            "A",
            f"B is significantly worse on guardrail(s) {', '.join(violations)}",
        )
    if futile:
        return verdict(
            Recommendation.STOP_NO_DIFFERENCE,
            None,
            f"the interval [{lo:.4g}, {hi:.4g}] excludes effects of {s.relative_mde:.0%} or more",
        )
    if horizon:
        return verdict(
            Recommendation.STOP_NO_DIFFERENCE,
            None,
            f"no significant difference on {s.metric} after {s.duration_hours:g} h",
        )
    return verdict(Recommendation.CONTINUE, None, "no significant difference yet")


def _guardrail_values(name: str, a: Arm, b: Arm) -> tuple[np.ndarray, np.ndarray] | None:
    if name == "latency":
        if a.latency is None or b.latency is None:
            return None
        la = np.asarray(a.latency, float)
        lb = np.asarray(b.latency, float)
        la, lb = la[np.isfinite(la)], lb[np.isfinite(lb)]
        return (la, lb) if min(la.size, lb.size) >= 2 else None
    if name == "error_rate":
        if a.error is None or b.error is None or min(a.error.size, b.error.size) < 1:
            return None
        return np.asarray(a.error, float), np.asarray(b.error, float)
    raise ValueError(f"unknown guardrail {name!r}; expected latency or error_rate")


def is_final(recommendation: Recommendation | str) -> bool:
    """Whether a recommendation ends the experiment."""
    return str(recommendation) in ("PROMOTE_B", "KEEP_A", "STOP_NO_DIFFERENCE")
