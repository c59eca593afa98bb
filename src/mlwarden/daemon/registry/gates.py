"""Validation gates: the checks a version must pass before it may leave ``validation``.

Configured per model under ``[models.gates]``:

- ``max_<metric> = x``: the version's ``<metric>`` must be ``<= x`` (``max_mse = 0.02``);
- ``min_<metric> = x``: the version's ``<metric>`` must be ``>= x`` (``min_accuracy = 0.9``);
- ``max_worse_than_production = f``: on each compared metric the version may be worse than
  the production version by at most the fraction ``f`` (``0.05`` = 5 %), measured on the
  same holdout (``lineage.holdout``; when production records one, the candidate must
  record the same one);
- ``compare_metrics = [...]``: the metrics that comparison uses (default: the metrics
  named by the ``max_``/``min_`` gates, else every metric both versions have);
- ``required_tags = [...]``: tags the version must carry;
- ``higher_is_better = [...]``: metrics to treat as higher-is-better besides the
  built-in ones (accuracy, precision, recall, f1, r2, auc, sharpe, win_rate, ...).

A missing metric fails its check. Every check records what was measured, the threshold
it was held to, and whether it passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...stats.metrics import HIGHER_IS_BETTER, higher_is_better, relative_worsening
from .records import GateCheckRecord, GateReportRecord, Measure, VersionFields

__all__ = [
    "HIGHER_IS_BETTER",
    "GateCheck",
    "GateReport",
    "evaluate_gates",
    "higher_is_better",
]


@dataclass(frozen=True)
class GateCheck:
    """One check of a gate report."""

    name: str
    metric: str | None
    measured: Measure
    threshold: Measure
    passed: bool
    detail: str = ""

    def to_dict(self) -> GateCheckRecord:
        return {
            "name": self.name,
            "metric": self.metric,
            "measured": self.measured,
            "threshold": self.threshold,
            "passed": self.passed,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateReport:
    """Every check held against one version, and whether all of them passed."""

    passed: bool
    checks: list[GateCheck] = field(default_factory=list)
    evaluated_at: float = 0.0
    production_version: str | None = None

    def to_dict(self) -> GateReportRecord:
        return {
            "passed": self.passed,
            "evaluated_at": self.evaluated_at,
            "production_version": self.production_version,
            "checks": [c.to_dict() for c in self.checks],
        }


def evaluate_gates(
    gates: Mapping[str, Any],
    candidate: VersionFields,
    production: VersionFields | None,
    now: float = 0.0,
) -> GateReport:
    """Hold ``candidate`` (a version record) to ``gates``; ``production`` is the baseline."""
    metrics: Mapping[str, float] = candidate.get("metrics") or {}
    checks: list[GateCheck] = []
    threshold_metrics: list[str] = []
    for key, threshold in sorted(gates.items()):
        if not key.startswith(("max_", "min_")) or key == "max_worse_than_production":
            continue
        metric = key[4:]
        threshold_metrics.append(metric)
        measured = metrics.get(metric)
        if measured is None:
            checks.append(
                GateCheck(key, metric, None, threshold, False, f"metric {metric!r} not reported")
            )
            continue
        ok = measured <= threshold if key.startswith("max_") else measured >= threshold
        checks.append(GateCheck(key, metric, measured, threshold, bool(ok)))
    tags: Mapping[str, str] = candidate.get("tags") or {}
    for tag in gates.get("required_tags", ()):
        present = tag in tags and str(tags[tag]) != ""
        checks.append(
            GateCheck(
                "required_tag",
                None,
                tags.get(tag),
                tag,
                present,
                "" if present else f"tag {tag!r} is missing",
            )
        )
    tolerance = gates.get("max_worse_than_production")
    if tolerance is not None:
        checks.extend(_against_production(gates, candidate, production, threshold_metrics))
    return GateReport(
        passed=all(c.passed for c in checks),
        checks=checks,
        evaluated_at=now,
        production_version=production.get("version") if production else None,
    )


def _against_production(
    gates: Mapping[str, Any],
    candidate: VersionFields,
    production: VersionFields | None,
    threshold_metrics: list[str],
) -> list[GateCheck]:
    tolerance = float(gates["max_worse_than_production"])
    name = "max_worse_than_production"
    if production is None:
        return [GateCheck(name, None, None, tolerance, True, "no production version to compare")]
    mine: Mapping[str, float] = candidate.get("metrics") or {}
    theirs: Mapping[str, float] = production.get("metrics") or {}
    holdout = (production.get("lineage") or {}).get("holdout")
    own_holdout = (candidate.get("lineage") or {}).get("holdout")
    if holdout and own_holdout != holdout:
        detail = (
            f"production {production.get('version')} was measured on holdout {holdout!r}, "
            f"this version on {own_holdout!r}: not comparable"
        )
        return [GateCheck(name, None, own_holdout, holdout, False, detail)]
    compared = list(
        gates.get("compare_metrics") or threshold_metrics or sorted(set(mine) & set(theirs))
    )
    extra = set(gates.get("higher_is_better", ()))
    checks = []
    for metric in compared:
        if metric not in mine or metric not in theirs:
            missing = (
                "this version" if metric not in mine else f"production {production.get('version')}"
            )
            checks.append(
                GateCheck(
                    name, metric, mine.get(metric), tolerance, False, f"{missing} has no {metric!r}"
                )
            )
            continue
        worse = relative_worsening(mine[metric], theirs[metric], higher_is_better(metric, extra))
        checks.append(
            GateCheck(
                name,
                metric,
                worse,
                tolerance,
                worse <= tolerance,
                f"{metric}: {mine[metric]:.6g} vs production {theirs[metric]:.6g}",
            )
        )
    if not checks:
        checks.append(GateCheck(name, None, None, tolerance, True, "no common metric to compare"))
    return checks
