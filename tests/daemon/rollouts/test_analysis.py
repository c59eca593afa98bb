"""Rollout analysis: candidate vs. baseline over the same interval, each check recorded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, mean_squared_error

from mlwarden.daemon.rollouts.analysis import VersionSample, compare, model_metric
from mlwarden.types import Thresholds

rng = np.random.default_rng(7)


def _sample(n: int, noise: float, errors: int = 0, latency: float = 0.01) -> VersionSample:
    label = rng.normal(size=n)
    return VersionSample(
        requests=n,
        errors=errors,
        latency=np.full(n - errors, latency),
        prediction=label + rng.normal(scale=noise, size=n),
        label=label,
    )


def test_metric_agrees_with_sklearn():
    s = _sample(500, 0.3)
    assert model_metric("regression", s.prediction, s.label) == (
        "mse",
        pytest.approx(mean_squared_error(s.label, s.prediction)),
    )
    pred, label = np.array(["a", "b", "b", "a"]), np.array(["a", "b", "a", "a"])
    _name, value = model_metric("classification", pred, label)
    assert value == pytest.approx(1 - accuracy_score(label, pred))


def test_good_candidate_passes_with_values_and_thresholds_recorded():
    base, cand = _sample(400, 0.3), _sample(400, 0.3)
    analysis = compare(cand, base, Thresholds(max_metric_increase=0.25))
    assert analysis.verdict == "pass", analysis.to_dict()
    checks = {c.metric: c for c in analysis.checks}
    assert set(checks) == {"error_rate", "latency_p95_seconds", "mse"}
    mse = checks["mse"]
    assert mse.candidate == pytest.approx(mean_squared_error(cand.label, cand.prediction))
    assert mse.threshold == pytest.approx(mse.baseline * 1.25)


def test_worse_model_fails_on_its_metric():
    analysis = compare(_sample(400, 1.0), _sample(400, 0.3), Thresholds())
    assert analysis.verdict == "fail"
    assert [c.metric for c in analysis.failed_checks] == ["mse"]


def test_errors_and_latency_over_thresholds_fail():
    base = _sample(400, 0.3, latency=0.010)
    slow = _sample(400, 0.3, latency=0.100)
    analysis = compare(slow, base, Thresholds(max_metric_increase=None))
    assert [c.metric for c in analysis.failed_checks] == ["latency_p95_seconds"]
    assert analysis.failed_checks[0].threshold == pytest.approx(0.010 * 1.5 + 0.025)
    erring = _sample(400, 0.3, errors=40)
    analysis = compare(erring, base, Thresholds(max_metric_increase=None))
    check = analysis.failed_checks[0]
    assert (check.metric, check.candidate, check.threshold) == ("error_rate", 0.1, 0.01)


def test_too_few_samples_is_inconclusive_not_a_failure():
    analysis = compare(_sample(20, 5.0, errors=10), _sample(400, 0.3), Thresholds())
    assert analysis.verdict == "inconclusive"
    assert "candidate has 20 requests" in analysis.reason
    # Requests but no labels yet: the model metric cannot be judged, so wait.
    unlabelled = VersionSample(requests=500, latency=np.full(500, 0.01))
    analysis = compare(unlabelled, _sample(400, 0.3), Thresholds())
    assert analysis.verdict == "inconclusive" and "labelled outcomes" in analysis.reason
    assert compare(unlabelled, unlabelled, Thresholds(max_metric_increase=None)).verdict == "pass"
