"""Performance metrics against sklearn.metrics, and trading metrics by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn import metrics as skm

from mlwarden.stats.metrics import (
    classification_metrics,
    compute_metrics,
    higher_is_better,
    max_drawdown,
    regression_metrics,
    relative_worsening,
    sharpe_ratio,
    strategy_returns,
    system_metrics,
    trading_metrics,
    trading_problems,
    win_rate,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=500)
    p = y + rng.normal(scale=0.3, size=500) + 0.1
    got = regression_metrics(p, y)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, p), rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)


def test_r2_of_constant_label_follows_sklearn():
    y = np.ones(5)
    assert regression_metrics(y, y)["r2"] == skm.r2_score(y, y) == 1.0
    assert regression_metrics(y + 1, y)["r2"] == skm.r2_score(y, y + 1) == 0.0
    assert regression_metrics(np.array([]), np.array([])) == {}


@pytest.mark.parametrize("seed", [0, 1])
def test_binary_classification_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.choice(["0", "1"], size=400, p=[0.7, 0.3])
    p = np.where(rng.uniform(size=400) < 0.8, y, rng.choice(["0", "1"], size=400))
    got = classification_metrics(p, y)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["precision"] == pytest.approx(skm.precision_score(y, p, pos_label="1"))
    assert got["recall"] == pytest.approx(skm.recall_score(y, p, pos_label="1"))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p, pos_label="1"))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):  # fmt: skip
        assert got[f"{name}_macro"] == pytest.approx(fn(y, p, average="macro", zero_division=0))


def test_multiclass_macro_matches_sklearn_including_unseen_and_never_predicted_classes():
    rng = np.random.default_rng(3)
    y = rng.choice(["up", "down", "flat"], size=300)
    p = rng.choice(
        ["up", "down", "sideways"], size=300
    )  # "sideways" never true, "flat" never predicted
    got = classification_metrics(p, y)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert got["precision_macro"] == pytest.approx(
        skm.precision_score(y, p, average="macro", zero_division=0)
    )
    assert got["recall_macro"] == pytest.approx(
        skm.recall_score(y, p, average="macro", zero_division=0)
    )
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, p, average="macro", zero_division=0))
    assert "precision" not in got  # no positive class known
    positive = classification_metrics(p, y, positive_label="up")
    assert positive["f1"] == pytest.approx(
        skm.f1_score(y, p, labels=["up"], average="macro", zero_division=0)
    )


def test_trading_metrics_by_hand():
    # predictions -> positions by sign: +1, -1, 0, +1, +1, -1
    prediction = np.array([0.5, -0.2, 0.0, 0.1, 0.3, -0.4])
    label = np.array([0.10, 0.05, 0.20, -0.20, 0.05, -0.10])
    pos, r = strategy_returns(prediction, label)
    assert pos.tolist() == [1, -1, 0, 1, 1, -1]
    assert r.tolist() == pytest.approx([0.10, -0.05, 0.0, -0.20, 0.05, 0.10])
    # equity: 1, 1.1, 1.045, 1.045, 0.836, 0.8778, 0.96558; peak 1.1 -> trough 0.836
    assert max_drawdown(r) == pytest.approx(1 - 0.836 / 1.1)
    # mean 0.0 / std... : mean = 0.0/6 = 0; use a second example for Sharpe
    assert win_rate(pos, r) == pytest.approx(3 / 5)  # flat period is not a trade
    returns = np.array([0.01, 0.02, -0.01, 0.03])
    mean, sd = 0.0125, math.sqrt(((-0.0025) ** 2 + 0.0075**2 + 0.0225**2 + 0.0175**2) / 3)
    assert sharpe_ratio(returns, 365) == pytest.approx(mean / sd * math.sqrt(365))
    assert sharpe_ratio(np.array([0.01, 0.01]), 365) is None  # zero deviation: undefined
    got = trading_metrics(prediction, label, periods_per_year=252)
    assert got["total_return"] == pytest.approx(1.1 * 0.95 * 0.8 * 1.05 * 1.1 - 1)
    assert got["trades"] == 5
    long_only, _ = strategy_returns(prediction, label, position="long_only", threshold=0.2)
    assert long_only.tolist() == [1, 0, 0, 0, 1, 0]


def test_system_metrics_and_error_rows_left_out_of_quality():
    outcomes = SimpleNamespace(
        ts=np.array([3.0, 1.0, 2.0, 4.0]),
        prediction=np.array([1.0, 2.0, 3.0, np.nan]),
        label=np.array([1.5, 2.0, 2.0, 1.0]),
        latency=np.array([0.01, np.nan, 0.03, 0.05]),
        error=np.array([False, False, False, True]),
    )
    got = compute_metrics(outcomes, task="regression", window_seconds=2.0)
    assert got["samples"] == 3
    assert got["mse"] == pytest.approx(skm.mean_squared_error([1.5, 2.0, 2.0], [1.0, 2.0, 3.0]))
    assert got["error_rate"] == 0.25
    assert got["throughput"] == 2.0
    assert got["latency_mean"] == pytest.approx(0.03)
    assert got["latency_p50"] == pytest.approx(np.percentile([0.01, 0.03, 0.05], 50))
    assert system_metrics(np.array([np.nan]), np.array([False]), 1.0) == {
        "error_rate": 0.0,
        "throughput": 1.0,
    }


def test_trading_options_are_validated():
    assert trading_problems({"periods_per_year": 8760, "position": "sign"}, "t") == []
    problems = trading_problems({"periods_per_year": 0, "position": "short", "threshold": -1}, "t")
    assert len(problems) == 3 and "t.position" in problems[1]


@pytest.mark.parametrize(
    ("metric", "extra", "expected"),
    [
        ("accuracy", (), True),
        ("test_accuracy", (), True),
        ("Sharpe", (), True),
        ("mse", (), False),
        ("max_drawdown", (), False),
        ("my_score", (), False),
        ("my_score", ("my_score",), True),
    ],
)
def test_metric_direction(metric, extra, expected):
    assert higher_is_better(metric, set(extra)) is expected


def test_relative_worsening_is_signed_by_direction():
    assert relative_worsening(0.12, 0.10, higher_better=False) == pytest.approx(0.2)
    assert relative_worsening(0.72, 0.80, higher_better=True) == pytest.approx(0.1)
    assert relative_worsening(0.88, 0.80, higher_better=True) == pytest.approx(-0.1)
    assert relative_worsening(0.5, 0.0, higher_better=False) == 0.5  # zero baseline: absolute
