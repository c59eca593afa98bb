"""Performance metrics from labels, and their expectation from calibrated probabilities.

The realized metrics of a classifier (``classification_scores``) and a regressor
(``regression_scores``) with the definitions the performance estimators estimate:

- ``accuracy``; ``precision``, ``recall``, ``f1`` of the positive class for a binary
  model, their unweighted mean over the classes for a multiclass one (macro);
- ``roc_auc``: the Mann-Whitney form of the area under the ROC curve (ties count
  half), one class against the rest and averaged over the classes when multiclass
  (scikit-learn's ``roc_auc_score(..., multi_class="ovr", average="macro")``);
- ``mae`` and ``mse``.

``expected_classification_scores`` is confidence-based performance estimation (CBPE,
NannyML): with calibrated probabilities ``c`` (row ``i``'s true class is ``k`` with
probability ``c[i, k]``), the expected confusion matrix is ``E[M[k, j]] = sum of
c[i, k] over the rows predicted j``, and each metric is read from it (ratios of
expectations); the expected ROC AUC takes the model's own scores as the ranking and
``c`` as the chance that each row is a positive. ``classification_spread`` is the
standard deviation of the realized metrics around it: labels drawn from ``c`` (they
are independent given the scores) and the metrics computed per draw, vectorised.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "classification_scores",
    "classification_spread",
    "expected_classification_batch",
    "expected_classification_scores",
    "regression_scores",
]

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS: tuple[str, ...] = ("mae", "mse")


def regression_scores(prediction: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Realized ``mae`` and ``mse`` (NaN when there is no row)."""
    error = np.asarray(label, dtype=np.float64) - np.asarray(prediction, dtype=np.float64)
    if error.size == 0:
        return {"mae": float("nan"), "mse": float("nan")}
    return {"mae": float(np.mean(np.abs(error))), "mse": float(np.mean(error**2))}


def _auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUC of ``scores`` for each row of ``positive`` (draws x rows, weights in [0, 1]).

    Mann-Whitney with mid-ranks: ``(sum of positive ranks - n1 (n1 + 1) / 2) / (n1 n0)``,
    which holds for fractional (expected) labels too. NaN when a side is empty.
    """
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n1 = positive.sum(axis=-1)
    n0 = positive.shape[-1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        # Expected ranks of positives: sum_i w_i r_i; expected n1 (n1 + 1) / 2 uses the
        # expected count, exact for 0/1 labels and the usual plug-in for weights.
        auc = (positive @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def _from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall, F1 from confusion matrices ``[..., true, predicted]``.

    Binary (2 x 2): of the positive class (index 1); otherwise macro averages. A
    precision or recall with an empty denominator is 0 (scikit-learn's zero_division=0).
    """
    total = confusion.sum(axis=(-2, -1))
    diagonal = np.diagonal(confusion, axis1=-2, axis2=-1)
    predicted = confusion.sum(axis=-2)
    actual = confusion.sum(axis=-1)

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)

    precision = ratio(diagonal, predicted)
    recall = ratio(diagonal, actual)
    f1 = ratio(2 * diagonal, predicted + actual)
    if confusion.shape[-1] == 2:
        pick = (precision[..., 1], recall[..., 1], f1[..., 1])
    else:
        pick = (precision.mean(axis=-1), recall.mean(axis=-1), f1.mean(axis=-1))
    return {
        "accuracy": ratio(diagonal.sum(axis=-1), total),
        "precision": pick[0],
        "recall": pick[1],
        "f1": pick[2],
    }


def _roc_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Binary: the AUC of the last score column; multiclass: the macro one-vs-rest AUC.

    ``positive`` is ``[..., rows, classes]`` (one-hot labels or probabilities).
    """
    k = scores.shape[1]
    if k == 2:
        return _auc(scores[:, 1], positive[..., 1])
    per_class = np.stack([_auc(scores[:, j], positive[..., j]) for j in range(k)], axis=-1)
    with np.errstate(invalid="ignore"):
        return np.nanmean(per_class, axis=-1) if np.isfinite(per_class).any() else per_class[..., 0]


def classification_scores(
    scores: np.ndarray, predicted: np.ndarray, label: np.ndarray
) -> dict[str, float]:
    """Realized metrics: ``scores`` rows x classes, ``predicted``/``label`` class indices."""
    k = scores.shape[1]
    confusion = np.zeros((k, k))
    np.add.at(confusion, (label, predicted), 1.0)
    out = {name: float(v) for name, v in _from_confusion(confusion).items()}
    onehot = np.zeros(scores.shape)
    onehot[np.arange(len(label)), label] = 1.0
    out["roc_auc"] = float(_roc_auc(scores, onehot))
    return out


def expected_classification_scores(
    scores: np.ndarray, calibrated: np.ndarray, predicted: np.ndarray
) -> dict[str, float]:
    """CBPE: the metrics of the expected confusion matrix and the expected ROC AUC."""
    return {
        m: float(v) for m, v in expected_classification_batch(scores, calibrated, predicted).items()
    }


def expected_classification_batch(
    scores: np.ndarray, calibrated: np.ndarray, predicted: np.ndarray
) -> dict[str, np.ndarray]:
    """``expected_classification_scores`` of calibrations ``[..., rows, classes]`` at once."""
    k = calibrated.shape[-1]
    confusion = np.zeros((*calibrated.shape[:-2], k, k))
    for j in range(k):  # column j: the rows predicted j, by their chances of each class
        confusion[..., :, j] = calibrated[..., predicted == j, :].sum(axis=-2)
    out = _from_confusion(confusion)
    out["roc_auc"] = _roc_auc(scores, calibrated)
    return out


def classification_spread(
    scores: np.ndarray,
    calibrated: np.ndarray,
    predicted: np.ndarray,
    *,
    draws: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Standard deviation of each realized metric when labels are drawn from ``calibrated``."""
    n, k = calibrated.shape
    if k == 2:
        labels = (rng.random((draws, n)) < calibrated[None, :, 1]).astype(np.intp)
    else:
        cumulative = np.cumsum(calibrated, axis=1)
        cumulative[:, -1] = 1.0
        u = rng.random((draws, n, 1))
        labels = (u > cumulative[None, :, :]).sum(axis=2)  # draws x rows, class indices
        labels = np.minimum(labels, k - 1)
    confusion = np.zeros((draws, k, k))
    flat = (np.arange(draws)[:, None] * k + labels) * k + predicted[None, :]
    confusion.reshape(-1)[:] = np.bincount(flat.ravel(), minlength=draws * k * k)
    out = {name: float(np.std(v)) for name, v in _from_confusion(confusion).items()}
    # Class by class: a draws x rows x classes one-hot array would not fit in memory.
    per_class = [_auc(scores[:, j], (labels == j).astype(np.float64)) for j in range(k)]
    if k == 2:
        auc = per_class[1]
    else:
        stacked = np.stack(per_class, axis=-1)
        with np.errstate(invalid="ignore"):
            auc = np.nanmean(stacked, axis=-1) if np.isfinite(stacked).any() else stacked[..., 0]
    out["roc_auc"] = float(np.nanstd(auc)) if np.isfinite(auc).any() else float("nan")
    return out
