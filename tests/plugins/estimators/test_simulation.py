"""The estimates follow the realized metric under covariate shift, with known truth.

A reference of 20,000 rows, then windows of 1,000: no shift, a harmful shift (the real
accuracy falls, the real MAE rises) and a harmless one (the inputs move, the metric
does not). The estimate must follow the realized value, the realized value must fall
within the estimate's 95% band for most windows, and the estimate must separate the
harmful shift from the harmless one. benchmarks/estimation.py runs the same scenarios
beside NannyML; docs/estimation.md quotes both.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlwarden.plugins.estimators.cbpe import CBPE
from mlwarden.plugins.estimators.dle import DLE

from .scenarios import classification, regression

WINDOWS = 10


def run(estimator, make, shift: str, seed: int):
    rng = np.random.default_rng(seed)
    return [estimator.estimate(make(rng, 1000, shift=shift)) for _ in range(WINDOWS)]


@pytest.mark.parametrize(
    ("classes", "calibration"), [(2, "isotonic"), (2, "platt"), (3, "isotonic")]
)
def test_cbpe_follows_accuracy_under_covariate_shift(classes, calibration):
    def make(rng, rows, shift):
        return classification(rng, rows, shift=shift, classes=classes)

    estimator = CBPE(calibration=calibration).fit(make(np.random.default_rng(1), 20_000, "none"))
    baseline = estimator.baseline["accuracy"]
    phases = {shift: run(estimator, make, shift, 10 + i) for i, shift in
              enumerate(("none", "harmful", "harmless"))}  # fmt: skip
    within = [e.within_band for windows in phases.values() for w in windows for e in w.values()]
    print(f"cbpe within the band: {sum(within)}/{len(within)}")
    # A 95% band: ~95% of the 150 windows x metrics; 85% leaves room for chance (the
    # bands of one window's metrics are correlated) but not for a band that is too
    # narrow (the sampling error alone, without the calibration's, covered ~80%).
    assert sum(within) >= 0.85 * len(within), f"{sum(within)}/{len(within)} within the band"
    for shift, windows in phases.items():
        estimated = np.mean([w["accuracy"].value for w in windows])
        realized = np.mean([w["accuracy"].realized for w in windows])
        assert abs(estimated - realized) < 0.03, (shift, estimated, realized)
    harmful = np.mean([w["accuracy"].value for w in phases["harmful"]])
    harmless = np.mean([w["accuracy"].value for w in phases["harmless"]])
    assert harmful < baseline * 0.9  # the real accuracy fell by more than 10%...
    assert abs(harmless - baseline) < 0.03  # ...and this shift left it alone


def test_dle_follows_mae_under_covariate_shift():
    estimator = DLE().fit(regression(np.random.default_rng(2), 20_000))
    baseline = estimator.baseline["mae"]
    phases = {shift: run(estimator, regression, shift, 20 + i) for i, shift in
              enumerate(("none", "harmful", "harmless"))}  # fmt: skip
    within = {shift: [e.within_band for w in windows for e in w.values()]
              for shift, windows in phases.items()}  # fmt: skip
    print({shift: f"{sum(v)}/{len(v)}" for shift, v in within.items()})
    # Within the reference's support the 95% band holds ~95% of the time; the harmful
    # shift takes inputs past it, where the trees flatten (docs/estimation.md).
    supported = within["none"] + within["harmless"]
    assert sum(supported) >= 0.85 * len(supported), f"{sum(supported)}/{len(supported)}"
    assert sum(within["harmful"]) >= 0.6 * len(within["harmful"]), within["harmful"]
    for shift, windows in phases.items():
        estimated = np.mean([w["mae"].value for w in windows])
        realized = np.mean([w["mae"].realized for w in windows])
        assert abs(estimated - realized) < 0.1 * realized, (shift, estimated, realized)
    harmful = np.mean([w["mae"].value for w in phases["harmful"]])
    harmless = np.mean([w["mae"].value for w in phases["harmless"]])
    assert harmful > baseline * 1.25
    assert abs(harmless - baseline) < 0.05 * baseline
