"""Performance metrics of a model version from joined (prediction, label) outcomes.

Pure functions over numpy arrays; the performance service runs them off the event loop.

**Regression**: ``mse``, ``rmse``, ``mae``, ``r2`` (as ``sklearn.metrics``; R² of a
constant label is 1.0 when predicted exactly, else 0.0, as sklearn's ``force_finite``).

**Classification** (labels and predictions compared as text): ``accuracy``;
``precision_macro``, ``recall_macro``, ``f1_macro`` over the union of the classes seen in
labels and predictions; ``precision``, ``recall``, ``f1`` for the positive class when one
is known (``positive_label``, else ``"1"`` or ``"true"`` when present). A ratio with a
zero denominator is 0 (sklearn's ``zero_division=0``).

**Trading** (``[models.trading]``; the prediction is a forecast of the next period's
return and the label is the realised simple return of that period):

- position: ``sign`` (default) is +1 when the prediction is above ``threshold``
  (default 0), -1 below ``-threshold``, 0 otherwise; ``long_only`` is 1 above the
  threshold and 0 otherwise;
- strategy return of a period = position * label, in prediction-time order;
- ``sharpe`` = mean / sample standard deviation (ddof=1) of the strategy returns *
  sqrt(``periods_per_year``) (default 365: daily periods of a market open every day; use
  8760 for hourly, 252 for daily equities); risk-free rate 0; undefined (None) with
  fewer than two periods or zero deviation;
- ``max_drawdown``: the largest fall of the compounded equity curve
  ∏(1 + r) from its running peak (starting at 1), as a positive fraction;
- ``win_rate``: the share of periods with a position whose strategy return is > 0;
- ``total_return``: compounded return over the window; ``trades``: periods with a position.

**System**: ``latency_mean``, ``latency_p50``, ``latency_p95``, ``latency_p99`` (seconds,
over the outcomes that reported a latency), ``throughput`` (outcomes per second over the
window), ``error_rate`` (share of serving calls that failed; failed calls are left out of
the quality metrics above).

**Direction**: ``higher_is_better(metric)`` says whether a larger value is better
(accuracy, r2, sharpe, win_rate, throughput, ...; ``test_accuracy`` counts as accuracy;
every other metric is lower-is-better), and ``relative_worsening`` how much worse a
value is than a baseline, as a fraction; the validation gates and the performance
monitor both judge metrics by them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "HIGHER_IS_BETTER",
    "POSITIONS",
    "classification_metrics",
    "compute_metrics",
    "higher_is_better",
    "is_finite_number",
    "max_drawdown",
    "regression_metrics",
    "relative_worsening",
    "sharpe_ratio",
    "strategy_returns",
    "system_metrics",
    "trading_metrics",
    "trading_problems",
    "win_rate",
]

POSITIONS = ("sign", "long_only")
DEFAULT_PERIODS_PER_YEAR = 365.0

#: Metrics where a larger value is better; every other metric is lower-is-better.
HIGHER_IS_BETTER = frozenset(
    {
        "accuracy", "balanced_accuracy", "precision", "recall", "f1", "f1_macro",
        "precision_macro", "recall_macro", "r2", "auc", "roc_auc", "sharpe", "sortino",
        "win_rate", "throughput",
    }
)  # fmt: skip


def higher_is_better(metric: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a larger ``metric`` is better (``test_accuracy`` counts as accuracy)."""
    name = metric.lower()
    if name in extra or name in HIGHER_IS_BETTER:
        return True
    return any(name.endswith("_" + known) for known in HIGHER_IS_BETTER)


def relative_worsening(value: float, baseline: float, higher_better: bool) -> float:
    """How much worse ``value`` is than ``baseline``, as a fraction of ``|baseline|``.

    Negative when ``value`` is better. With a zero baseline the absolute difference is
    used (a relative change of zero is undefined).
    """
    diff = (baseline - value) if higher_better else (value - baseline)
    return diff / abs(baseline) if baseline != 0 else diff


