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

#: Rows of a window on which the whole reference's and the half's trees are compared.
_SUBSAMPLE = 256


class DLE(PerformanceEstimator):
    """Estimate MAE and MSE with a model of the loss fitted on the reference.

    Gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``) learn the
    absolute and the squared error of each reference row from its features and the
    model's prediction, on the whole reference (as NannyML's LightGBM does); a window's
    MAE (MSE) is the mean of the predicted absolute (squared) errors of its rows.

    The band adds two variances. The sampling error of the window's ``n`` rows: the loss
    of a row varies around its prediction by a variance whose shape comes from the two
    models and whose scale from rows the trees never saw (a second pair of trees is
    fitted on a random half of the reference and measured on the other half), divided
    by ``n``. And the loss model's own error: the whole reference's trees ``F`` are
    close to the mean of two halves' trees, so the half's estimate ``A`` of the window
    differs from ``F``'s by about half the difference of two independent fits, and
    ``(A - F)^2`` estimates the variance of ``F``'s estimate.

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes:
        The trees' boosting rounds (50), shrinkage (0.2) and leaves (31).
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
        #: The trees of the absolute and the squared error: of the whole reference (the
        #: estimate) and of one half of it (the band).
        self._models: tuple[Any, Any] = (None, None)
        self._half: tuple[Any, Any] = (None, None)
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
        self._models = self._trees(x, error)  # the estimate: the whole reference
        self._half = self._trees(x[half], error[half])  # the band: half of it
        # The sampling part of the band: the loss of a row varies around its prediction
        # by a variance that depends on the row (heteroscedastic); its shape comes from
        # the two models (Var |e| = E e^2 - (E |e|)^2, Var e^2 ~ (E e^2)^2) and its scale
        # from the other half's rows, predicted by trees that never saw them.
        mae, mse = _predict(self._half, x[~half])
        for metric, loss, fitted, shape in (
            ("mae", np.abs(error[~half]), mae, _mae_variance(mae, mse)),
            ("mse", error[~half] ** 2, mse, mse**2),
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
        mae, mse = _predict(self._models, x)
        # The loss model's own error: the whole reference's trees F against the trees A
        # of one half. F is close to the mean of A and of a B on the other half, so
        # A - F ~ (A - B) / 2, whose square estimates Var(F). Compared on an evenly
        # spaced subsample of the window (the difference is smooth; this keeps the
        # half's predictions cheap).
        sub = x[:: max(1, n // _SUBSAMPLE)]
        whole, part = _predict(self._models, sub), _predict(self._half, sub)
        out = {}
        for i, (metric, fitted, shape) in enumerate(
            (("mae", mae, _mae_variance(mae, mse)), ("mse", mse, mse**2))
        ):
            variance = float(np.mean(shape)) * self._scale[metric]
            if not variance > 0:
                variance = self._floor[metric]
            model = float(np.mean(part[i]) - np.mean(whole[i])) ** 2
            out[metric] = (float(np.mean(fitted)), math.sqrt(variance / n + model))
        return out


def _predict(trees: tuple[Any, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted absolute and squared error of each row (never below 0)."""
    return np.maximum(trees[0].predict(x), 0.0), np.maximum(trees[1].predict(x), 0.0)


def _mae_variance(mae: np.ndarray, mse: np.ndarray) -> np.ndarray:
    return np.maximum(mse - mae**2, 0.0)


@hookimpl
def mlwarden_performance_estimators() -> list[type]:
    return [DLE]
