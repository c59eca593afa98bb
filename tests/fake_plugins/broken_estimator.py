"""Performance estimators that misbehave: one raises in ``estimate``, one hangs."""

from __future__ import annotations

import threading

from mlwarden import hookimpl
from mlwarden.plugins.estimators.cbpe import CBPE

#: Set to let the hanging estimator's thread end (tests set it when done).
RELEASE = threading.Event()


class RaisingEstimator(CBPE):
    name = "raising"

    def _estimate(self, current):
        raise RuntimeError("boom in estimate")


class HangingEstimator(CBPE):
    name = "hanging"

    def _estimate(self, current):
        RELEASE.wait(30)
        return super()._estimate(current)


@hookimpl
def mlwarden_performance_estimators():
    return [RaisingEstimator, HangingEstimator]
