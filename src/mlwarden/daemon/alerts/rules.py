"""Alert rules: which events fire an alert, which resolve it, and the alert's labels.

An alert is identified by its fingerprint, a hash of its identifying labels: the rule's
name (``alertname``), the model, the rule's static labels and the event data keys the
rule groups by. Two events that map to the same labels are the same alert (dedup);
a resolving event closes the alert with the same fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Any

from ...types import Event, Severity
from ..core.config import AlertRuleConfig, AlertsConfig

__all__ = ["BUILTIN_RULES", "AlertRule", "build_rules", "fingerprint"]


@dataclass(frozen=True)
class AlertRule:
    """A rule, as built from the built-ins and the ``[[alerts.rules]]`` of the config."""

    name: str
    fire_on: tuple[str, ...]
    resolve_on: tuple[str, ...] = ()
    severity: str = ""
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    match: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes the rule's ``match`` conditions (all must hold)."""
        return all(_field(event, key) == expected for key, expected in self.match.items())

    def fires(self, event: Event) -> bool:
        return event.kind in self.fire_on and self.matches(event)

    def resolves(self, event: Event) -> bool:
        return event.kind in self.resolve_on and self.matches(event)

    def alert_labels(self, event: Event) -> dict[str, str]:
        """The labels identifying the alert ``event`` fires or resolves."""
        labels = {"alertname": self.name, "model": event.model or ""}
        labels.update(self.labels)
        for key in self.group_by:
            labels[key] = _field(event, key)
        return labels

    def severity_for(self, event: Event) -> Severity:
        return Severity(self.severity) if self.severity else Severity(event.severity)

    def summary_for(self, event: Event) -> str:
        """The rule's summary template filled from the event; unknown names stay visible."""
        template = self.summary or event.message or event.kind.replace("_", " ")
        values = {
            "model": event.model or "",
            "version": event.version or "",
            "kind": event.kind,
            "message": event.message,
            **{k: _text(v) for k, v in event.data.items()},
        }
        return string.Formatter().vformat(template, (), _Lenient(values))


class _Lenient(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _field(event: Event, key: str) -> str:
    if key in ("model", "version", "kind"):
        return getattr(event, key) or ""
    if key == "severity":
        return str(event.severity)
    return _text(event.data.get(key, ""))


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 32-hex-digit identity of an alert (also PagerDuty's dedup key)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


BUILTIN_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        name="ModelPerformanceDegraded",
        fire_on=("performance_degraded",),
        resolve_on=("performance_recovered",),
        severity="warning",
        summary="{metric} of {model} v{version} is {value} against a baseline of {baseline}: "
        "{fall} worse, over the {threshold} threshold",
        group_by=("metric",),
    ),
    AlertRule(
        name="ModelPerformanceEstimateDegraded",
        fire_on=("performance_estimate_degraded",),
        resolve_on=("performance_estimate_recovered",),
        severity="warning",
        summary="estimated {metric} of {model} is {value} (band {lower} to {upper}) against "
        "a reference of {baseline}, before the labels arrive: over the {threshold} threshold",
        group_by=("metric",),
    ),
    AlertRule(
        name="ModelDataDrift",
        fire_on=("drift_detected",),
        resolve_on=("drift_resolved",),
        severity="warning",
        summary="data drift on {model}: drift score {drift_score} over the threshold "
        "{threshold} (features: {drifted_features}); recommendation {recommendation}",
    ),
    AlertRule(
        name="ModelTrainingFailed",
        fire_on=("training_failed",),
        resolve_on=("training_succeeded",),
        severity="critical",
        summary="training job {job_id} of {model} {state} (attempt {attempt}): {error}",
    ),
    AlertRule(
        name="ModelRolloutFailed",
        fire_on=("rollout_rolled_back", "rollout_failed"),
        resolve_on=("rollout_promoted",),
        severity="critical",
        summary="rollout {rollout} of {model} v{version} ({strategy}) {state} at step "
        "{step}: {message}",
    ),
)


def build_rules(config: AlertsConfig) -> list[AlertRule]:
    """The rules in force: the built-ins (unless disabled), overridden or extended by config.

    A configured rule named like a built-in replaces the keys it sets and keeps the
    others; ``enabled = false`` removes a rule.
    """
    rules: dict[str, AlertRule] = {}
    if config.builtin_rules:
        rules = {r.name: r for r in BUILTIN_RULES}
    for rc in config.rules:
        base = rules.get(rc.name)
        if not rc.enabled:
            rules.pop(rc.name, None)
            continue
        rules[rc.name] = _from_config(rc, base)
    return list(rules.values())


def _from_config(rc: AlertRuleConfig, base: AlertRule | None) -> AlertRule:
    if base is None:
        return AlertRule(
            name=rc.name,
            fire_on=tuple(rc.fire_on),
            resolve_on=tuple(rc.resolve_on),
            severity=rc.severity,
            summary=rc.summary,
            labels=dict(rc.labels),
            match=dict(rc.match),
            group_by=tuple(rc.group_by),
        )
    # Keys left at their default keep the built-in's value.
    blank = AlertRuleConfig(name=rc.name)
    changes: dict[str, Any] = {}
    for key in ("fire_on", "resolve_on", "severity", "summary", "labels", "match", "group_by"):
        if getattr(rc, key) != getattr(blank, key):
            changes[key] = getattr(rc, key)
    return dataclasses.replace(base, **changes)
