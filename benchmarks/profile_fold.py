"""Folding 1,000-row batches into an open bucket's full sample: merge against fold.

    python benchmarks/profile_fold.py [--glibc-defaults]

An open bucket keeps ``sample_size`` (5,000) sampled rows of 51 numeric features; each
ingest batch of 1,000 rows is added to it. ``Profile.merge`` builds the sample anew
(the rows joined, then cut to the smallest keys); ``Profile.fold`` overwrites the rows a
batch displaces. Run under the daemon's malloc settings (daemon/core/memory.py: arrays from
1 MB get fresh pages), or with ``--glibc-defaults``. Prints ms per batch and the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mlwarden.daemon.core.memory import tune_malloc
from mlwarden.daemon.profiles.columns import Columns
from mlwarden.daemon.profiles.layout import Layout
from mlwarden.daemon.profiles.profile import Profile

FEATURES = 51
SAMPLE = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glibc-defaults", action="store_true", help="leave malloc alone")
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    print("malloc:", "glibc defaults" if args.glibc_defaults else tune_malloc())
    rng = np.random.default_rng(0)
    edges = np.sort(rng.normal(size=(FEATURES, 201)), axis=1)
    layout = Layout(tuple(f"f{i}" for i in range(FEATURES)), (), edges=edges)
    batches = [
        Profile.from_columns(
            layout,
            Columns(rng.normal(size=(1000, FEATURES)), np.zeros((1000, 0), np.int32)),
            SAMPLE,
            rng,
        )
        for _ in range(10)
    ]
    results = {}
    for how in ("merge", "fold"):
        bucket = Profile(layout, SAMPLE)
        for batch in batches:  # fill the sample first
            bucket.merge(batch)
        add = getattr(bucket, how)
        start = time.perf_counter()
        for i in range(args.batches):
            add(batches[i % len(batches)])
        results[how] = (time.perf_counter() - start) / args.batches
        print(f"{how:5s}: {results[how] * 1000:6.2f} ms per batch")
    print(f"merge / fold: {results['merge'] / results['fold']:.1f}x")


if __name__ == "__main__":
    main()
