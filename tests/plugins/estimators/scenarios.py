"""Simulated models with known truth for the performance estimators' tests.

No concept drift: ``P(y | x)`` stays fixed, only the distribution of ``x`` moves.

- classification: two features; the true ``P(class | x)`` is a softmax of linear
  functions of ``x0`` (binary: ``sigmoid(3 x0)``); the model's scores are a
  miscalibrated but monotone function of the same (so calibration on the reference
  recovers the truth). A *harmful* shift squeezes ``x0`` towards the decision boundary
  (accuracy falls); a *harmless* one moves ``x1``, which the labels do not depend on.
- regression: ``y = 2 x0 + x1 + noise`` with noise sd ``0.2 + |x0|``, the model
  predicts ``2 x0 + x1``. Harmful: ``x0`` spreads out by half (the MAE rises); harmless:
  ``x1`` moves.
"""

from __future__ import annotations

import numpy as np

from mlwarden.types import EstimationData

__all__ = ["classification", "regression"]

Shift = str  # "none" | "harmful" | "harmless"


def _features(rng: np.random.Generator, rows: int, shift: Shift, squeeze: float) -> np.ndarray:
    x = rng.normal(0.0, 1.0, size=(rows, 2))
    if shift == "harmful":
        x[:, 0] *= squeeze
    elif shift == "harmless":
        x[:, 1] += 1.5
    return x


def classification(
    rng: np.random.Generator,
    rows: int,
    *,
    shift: Shift = "none",
    classes: int = 2,
    labels: bool = True,
) -> EstimationData:
    x = _features(rng, rows, shift, squeeze=0.25)
    if classes == 2:
        truth1 = 1.0 / (1.0 + np.exp(-3.0 * x[:, 0]))
        truth = np.c_[1.0 - truth1, truth1]
        score1 = 1.0 / (1.0 + np.exp(-1.5 * x[:, 0] - 0.3))  # under-confident and biased
        scores = np.c_[1.0 - score1, score1]
    else:
        slopes = np.linspace(-3.0, 3.0, classes)
        logits = slopes[None, :] * x[:, [0]] - 0.5 * slopes[None, :] ** 2 / 3.0
        truth = np.exp(logits - logits.max(axis=1, keepdims=True))
        truth /= truth.sum(axis=1, keepdims=True)
        tempered = np.exp(0.6 * (logits - logits.max(axis=1, keepdims=True)))
        scores = tempered / tempered.sum(axis=1, keepdims=True)
    names = tuple(str(c) for c in range(classes))
    y = None
    if labels:
        cumulative = np.cumsum(truth, axis=1)
        drawn = (rng.random((rows, 1)) > cumulative).sum(axis=1).clip(0, classes - 1)
        y = np.asarray(names, dtype=object)[drawn]
    return EstimationData(
        "classification",
        x,
        ("x0", "x1"),
        probabilities=scores,
        classes=names,
        labels=y,
    )


def regression(
    rng: np.random.Generator, rows: int, *, shift: Shift = "none", labels: bool = True
) -> EstimationData:
    x = _features(rng, rows, shift, squeeze=1.5)
    prediction = 2.0 * x[:, 0] + x[:, 1]
    y = prediction + rng.normal(0.0, 0.2 + np.abs(x[:, 0])) if labels else None
    return EstimationData("regression", x, ("x0", "x1"), prediction=prediction, labels=y)
