"""What every built-in performance estimator shares: data checks, realized metrics, bands.

A performance estimator is one small class (see ``cbpe.py``): a ``name``, the
``tasks`` it takes (``"classification"`` and/or ``"regression"``), the ``metrics`` it
estimates, keyword-only options checked with the drift methods' ``check_*`` functions,
``fit(reference) -> Self`` and ``estimate(current) -> dict[str, MetricEstimate]``.
Subclassing :class:`PerformanceEstimator` gives the checks (the reference must have
labels; a classifier's data must carry probabilities), the fitted-state bookkeeping,
and the realized metrics filled in when ``current`` has labels; the estimator then
implements ``_fit`` and ``_estimate`` only (value and sampling error per metric).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, ClassVar, Self

import numpy as np

from ...stats.estimation import classification_scores, regression_scores
from ...types import EstimationData, EstimationTask, MetricEstimate
from ..drift.base import check_number

__all__ = ["PerformanceEstimator", "class_indices", "predicted_classes"]


class PerformanceEstimator:
    """Base of the built-in performance estimators (see the module docstring).

    Subclasses set ``name``, ``tasks``, ``metrics`` and ``test_params``, take their
    options as keyword-only ``__init__`` arguments (``confidence`` is the band's level)
    and implement ``_fit(reference)`` and ``_estimate(current) -> {metric: (value,
    sampling_error)}``.
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[EstimationTask, ...]] = ()
    metrics: ClassVar[tuple[str, ...]] = ()
    #: Option sets the conformance suite instantiates the class with.
    test_params: ClassVar[list[dict[str, Any]]] = [{}]

    confidence: float = 0.95
    #: The realized metrics of the reference (set by ``fit``): what a window's estimate
    #: is compared with to call a degradation.
    baseline: dict[str, float]
    _task: EstimationTask | None = None
    _classes: tuple[str, ...] = ()

    def _check_confidence(self, confidence: object) -> float:
        return check_number(
            self.name,
            "confidence",
            confidence,
            minimum=0.0,
            maximum=1.0,
            open_minimum=True,
            open_maximum=True,
        )

    # -- the contract --------------------------------------------------------------------

    def fit(self, reference: EstimationData) -> Self:
        """Learn from the labelled reference; returns ``self``.

        ValueError naming what is missing: the labels, or a classifier's probabilities.
        """
        self._check(reference, "reference")
        if reference.labels is None:
            raise ValueError(
                f'performance estimator "{self.name}" needs the reference\'s labels '
                "(a label column in the reference data)"
            )
        if reference.rows < 2:
            raise ValueError(
                f'performance estimator "{self.name}" needs at least 2 reference rows, '
                f"got {reference.rows}"
            )
        self._fit(reference)
        self._task, self._classes = reference.task, reference.classes
        self.baseline = self.realized(reference)
        return self

    def estimate(self, current: EstimationData) -> dict[str, MetricEstimate]:
        """The metrics estimated on ``current``, realized ones filled in if it has labels."""
        if self._task is None:
            raise RuntimeError(f'performance estimator "{self.name}": estimate() before fit()')
        self._check(current, "current")
        if current.task != self._task:
            raise ValueError(
                f'performance estimator "{self.name}": current data is {current.task}, '
                f"the reference was {self._task}"
            )
        if current.task == "classification" and current.classes != self._classes:
            raise ValueError(
                f'performance estimator "{self.name}": classes {list(current.classes)} '
                f"differ from the reference's {list(self._classes)}"
            )
        if current.rows == 0:
            raise ValueError(f'performance estimator "{self.name}": no rows to estimate on')
        raw = self._estimate(current)
        realized = self.realized(current) if current.labels is not None else {}
        z = NormalDist().inv_cdf(0.5 + self.confidence / 2)
        out = {}
        for metric, (value, spread) in raw.items():
            lower, upper = value - z * spread, value + z * spread
            if current.task == "classification":  # every classification metric is in [0, 1]
                lower, upper = max(lower, 0.0), min(upper, 1.0)
            else:
                lower = max(lower, 0.0)  # a loss is never negative
            out[metric] = MetricEstimate(
                metric=metric,
                value=float(value),
                lower=float(lower),
                upper=float(upper),
                sampling_error=float(spread),
                realized=realized.get(metric),
            )
        return out

    def realized(self, data: EstimationData) -> dict[str, float]:
        """The metrics computed from ``data``'s labels, as this estimator estimates them."""
        if data.labels is None:
            return {}
        if data.task == "regression":
            return regression_scores(_prediction(self.name, data), data.labels)
        scores = _probabilities(self.name, data)
        label = class_indices(self.name, data.labels, data.classes, "labels")
        return classification_scores(scores, predicted_classes(self.name, data), label)

    # -- for subclasses ------------------------------------------------------------------

    def _fit(self, reference: EstimationData) -> None:
        raise NotImplementedError

    def _estimate(self, current: EstimationData) -> dict[str, tuple[float, float]]:
        raise NotImplementedError

    def _check(self, data: EstimationData, role: str) -> None:
        if not isinstance(data, EstimationData):
            raise TypeError(
                f'performance estimator "{self.name}": {role} must be an EstimationData, '
                f"got {type(data).__name__}"
            )
        if data.task not in self.tasks:
            raise ValueError(
                f'performance estimator "{self.name}" takes {"/".join(self.tasks)} models; '
                f"the {role} data is {data.task}"
            )
        if data.task == "classification":
            _probabilities(self.name, data, role)
        else:
            _prediction(self.name, data, role)
        if data.labels is not None and len(data.labels) != data.rows:
            raise ValueError(
                f'performance estimator "{self.name}": {role} has {len(data.labels)} labels '
                f"for {data.rows} rows"
            )

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({options})"


