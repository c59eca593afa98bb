"""CBPE's own checks: the expected confusion matrix against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.plugins.estimators.cbpe import CBPE
from mlwarden.types import EstimationData


def binary(p: np.ndarray, y: np.ndarray | None = None) -> EstimationData:
    return EstimationData(
        "classification", np.zeros((len(p), 0)), probabilities=np.c_[1 - p, p],
        classes=("no", "yes"), labels=y,
    )  # fmt: skip


def test_uncalibrated_mode_reads_the_scores_as_they_are():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=4000)
    y = np.where(rng.uniform(size=4000) < p, "yes", "no")
    estimator = CBPE(calibration="none").fit(binary(p, y))
    current = rng.uniform(size=1000)
    result = estimator.estimate(binary(current))
    predicted = current >= 0.5
    tp = current[predicted].sum()
    fp = (1 - current[predicted]).sum()
    fn = current[~predicted].sum()
    assert result["accuracy"].value == pytest.approx(np.mean(np.maximum(current, 1 - current)))
    assert result["precision"].value == pytest.approx(tp / (tp + fp))
    assert result["recall"].value == pytest.approx(tp / (tp + fn))
    assert result["f1"].value == pytest.approx(2 * tp / (2 * tp + fp + fn))


@pytest.mark.parametrize("calibration", ["isotonic", "platt"])
def test_calibration_repairs_overconfident_scores(calibration):
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.2, 0.8, size=20_000)
    y = np.where(rng.uniform(size=truth.size) < truth, "yes", "no")
    logit = np.log(truth / (1 - truth))
    scores = 1 / (1 + np.exp(-2.0 * logit))  # twice as confident as it should be
    estimator = CBPE(calibration=calibration).fit(binary(scores, y))
    calibrated = estimator.calibrate(np.c_[1 - scores, scores])[:, 1]
    assert np.mean(np.abs(calibrated - truth)) < 0.03
    assert np.allclose(estimator.calibrate(np.c_[1 - scores, scores]).sum(axis=1), 1.0)


def test_the_band_is_the_spread_of_realized_accuracy():
    rng = np.random.default_rng(2)
    p = rng.uniform(size=800)
    estimator = CBPE(calibration="none", draws=2000).fit(
        binary(p, np.where(rng.uniform(size=800) < p, "yes", "no"))
    )
    result = estimator.estimate(binary(p))["accuracy"]
    q = np.maximum(p, 1 - p)  # each row is right with this chance
    assert result.sampling_error == pytest.approx(np.sqrt(np.sum(q * (1 - q))) / p.size, rel=0.1)
