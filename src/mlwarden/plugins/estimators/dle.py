"""Direct loss estimation (DLE) of a regression model's MAE and MSE."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from ...hookspecs import hookimpl
from ...stats.estimation import REGRESSION_METRICS
from ...types import EstimationData, EstimationTask
from ..drift.base import check_int, check_number
from .base import PerformanceEstimator

__all__ = ["DLE"]


class DLE(PerformanceEstimator):
    """Estimate MAE and MSE with a model of the loss fitted on the reference.

    Gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``) learn the
    absolute and the squared error of each reference row from its features and the
    model's prediction; a window's MAE (MSE) is the mean of the predicted absolute
    (squared) errors of its rows. The reference is split in two halves and each half
    fits its own pair of trees (cross-fitting): every reference row is then predicted
    by trees that never saw it, which measures the loss's spread honestly, and the
    estimate is the mean of both halves' predictions (the whole reference is used).
    Each half boosts 50 rounds at a shrinkage of 0.2: as accurate here as 100 at 0.1,
    at half the cost of a prediction (benchmarks/estimation.py).

    The band adds two variances: the sampling error of the window's ``n`` rows (the
    loss of a row varies around its prediction, by a variance whose shape comes from
    the two models and whose scale from the out-of-fold rows, divided by ``n``) and the
    loss model's own error, measured on the window by how far the two halves' estimates
    disagree (``(a - b)^2 / 4`` is the variance of their mean).

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes:
        Each half's boosting rounds (50), shrinkage (0.2) and leaves (31).
    confidence:
        Level of the band around each estimate (0.95).
    seed:
        Seed of the split and of the trees.

    Example
    -------
    >>> import numpy as np
    >>> from mlwarden.types import EstimationData
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, size=(4000, 1))
    >>> y = rng.normal(0, 0.1 + np.abs(x[:, 0]))          # noisier far from 0
    >>> data = lambda x, y=None: EstimationData("regression", x, ("x",),
    ...                                         prediction=np.zeros(len(x)), labels=y)
    >>> estimator = DLE().fit(data(x, y))
    >>> near, far = np.full((500, 1), 0.05), np.full((500, 1), 0.95)
    >>> estimator.estimate(data(near))["mae"].value < estimator.estimate(data(far))["mae"].value
    True

    References
    ----------
    NannyML, "Direct Loss Estimation (DLE)",
    https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html
    """

    name = "dle"
    tasks: ClassVar[tuple[EstimationTask, ...]] = ("regression",)
    metrics = REGRESSION_METRICS
    test_params: ClassVar[list[dict[str, Any]]] = [
        {},
        {"max_iter": 30, "learning_rate": 0.2, "confidence": 0.9},
    ]

    def __init__(
        self,
        *,
        max_iter: int = 50,
        learning_rate: float = 0.2,
        max_leaf_nodes: int = 31,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.max_iter = check_int(self.name, "max_iter", max_iter, minimum=1, maximum=10_000)
        self.learning_rate = check_number(
            self.name, "learning_rate", learning_rate, minimum=0.0, open_minimum=True
        )
        self.max_leaf_nodes = check_int(self.name, "max_leaf_nodes", max_leaf_nodes, minimum=2)
        self.confidence = self._check_confidence(confidence)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        #: Per half of the reference: the trees of the absolute and the squared error.
        self._halves: list[tuple[Any, Any]] = []
        self._scale: dict[str, float] = {}
        self._floor: dict[str, float] = {}

    @staticmethod
    def _inputs(data: EstimationData) -> np.ndarray:
        prediction = np.asarray(data.prediction, dtype=np.float64)[:, None]
        return np.hstack([np.asarray(data.features, dtype=np.float64), prediction])

    def _fit(self, reference: EstimationData) -> None:
        x = self._inputs(reference)
        error = np.asarray(reference.labels, dtype=np.float64) - x[:, -1]
        keep = np.isfinite(error)
        x, error = x[keep], error[keep]
        if len(error) < 40:
            raise ValueError(
                f'performance estimator "{self.name}" needs at least 40 reference rows with '
                f"a finite label and prediction, got {len(error)}"
            )
        rng = np.random.default_rng(self.seed)
        half = rng.permutation(len(error)) % 2 == 1
        self._halves = [self._trees(x[side], error[side]) for side in (~half, half)]
        # The sampling part of the band: the loss of a row varies around its prediction
        # by a variance that depends on the row (heteroscedastic); its shape comes from
        # the two models (Var |e| = E e^2 - (E |e|)^2, Var e^2 ~ (E e^2)^2) and its scale
        # from the out-of-fold rows (each half predicted by the other half's trees).
        mae, mse = np.empty(len(error)), np.empty(len(error))
        for side, trees in zip((half, ~half), self._halves, strict=True):
            mae[side], mse[side] = _predict(trees, x[side])
        for metric, loss, fitted, shape in (
            ("mae", np.abs(error), mae, _mae_variance(mae, mse)),
            ("mse", error**2, mse, mse**2),
        ):
            observed = float(np.mean((loss - fitted) ** 2))
            expected = float(np.mean(shape))
            self._scale[metric] = observed / expected if expected > 0 else 0.0
            self._floor[metric] = observed

    def _trees(self, x: np.ndarray, error: np.ndarray) -> tuple[Any, Any]:
        """The trees of the absolute and of the squared error fitted on these rows."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        def fit(loss: np.ndarray) -> Any:
            return HistGradientBoostingRegressor(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=False,
                random_state=self.seed,
            ).fit(x, loss)

        return fit(np.abs(error)), fit(error**2)

    def _estimate(self, current: EstimationData) -> dict[str, tuple[float, float]]:
        x = self._inputs(current)
        n = len(x)
        halves = [_predict(trees, x) for trees in self._halves]
        mae, mse = ((halves[0][i] + halves[1][i]) / 2 for i in (0, 1))
        out = {}
        for i, (metric, fitted, shape) in enumerate(
            (("mae", mae, _mae_variance(mae, mse)), ("mse", mse, mse**2))
        ):
            variance = float(np.mean(shape)) * self._scale[metric]
            if not variance > 0:
                variance = self._floor[metric]
            # The halves' trees are fitted on disjoint rows: their estimates a and b err
            # independently, and (a - b)^2 / 4 is an unbiased estimate of the variance of
            # their mean, the loss model's own error on this window.
            a, b = (float(np.mean(h[i])) for h in halves)
            out[metric] = (float(np.mean(fitted)), math.sqrt(variance / n + (a - b) ** 2 / 4))
        return out


def _predict(trees: tuple[Any, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted absolute and squared error of each row (never below 0)."""
    return np.maximum(trees[0].predict(x), 0.0), np.maximum(trees[1].predict(x), 0.0)


def _mae_variance(mae: np.ndarray, mse: np.ndarray) -> np.ndarray:
    return np.maximum(mse - mae**2, 0.0)


@hookimpl
def mlwarden_performance_estimators() -> list[type]:
    return [DLE]
