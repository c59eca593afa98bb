"""False-positive rate and power of every built-in drift method, by simulation.

Each replicate draws a reference and a current window from known distributions, builds
the FeatureData the monitor would hand over (the reference's 100 quantile bins and the
current window's counts over them, plus the bounded samples), fits the method on the
reference and scores the window. With no shift, the share of replicates flagged is the
false-positive rate; with a known shift, it is the power. Fixed seeds: the numbers in
docs/drift_methods.md come from

    python benchmarks/drift_simulation.py --reps 500 --mmd-reps 200

and tests/plugins/drift/test_simulation.py checks the same quantities with fewer
replicates.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from mlwarden.daemon.core.plugins import PluginCatalog, make_plugin_manager
from mlwarden.types import FeatureData

REFERENCE_ROWS = 2_000
CURRENT_ROWS = 1_000
MULTIVARIATE_ROWS = 500
CATEGORY_SHARES = np.array([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])


def numeric_pair(rng: np.random.Generator, shift: float, draw: str) -> tuple[FeatureData, ...]:
    """Reference and current FeatureData of a numeric feature; ``shift`` in reference sd."""
    if draw == "lognormal":
        sd = float(np.sqrt((np.e - 1) * np.e))  # sd of lognormal(0, 1)
        ref = rng.lognormal(0.0, 1.0, REFERENCE_ROWS)
        cur = rng.lognormal(0.0, 1.0, CURRENT_ROWS) + shift * sd
    else:
        ref = rng.normal(0.0, 1.0, REFERENCE_ROWS)
        cur = rng.normal(shift, 1.0, CURRENT_ROWS)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 101)))
    return (
        FeatureData("x", "numeric", sample=ref, bin_edges=edges, counts=_counts(ref, edges)),
        FeatureData("x", "numeric", sample=cur, bin_edges=edges, counts=_counts(cur, edges)),
    )


def _counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    index = np.searchsorted(edges, values, side="right")
    index[values == edges[-1]] = edges.size - 1  # the reference maximum: last bin
    return np.bincount(index, minlength=edges.size + 1)


def categorical_pair(rng: np.random.Generator, shift: float) -> tuple[FeatureData, ...]:
    """``shift`` moves that share of mass from the first category to the last."""
    shares = CATEGORY_SHARES.copy()
    moved = shift * shares[0]
    shares[0] -= moved
    shares[-1] += moved
    names = tuple("abcdef")
    return (
        FeatureData("c", "categorical", categories=names,
                    counts=rng.multinomial(REFERENCE_ROWS, CATEGORY_SHARES)),
        FeatureData("c", "categorical", categories=names,
                    counts=rng.multinomial(CURRENT_ROWS, shares)),
    )  # fmt: skip


def multivariate_pair(rng: np.random.Generator, shift: float) -> tuple[FeatureData, ...]:
    """Three features; ``shift`` rotates the correlation of the first two from +0.5 towards -0.5."""

    def rows(rho: float) -> np.ndarray:
        cov = np.array([[1.0, rho, 0.0], [rho, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return rng.multivariate_normal(np.zeros(3), cov, size=MULTIVARIATE_ROWS)

    return (
        FeatureData("m", "multivariate", sample=rows(0.5)),
        FeatureData("m", "multivariate", sample=rows(0.5 - shift)),
    )


def flagged_share(
    cls: type, make_pair: Callable[[np.random.Generator], tuple[FeatureData, ...]],
    reps: int, seed: int,
) -> float:  # fmt: skip
    """Share of ``reps`` replicates the method flags, each with its own seeded data."""
    hits = 0
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        reference, current = make_pair(rng)
        hits += cls().fit(reference).score(current).drifted
    return hits / reps


#: (row label, feature kind, pair maker taking (rng, shift), shifts to report)
SCENARIOS = [
    ("normal, mean shift in sd", "numeric",
     partial(numeric_pair, draw="normal"), (0.0, 0.1, 0.2, 0.5)),
    ("lognormal, mean shift in sd", "numeric",
     partial(numeric_pair, draw="lognormal"), (0.0, 0.1, 0.2, 0.5)),
    ("6 categories, share of top moved to last", "categorical",
     categorical_pair, (0.0, 0.1, 0.2, 0.5)),
    ("3 features, correlation change", "multivariate",
     multivariate_pair, (0.0, 0.2, 0.4, 1.0)),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--mmd-reps", type=int, default=200, help="mmd is ~100x slower")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    classes = PluginCatalog(make_plugin_manager(autoload=False)).classes("drift_method")
    print(
        f"reference {REFERENCE_ROWS} rows, current {CURRENT_ROWS} rows "
        f"(multivariate {MULTIVARIATE_ROWS}/{MULTIVARIATE_ROWS}); {args.reps} replicates "
        f"({args.mmd_reps} for mmd); default options\n"
    )
    for label, kind, make, shifts in SCENARIOS:
        print(f"### {label}\n")
        print("| method | " + " | ".join(f"shift {s:g}" for s in shifts) + " | seconds |")
        print("|---|" + "---:|" * (len(shifts) + 1))
        for name, cls in sorted(classes.items()):
            if kind not in cls.kinds:
                continue
            start = time.perf_counter()
            cells = []
            for shift in shifts:
                reps = args.mmd_reps if name == "mmd" else args.reps
                share = flagged_share(cls, partial(make, shift=shift), reps, args.seed)
                cells.append(f"{share:.3f}")
            seconds = time.perf_counter() - start
            print(f"| {name} | " + " | ".join(cells) + f" | {seconds:.1f} |")
        print()


if __name__ == "__main__":
    main()
