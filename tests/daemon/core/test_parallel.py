"""map_threads: the loop's results, in order, on several threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mlwarden.daemon.core.parallel import (
    PARALLEL_MIN_ROWS,
    default_workers,
    map_threads,
    workers_for,
)
from mlwarden.plugins.drift.ks import KolmogorovSmirnov
from mlwarden.types import FeatureData


def test_results_come_back_in_order_from_more_than_one_thread():
    seen: set[int] = set()
    barrier = threading.Barrier(2, timeout=5)

    def work(i: int) -> int:
        if i < 2:  # both first items must be running at once, or this times out
            barrier.wait()
        seen.add(threading.get_ident())
        return i * i

    assert map_threads(work, range(10), workers=2) == [i * i for i in range(10)]
    assert len(seen) == 2


def test_one_worker_is_the_plain_loop_in_the_calling_thread():
    caller = threading.get_ident()
    assert map_threads(lambda i: threading.get_ident() == caller, range(3), workers=1) == [
        True,
        True,
        True,
    ]


def test_an_exception_propagates():
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("feature 3 is constant")
        return i

    with pytest.raises(ValueError, match="feature 3"):
        map_threads(work, range(6), workers=2)


def test_default_workers_is_bounded():
    assert 1 <= default_workers() <= 4


def test_threaded_drift_scores_equal_the_serial_ones():
    rng = np.random.default_rng(5)
    pairs = []
    for j in range(8):
        method = KolmogorovSmirnov().fit(
            FeatureData(f"f{j}", "numeric", sample=rng.normal(size=20_000))
        )
        current = FeatureData(f"f{j}", "numeric", sample=rng.normal(0.02 * j, size=5_000))
        pairs.append((method, current))
    serial = [m.score(d).to_dict() for m, d in pairs]
    assert map_threads(lambda p: p[0].score(p[1]).to_dict(), pairs, workers=2) == serial


def test_small_samples_stay_on_one_thread():
    assert workers_for(5_000) == 1
    assert workers_for(PARALLEL_MIN_ROWS) == default_workers()