def _prediction(owner: str, data: EstimationData, role: str = "current") -> np.ndarray:
    if data.prediction is None:
        raise ValueError(
            f'performance estimator "{owner}" needs the predictions of the {role} data'
        )
    values = np.asarray(data.prediction, dtype=np.float64)
    if values.shape != (data.rows,):
        raise ValueError(
            f'performance estimator "{owner}": {role} has {values.size} predictions for '
            f"{data.rows} rows"
        )
    return values


def _probabilities(owner: str, data: EstimationData, role: str = "current") -> np.ndarray:
    if data.probabilities is None:
        raise ValueError(
            f'performance estimator "{owner}" needs the predicted probabilities of a '
            f"classifier (field 'probability' or 'probabilities'); the {role} data has none"
        )
    scores = np.asarray(data.probabilities, dtype=np.float64)
    k = len(data.classes)
    if k < 2 or scores.shape != (data.rows, k):
        raise ValueError(
            f'performance estimator "{owner}": {role} probabilities must be rows x classes '
            f"({data.rows} x {k}, at least 2 classes), got {scores.shape}"
        )
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError(f'performance estimator "{owner}": {role} probabilities must be in [0, 1]')
    return scores


def class_indices(
    owner: str, values: np.ndarray, classes: tuple[str, ...], what: str
) -> np.ndarray:
    """Indices into ``classes`` of class names ``values``; ValueError on an unknown one."""
    index = {c: i for i, c in enumerate(classes)}
    names = np.asarray(values).astype(str)
    unique, inverse = np.unique(names, return_inverse=True)
    unknown = [u for u in unique.tolist() if u not in index]
    if unknown:
        raise ValueError(
            f'performance estimator "{owner}": {what} hold class {unknown[0]!r}, not one of '
            f"{list(classes)}"
        )
    return np.asarray([index[u] for u in unique.tolist()], dtype=np.intp)[inverse]


def predicted_classes(owner: str, data: EstimationData) -> np.ndarray:
    """The predicted class index per row: ``prediction``, else from the probabilities."""
    if data.prediction is not None:
        return class_indices(owner, data.prediction, data.classes, "predictions")
    scores = np.asarray(data.probabilities, dtype=np.float64)
    if scores.shape[1] == 2:
        return (scores[:, 1] >= 0.5).astype(np.intp)
    return np.argmax(scores, axis=1).astype(np.intp)
