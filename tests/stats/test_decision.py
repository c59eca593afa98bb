"""The A/B decision: gates, SRM, guardrails, direction of the metric, recommendations."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.stats import AnalysisSettings, Arm, Recommendation, analyse, metric_values

READY = dict(min_samples=100, min_duration_hours=1.0, duration_hours=24.0)


def arms(rng, n_a, n_b, effect=0.0, metric_scale=1.0, latency_b=0.1, error_b=0.01):
    def arm(n, shift, lat, err):
        return Arm(
            values=rng.normal(1.0 + shift, metric_scale, n) ** 2,
            latency=rng.normal(lat, 0.01, n),
            error=rng.random(n) < err,
        )

    return arm(n_a, 0.0, 0.1, 0.01), arm(n_b, effect, latency_b, error_b)


def test_metric_values():
    assert metric_values("squared_error", [1.0, 3.0], [2.0, 1.0]).tolist() == [1.0, 4.0]
    assert metric_values("absolute_error", [1.0, 3.0], [2.0, 1.0]).tolist() == [1.0, 2.0]
    assert metric_values("accuracy", ["up", "down"], ["up", "up"]).tolist() == [1.0, 0.0]
    assert metric_values("accuracy", [1, 0], [1.0, 1.0]).tolist() == [1.0, 0.0]
    assert metric_values("strategy_return", [0.2, -0.1], [0.01, 0.02]).tolist() == [0.01, -0.02]
    with pytest.raises(ValueError, match="unknown metric 'mape'"):
        metric_values("mape", [1.0], [1.0])


def test_better_b_is_promoted_with_power_reported():
    rng = np.random.default_rng(0)
    a, b = arms(rng, 3000, 3000, effect=-0.3)  # B's squared error is lower
    ev = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=2.0)
    assert ev.recommendation is Recommendation.PROMOTE_B and ev.winner == "B"
    d = ev.to_dict()
    assert d["p_value"] <= 0.05 and d["interval"][1] < 0 and d["lift"] < 0
    assert d["samples"] == {"A": 3000, "B": 3000}
    assert 0 < d["power"]["power"] <= 1 and d["power"]["required_samples"] > 0
    assert d["test"] == "welch+msprt" and d["sequential"] is True
    assert set(d["guardrails"]) == {"latency", "error_rate"}


def test_worse_b_keeps_a():
    rng = np.random.default_rng(1)
    a, b = arms(rng, 3000, 3000, effect=0.3)
    ev = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=2.0)
    assert ev.recommendation is Recommendation.KEEP_A and ev.winner == "A"


def test_guardrail_breach_keeps_a_even_when_the_metric_improves():
    rng = np.random.default_rng(2)
    a, b = arms(rng, 3000, 3000, effect=-0.3, latency_b=0.2)
    ev = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=2.0)
    assert ev.recommendation is Recommendation.KEEP_A
    assert ev.guardrails["latency"]["violated"] and "latency" in ev.reason


def test_srm_blocks_any_winner():
    rng = np.random.default_rng(3)
    a, b = arms(rng, 4500, 5500, effect=-0.3)
    ev = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=30.0)
    assert ev.recommendation is Recommendation.INVALID_SRM and ev.winner is None
    assert ev.srm["mismatch"] and ev.srm["observed"] == [4500, 5500]
    # The same counts under a 45/55 configuration are fine.
    ok = analyse(a, b, AnalysisSettings(**READY, weight_b=0.55), elapsed_hours=30.0)
    assert ok.recommendation is Recommendation.PROMOTE_B


@pytest.mark.parametrize(
    ("n", "elapsed", "why"),
    [(50, 48.0, "samples"), (3000, 0.5, "minimum duration"), (1, 48.0, "not enough")],
)
def test_never_a_winner_before_min_samples_or_duration(n, elapsed, why):
    rng = np.random.default_rng(4)
    a, b = arms(rng, n, n, effect=-0.8)  # a huge effect
    for sequential in (True, False):
        settings = AnalysisSettings(**READY, sequential=sequential)
        ev = analyse(a, b, settings, elapsed_hours=elapsed)
        assert ev.winner is None and ev.recommendation is Recommendation.CONTINUE
        assert why in ev.reason


def test_fixed_horizon_decides_only_at_the_end():
    rng = np.random.default_rng(5)
    a, b = arms(rng, 3000, 3000, effect=-0.3)
    s = AnalysisSettings(**READY, sequential=False)
    early = analyse(a, b, s, elapsed_hours=2.0)
    assert early.recommendation is Recommendation.CONTINUE and "fixed-horizon" in early.reason
    assert early.p_value < 1e-6  # reported, but not acted upon
    end = analyse(a, b, s, elapsed_hours=24.0)
    assert end.recommendation is Recommendation.PROMOTE_B and end.to_dict()["test"] == "welch"


def test_no_difference_at_the_horizon_stops():
    rng = np.random.default_rng(6)
    a, b = arms(rng, 300, 300)
    ev = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=25.0)
    assert ev.recommendation is Recommendation.STOP_NO_DIFFERENCE and ev.winner is None
    running = analyse(a, b, AnalysisSettings(**READY), elapsed_hours=5.0)
    assert running.recommendation is Recommendation.CONTINUE


def test_sequential_futility_stops_early_when_the_interval_excludes_the_mde():
    rng = np.random.default_rng(7)
    a, b = arms(rng, 50_000, 50_000, metric_scale=0.2)
    ev = analyse(a, b, AnalysisSettings(**READY, relative_mde=0.05), elapsed_hours=2.0)
    assert ev.recommendation is Recommendation.STOP_NO_DIFFERENCE
    assert "excludes effects" in ev.reason


def test_accuracy_uses_the_z_test_and_higher_is_better():
    rng = np.random.default_rng(8)
    a = Arm(values=(rng.random(4000) < 0.70).astype(float))
    b = Arm(values=(rng.random(4000) < 0.76).astype(float))
    ev = analyse(
        a, b, AnalysisSettings(**READY, metric="accuracy", guardrails=()), elapsed_hours=2.0
    )
    assert ev.recommendation is Recommendation.PROMOTE_B
    assert ev.to_dict()["test"] == "ztest+msprt" and ev.to_dict()["lift"] > 0


def test_mann_whitney_is_fixed_horizon():
    rng = np.random.default_rng(9)
    a, b = arms(rng, 500, 500, effect=-0.5)
    s = AnalysisSettings(**READY, test="mann_whitney")
    assert analyse(a, b, s, elapsed_hours=2.0).recommendation is Recommendation.CONTINUE
    end = analyse(a, b, s, elapsed_hours=24.0)
    assert end.recommendation is Recommendation.PROMOTE_B
    assert end.to_dict()["test"] == "mann_whitney" and end.to_dict()["sequential"] is False


def test_holm_adjusts_the_primary_p_value_across_the_family():
    rng = np.random.default_rng(10)
    a, b = arms(rng, 400, 400, effect=-0.05)
    ev = analyse(a, b, AnalysisSettings(**READY, sequential=False), elapsed_hours=30)
    ps = [ev.p_value] + [g["p_value"] for g in ev.guardrails.values()]
    assert ev.p_value_adjusted >= ev.p_value
    assert ev.p_value_adjusted <= min(1.0, len(ps) * ev.p_value) + 1e-15
