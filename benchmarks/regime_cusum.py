"""Detection delay and false alarms of the regime trigger's variance CUSUM.

Run: ``python benchmarks/regime_cusum.py``. Prints, for a few thresholds, the false
alarms per 10,000 steps on stationary Gaussian and Student-t(5) returns, and the
detection delay (median, 90th percentile) for a variance ratio of 2 up and down,
measured on series with changes every 2,000 steps. The numbers in docs/training.md
come from this script (fixed seeds).
"""

from __future__ import annotations

import argparse

import numpy as np

from mlwarden.stats.cusum import VolatilityCusum

CHANGES = (2000, 4000, 6000, 8000)
SIGMAS = (1.0, np.sqrt(2.0), 1.0, np.sqrt(0.5), 1.0)
WINDOW = 700  # an alarm within this many steps after a change detects it


def measure(threshold: float, warmup: int, series: int = 40) -> dict[str, float]:
    detector = VolatilityCusum(threshold=threshold, warmup=warmup)
    gauss = detector.detect(np.random.default_rng(42).normal(size=200_000))
    heavy = detector.detect(np.random.default_rng(43).standard_t(5, size=200_000))
    delays: dict[str, list[int]] = {"up": [], "down": []}
    missed = extra = 0
    for seed in range(series):
        rng = np.random.default_rng(500 + seed)
        x = np.concatenate([rng.normal(0.0, s, 2000) for s in SIGMAS])
        alarms = detector.detect(x)
        for change in CHANGES:
            hits = [a for a in alarms if 0 <= a.index - change < WINDOW]
            if hits:
                delays[hits[0].direction].append(hits[0].index - change)
            else:
                missed += 1
        extra += sum(1 for a in alarms if not any(0 <= a.index - c < WINDOW for c in CHANGES))
    return {
        "false_alarms_per_10k_gaussian": len(gauss) / 20,
        "false_alarms_per_10k_t5": len(heavy) / 20,
        "false_alarms_per_10k_between_changes": extra / series,
        "missed": missed,
        "up_median": float(np.median(delays["up"])),
        "up_p90": float(np.percentile(delays["up"], 90)),
        "down_median": float(np.median(delays["down"])),
        "down_p90": float(np.percentile(delays["down"], 90)),
    }


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    for threshold in (8.0, 10.0, 12.0, 15.0):
        print(f"threshold={threshold:g} warmup=500", measure(threshold, 500))