def trading_problems(trading: Mapping[str, Any], where: str) -> list[str]:
    """Problems with the performance keys of ``[models.trading]``, each naming its key."""
    problems = []
    ppy = trading.get("periods_per_year")
    if ppy is not None and (not is_finite_number(ppy) or ppy <= 0):
        problems.append(f"key '{where}.periods_per_year': expected a positive number")
    position = trading.get("position")
    if position is not None and position not in POSITIONS:
        problems.append(f"key '{where}.position': expected one of {', '.join(POSITIONS)}")
    threshold = trading.get("threshold")
    if threshold is not None and (not is_finite_number(threshold) or threshold < 0):
        problems.append(f"key '{where}.threshold': expected a number >= 0")
    return problems


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def regression_metrics(prediction: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² (empty when there is no pair)."""
    y = np.asarray(label, dtype=float)
    p = np.asarray(prediction, dtype=float)
    if y.size == 0:
        return {}
    err = y - p
    mse = float(np.mean(err**2))
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    # A constant label: sklearn's force_finite convention.
    r2 = (1.0 if ss_res == 0 else 0.0) if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(err))), "r2": r2}


def default_positive(classes: set[str], configured: str = "") -> str | None:
    """The positive class for binary metrics: configured, else ``1``/``true`` when seen."""
    if configured:
        return configured
    for candidate in ("1", "true", "True", "yes", "1.0"):
        if candidate in classes:
            return candidate
    return None


def classification_metrics(
    prediction: np.ndarray, label: np.ndarray, positive_label: str = ""
) -> dict[str, float]:
    """Accuracy; macro precision/recall/F1; binary ones for the positive class."""
    y = np.asarray(label).astype(str)
    p = np.asarray(prediction).astype(str)
    if y.size == 0:
        return {}
    classes = sorted(set(y.tolist()) | set(p.tolist()))
    out = {"accuracy": float(np.mean(y == p))}
    per_class = {c: _precision_recall_f1(y, p, c) for c in classes}
    for i, key in enumerate(("precision_macro", "recall_macro", "f1_macro")):
        out[key] = float(np.mean([v[i] for v in per_class.values()]))
    positive = default_positive(set(classes), positive_label)
    if positive is not None:
        precision, recall, f1 = per_class.get(positive) or _precision_recall_f1(y, p, positive)
        out.update({"precision": precision, "recall": recall, "f1": f1})
    return out


def _precision_recall_f1(y: np.ndarray, p: np.ndarray, cls: str) -> tuple[float, float, float]:
    tp = int(np.sum((p == cls) & (y == cls)))
    predicted = int(np.sum(p == cls))
    actual = int(np.sum(y == cls))
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * tp / (predicted + actual) if (predicted + actual) else 0.0
    return precision, recall, f1


def strategy_returns(
    prediction: np.ndarray, label: np.ndarray, *, position: str = "sign", threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, strategy returns) by the documented position rule."""
    p = np.asarray(prediction, dtype=float)
    r = np.asarray(label, dtype=float)
    long = p > threshold
    if position == "long_only":
        pos = long.astype(float)
    else:
        pos = long.astype(float) - (p < -threshold).astype(float)
    return pos, pos * r


def sharpe_ratio(
    returns: np.ndarray, periods_per_year: float = DEFAULT_PERIODS_PER_YEAR
) -> float | None:
    """Annualised Sharpe ratio (risk-free 0, ddof=1); None when undefined."""
    r = np.asarray(returns, dtype=float)
    if r.size < 2:
        return None
    std = float(np.std(r, ddof=1))
    if std == 0 or not math.isfinite(std):
        return None
    return float(np.mean(r)) / std * math.sqrt(periods_per_year)


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall of the compounded equity curve from its running peak (a fraction)."""
    r = np.asarray(returns, dtype=float)
    if r.size == 0:
        return 0.0
    equity = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def win_rate(positions: np.ndarray, returns: np.ndarray) -> float | None:
    """Share of periods with a position whose return is positive; None without trades."""
    traded = np.asarray(positions) != 0
    if not traded.any():
        return None
    return float(np.mean(np.asarray(returns)[traded] > 0))


def trading_metrics(
    prediction: np.ndarray,
    label: np.ndarray,
    *,
    periods_per_year: float = DEFAULT_PERIODS_PER_YEAR,
    position: str = "sign",
    threshold: float = 0.0,
) -> dict[str, float | None]:
    """Sharpe, maximum drawdown, win rate, total return and trades (inputs in time order)."""
    if np.asarray(label).size == 0:
        return {}
    pos, returns = strategy_returns(prediction, label, position=position, threshold=threshold)
    return {
        "sharpe": sharpe_ratio(returns, periods_per_year),
        "max_drawdown": max_drawdown(returns),
        "win_rate": win_rate(pos, returns),
        "total_return": float(np.prod(1.0 + returns) - 1.0),
        "trades": float(np.count_nonzero(pos)),
    }


def system_metrics(
    latency: np.ndarray, error: np.ndarray, window_seconds: float
) -> dict[str, float]:
    """Latency quantiles (when reported), throughput and error rate."""
    lat = np.asarray(latency, dtype=float)
    err = np.asarray(error, dtype=bool)
    out: dict[str, float] = {}
    n = int(err.size)
    if n:
        out["error_rate"] = float(np.mean(err))
        if window_seconds > 0:
            out["throughput"] = n / window_seconds
    reported = lat[np.isfinite(lat)]
    if reported.size:
        out["latency_mean"] = float(np.mean(reported))
        for q in (50, 95, 99):
            out[f"latency_p{q}"] = float(np.percentile(reported, q))
    return out


def compute_metrics(
    outcomes: Any,
    *,
    task: str,
    trading: Mapping[str, Any] | None = None,
    positive_label: str = "",
    window_seconds: float = 0.0,
) -> dict[str, Any]:
    """Every metric of one version's outcomes (arrays ``ts``, ``prediction``, ``label``,
    ``latency``, ``error``), plus ``samples``."""
    ts = np.asarray(outcomes.ts, dtype=float)
    order = np.argsort(ts, kind="stable")
    error = np.asarray(outcomes.error, dtype=bool)[order]
    ok = ~error
    prediction = np.asarray(outcomes.prediction)[order][ok]
    label = np.asarray(outcomes.label)[order][ok]
    metrics: dict[str, Any] = {"samples": int(ok.sum())}
    if task == "classification":
        metrics.update(classification_metrics(prediction, label, positive_label))
    else:
        pred_f = prediction.astype(float)
        label_f = label.astype(float)
        finite = np.isfinite(pred_f) & np.isfinite(label_f)
        metrics.update(regression_metrics(pred_f[finite], label_f[finite]))
        if trading:
            metrics.update(
                trading_metrics(
                    pred_f[finite],
                    label_f[finite],
                    periods_per_year=float(
                        trading.get("periods_per_year", DEFAULT_PERIODS_PER_YEAR)
                    ),
                    position=str(trading.get("position", "sign")),
                    threshold=float(trading.get("threshold", 0.0)),
                )
            )
    latency = np.asarray(outcomes.latency, dtype=float)[order]
    metrics.update(system_metrics(latency, error, window_seconds))
    return metrics
