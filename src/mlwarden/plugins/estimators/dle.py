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

    Two gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``) learn
    the absolute and the squared error of each reference row from its features and the
    model's prediction; a window's MAE (MSE) is the mean of the predicted absolute
    (squared) errors of its rows. The trees are fitted on ``1 - holdout`` of the
    reference; on the held-out rows the standard deviation ``s`` of the loss around its
    prediction gives the band: the realized mean of ``n`` rows falls within
    ``estimate ± z s / sqrt(n)``.

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes:
        The trees' boosting rounds (100), shrinkage (0.1) and leaves (31).
    holdout:
        Share of the reference kept aside to measure the band (0.25).
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
        {"max_iter": 30, "learning_rate": 0.2, "holdout": 0.3, "confidence": 0.9},
    ]

    def __init__(
        self,
        *,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        holdout: float = 0.25,
        confidence: float = 0.95,
        seed: int = 0,
    ) -> None:
        self.max_iter = check_int(self.name, "max_iter", max_iter, minimum=1, maximum=10_000)
        self.learning_rate = check_number(
            self.name, "learning_rate", learning_rate, minimum=0.0, open_minimum=True
        )
        self.max_leaf_nodes = check_int(self.name, "max_leaf_nodes", max_leaf_nodes, minimum=2)
        self.holdout = check_number(self.name, "holdout", holdout, minimum=0.05, maximum=0.5)
        self.confidence = self._check_confidence(confidence)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self._models: dict[str, Any] = {}
        self._scale: dict[str, float] = {}
        self._floor: dict[str, float] = {}

    @staticmethod
    def _inputs(data: EstimationData) -> np.ndarray:
        prediction = np.asarray(data.prediction, dtype=np.float64)[:, None]
        return np.hstack([np.asarray(data.features, dtype=np.float64), prediction])

    def _fit(self, reference: EstimationData) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        x = self._inputs(reference)
        error = np.asarray(reference.labels, dtype=np.float64) - x[:, -1]
        keep = np.isfinite(error)
        x, error = x[keep], error[keep]
        if len(error) < 20:
            raise ValueError(
                f'performance estimator "{self.name}" needs at least 20 reference rows with '
                f"a finite label and prediction, got {len(error)}"
            )
        rng = np.random.default_rng(self.seed)
        held = rng.random(len(error)) < self.holdout
        if held.sum() < 10 or (~held).sum() < 10:
            raise ValueError(
                f'performance estimator "{self.name}": the reference is too small to keep '
                f"a holdout of {self.holdout:g} (at least 10 rows on each side)"
            )
        for metric, loss in (("mae", np.abs(error)), ("mse", error**2)):
            self._models[metric] = HistGradientBoostingRegressor(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=False,
                random_state=self.seed,
            ).fit(x[~held], loss[~held])
        # The band: the loss of a row varies around its prediction by a variance that
        # depends on the row (heteroscedastic); its shape comes from the two models
        # (Var |e| = E e^2 - (E |e|)^2, Var e^2 ~ (E e^2)^2) and its scale from the
        # holdout, where the realized spread is measured.
        mae, mse = self._predict(x[held])
        for metric, loss, shape in (
            ("mae", np.abs(error[held]), _mae_variance(mae, mse)),
            ("mse", error[held] ** 2, mse**2),
        ):
            fitted = mae if metric == "mae" else mse
            observed = float(np.mean((loss - fitted) ** 2))
            expected = float(np.mean(shape))
            self._scale[metric] = observed / expected if expected > 0 else 0.0
            self._floor[metric] = observed

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted absolute and squared error of each row (never below 0)."""
        mae = np.maximum(self._models["mae"].predict(x), 0.0)
        mse = np.maximum(self._models["mse"].predict(x), 0.0)
        return mae, mse

    def _estimate(self, current: EstimationData) -> dict[str, tuple[float, float]]:
        x = self._inputs(current)
        n = len(x)
        mae, mse = self._predict(x)
        out = {}
        for metric, fitted, shape in (
            ("mae", mae, _mae_variance(mae, mse)),
            ("mse", mse, mse**2),
        ):
            variance = float(np.mean(shape)) * self._scale[metric]
            if not variance > 0:
                variance = self._floor[metric]
            out[metric] = (float(np.mean(fitted)), math.sqrt(variance / n))
        return out


def _mae_variance(mae: np.ndarray, mse: np.ndarray) -> np.ndarray:
    return np.maximum(mse - mae**2, 0.0)


@hookimpl
def mlwarden_performance_estimators() -> list[type]:
    return [DLE]
