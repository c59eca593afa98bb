"""Confidence-based performance estimation (CBPE) of a binary or multiclass classifier."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...stats.estimation import (
    CLASSIFICATION_METRICS,
    classification_spread,
    expected_classification_batch,
    expected_classification_scores,
)
from ...types import EstimationData, EstimationTask
from ..drift.base import check_choice, check_int
from .base import PerformanceEstimator, class_indices, predicted_classes

__all__ = ["CBPE"]

#: Probabilities are kept this far from 0 and 1 before the logit of Platt scaling.
_EPSILON = 1e-6


class CBPE(PerformanceEstimator):
    """Estimate accuracy, precision, recall, F1 and ROC AUC from calibrated probabilities.

    Each class's probability is calibrated on the reference against its labels (one
    class against the rest; isotonic regression or Platt scaling, scikit-learn), the
    calibrated rows are normalised to sum to 1, and the metrics of a window are read
    from its expected confusion matrix (``mlwarden.stats.estimation``). The band adds
    two variances: the spread of the realized metrics when the window's labels are
    drawn from the calibrated probabilities (sampling error), and the calibration's
    own error, the spread of the estimate over calibrations fitted on bootstrap
    resamples of the reference.

    Parameters
    ----------
    calibration:
        ``"isotonic"`` (default), ``"platt"`` or ``"none"`` (the scores are trusted).
    confidence:
        Level of the band around each estimate (0.95).
    draws:
        Label draws that measure the sampling error (100).
    bootstrap:
        Calibrations on resamples of the reference that measure the calibration's
        error (20; 0 leaves it out of the band).
    seed:
        Seed of the draws and resamples (the band is reproducible).

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import EstimationData
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = np.where(rng.uniform(size=2000) < p, "1", "0")
    >>> def data(p, y=None):
    ...     return EstimationData("classification", np.zeros((len(p), 0)),
    ...                           probabilities=np.c_[1 - p, p], classes=("0", "1"),
    ...                           labels=y)
    >>> estimator = CBPE().fit(data(p, y))
    >>> round(estimator.estimate(data(p[:500]))["accuracy"].value, 2)
    0.75

    References
    ----------
    NannyML, "Confidence-based Performance Estimation (CBPE)",
    https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html
    """

    name = "cbpe"
    tasks: ClassVar[tuple[EstimationTask, ...]] = ("classification",)
    metrics = CLASSIFICATION_METRICS
    test_params: ClassVar[list[dict[str, Any]]] = [
        {},
        {"calibration": "platt", "confidence": 0.9},
        {"draws": 50, "bootstrap": 0, "seed": 3},
    ]

    def __init__(
        self,
        *,
        calibration: str = "isotonic",
        confidence: float = 0.95,
        draws: int = 100,
        bootstrap: int = 20,
        seed: int = 0,
    ) -> None:
        self.calibration = check_choice(
            self.name, "calibration", calibration, ("isotonic", "platt", "none")
        )
        self.confidence = self._check_confidence(confidence)
        self.draws = check_int(self.name, "draws", draws, minimum=10, maximum=100_000)
        self.bootstrap = check_int(self.name, "bootstrap", bootstrap, minimum=0, maximum=1000)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self._calibrators: list[Any] = []
        self._resampled: list[list[Any]] = []

    def _fit(self, reference: EstimationData) -> None:
        scores = np.asarray(reference.probabilities, dtype=np.float64)
        assert reference.labels is not None  # fit() checked it
        label = class_indices(self.name, reference.labels, reference.classes, "labels")
        # Binary: the positive column alone; the negative one is its complement.
        columns = [1] if scores.shape[1] == 2 else range(scores.shape[1])
        self._calibrators = [self._calibrator(scores[:, j], label == j) for j in columns]
        self._resampled = []
        if self.calibration == "none":
            return  # nothing fitted, nothing to resample
        rng = np.random.default_rng(self.seed)
        for _ in range(self.bootstrap):
            rows = rng.integers(0, len(label), len(label))
            self._resampled.append(
                [self._calibrator(scores[rows, j], label[rows] == j) for j in columns]
            )

    def _calibrator(self, score: np.ndarray, truth: np.ndarray) -> Any:
        if self.calibration == "none" or truth.all() or not truth.any():
            return None  # nothing to learn from one class: the scores stand
        if self.calibration == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
                score, truth.astype(np.float64)
            )
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e6).fit(_logit(score)[:, None], truth)

    def calibrate(self, scores: np.ndarray, calibrators: list[Any] | None = None) -> np.ndarray:
        """The calibrated probabilities of ``scores`` (rows x classes), rows summing to 1."""
        columns = [1] if scores.shape[1] == 2 else range(scores.shape[1])
        out = np.array(scores, dtype=np.float64, copy=True)
        chosen = self._calibrators if calibrators is None else calibrators
        for j, calibrator in zip(columns, chosen, strict=True):
            if calibrator is None:
                continue
            if self.calibration == "isotonic":
                out[:, j] = calibrator.predict(scores[:, j])
            else:
                out[:, j] = calibrator.predict_proba(_logit(scores[:, j])[:, None])[:, 1]
        if scores.shape[1] == 2:
            out[:, 0] = 1.0 - out[:, 1]
            return out
        total = out.sum(axis=1, keepdims=True)
        # A row calibrated to all zeros keeps its raw scores (nothing better is known).
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), scores)

    def _estimate(self, current: EstimationData) -> dict[str, tuple[float, float]]:
        scores = np.asarray(current.probabilities, dtype=np.float64)
        calibrated = self.calibrate(scores)
        predicted = predicted_classes(self.name, current)
        values = expected_classification_scores(scores, calibrated, predicted)
        spread = classification_spread(
            scores,
            calibrated,
            predicted,
            draws=self.draws,
            rng=np.random.default_rng(self.seed),
        )
        if not self._resampled:
            return {m: (values[m], spread[m]) for m in self.metrics}
        resampled = expected_classification_batch(
            scores, np.stack([self.calibrate(scores, c) for c in self._resampled]), predicted
        )
        out = {}
        for m in self.metrics:
            finite = resampled[m][np.isfinite(resampled[m])]
            model = float(np.std(finite)) if finite.size > 1 else 0.0
            out[m] = (values[m], float(np.hypot(spread[m], model)))
        return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    return np.log(p / (1.0 - p))


@hookimpl
def mlwarden_performance_estimators() -> list[type]:
    return [CBPE]
