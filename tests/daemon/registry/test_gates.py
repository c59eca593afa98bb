"""Validation gates: thresholds, comparison with production on the same holdout, tags."""

from __future__ import annotations

import pytest

from mlwarden.daemon.core.config_checks import gate_problems
from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.registry.gates import evaluate_gates, relative_worsening
from mlwarden.errors import ConfigError


def version(metrics, tags=None, holdout=None, v="1.1.0"):
    return {"version": v, "metrics": metrics, "tags": tags or {},
            "lineage": {"holdout": holdout} if holdout else {}}  # fmt: skip


def test_thresholds_pass_and_fail_with_measured_and_threshold():
    gates = {"max_mse": 0.02, "min_accuracy": 0.9}
    report = evaluate_gates(gates, version({"mse": 0.01, "accuracy": 0.95}), None)
    assert report.passed
    checks = {c.name: c for c in report.checks}
    assert (checks["max_mse"].measured, checks["max_mse"].threshold) == (0.01, 0.02)
    report = evaluate_gates(gates, version({"mse": 0.03, "accuracy": 0.95}), None)
    assert not report.passed
    assert [c.passed for c in report.checks] == [False, True]  # sorted: max_mse, min_accuracy


def test_missing_metric_and_missing_tag_fail():
    report = evaluate_gates({"max_mse": 1.0, "required_tags": ["holdout_set"]}, version({}), None)
    assert not report.passed
    assert [c.detail for c in report.checks] == [
        "metric 'mse' not reported",
        "tag 'holdout_set' is missing",
    ]


def test_not_worse_than_production_on_the_same_holdout():
    gates = {"max_worse_than_production": 0.05, "compare_metrics": ["mse", "accuracy"]}
    prod = version({"mse": 0.10, "accuracy": 0.80}, holdout="h1", v="1.0.0")
    ok = evaluate_gates(gates, version({"mse": 0.104, "accuracy": 0.79}, holdout="h1"), prod)
    assert ok.passed and ok.production_version == "1.0.0"
    assert ok.checks[0].measured == pytest.approx(0.04)
    worse = evaluate_gates(gates, version({"mse": 0.11, "accuracy": 0.80}, holdout="h1"), prod)
    assert not worse.passed and worse.checks[0].measured == pytest.approx(0.1)
    other = evaluate_gates(gates, version({"mse": 0.01, "accuracy": 0.99}, holdout="h2"), prod)
    assert not other.passed and "not comparable" in other.checks[0].detail
    first = evaluate_gates(gates, version({"mse": 1.0}), None)
    assert first.passed and "no production" in first.checks[0].detail


def test_relative_worsening_direction():
    assert relative_worsening(0.12, 0.10, higher_better=False) == pytest.approx(0.2)
    assert relative_worsening(0.72, 0.80, higher_better=True) == pytest.approx(0.1)
    assert relative_worsening(0.5, 0.0, higher_better=False) == 0.5


def test_bad_gate_config_names_the_key(tmp_path):
    assert gate_problems({"max_mse": "low", "speed": 1}, "models[0].gates") == [
        "key 'models[0].gates.max_mse': expected a finite number, got 'low'",
        "key 'models[0].gates.speed': unknown gate (expected max_<metric>, min_<metric>, "
        "max_worse_than_production, compare_metrics, required_tags, higher_is_better)",
    ]
    path = tmp_path / "bad.toml"
    path.write_text('[[models]]\nname = "m"\n[models.gates]\nmin_accuracy = true\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.gates\.min_accuracy"):
        load_config(path, env={})
