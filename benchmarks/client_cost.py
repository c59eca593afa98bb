"""The cost of mlwarden.client for a serving system: import, memory, per-call time.

    python benchmarks/client_cost.py          (or: python benchmarks/ingest.py --only client)

In fresh subprocesses: the time and RSS of ``import mlwarden.client`` (beside a bare
interpreter's RSS), the RSS once a ``Client`` exists (it imports pyarrow and, through
it, pandas), and the time one ``log_predictions`` call takes on the caller's thread:
one record of 50 features as a dict, median and p99 of 20,000 calls, and 1,000-row
DataFrames. Nothing listens at the client's URL and the batch size is larger than the
run, so the calls measure the buffer alone (the sender's work is on its own thread).

Goal (issue 19): a 1-row ``log_predictions`` < 20 µs median on the caller's thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CODE = r"""
import json, os, resource, statistics, sys, time

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

bare = rss()
start = time.perf_counter()
import mlwarden.client
imported = time.perf_counter() - start
after_import = rss()
heavy = sorted(m for m in ("mlflow", "scipy", "sklearn", "mlwarden.daemon") if m in sys.modules)
client = mlwarden.client.Client("http://127.0.0.1:9", batch_rows=10**7,
                                max_buffer_rows=10**7, max_age_seconds=3600)
with_client = rss()
row = {f"f{i}": 0.5 for i in range(50)}
times = []
for i in range(20_000):
    t = time.perf_counter_ns()
    client.log_predictions("m", row, ids=f"r{i}", predictions=0.5)
    times.append(time.perf_counter_ns() - t)
times.sort()
import numpy as np, pandas as pd
frame = pd.DataFrame(np.random.default_rng(0).normal(size=(1000, 50)),
                     columns=[f"f{i}" for i in range(50)])
frame_times = []
for i in range(200):
    t = time.perf_counter_ns()
    client.log_predictions("m", frame, predictions=frame["f0"].to_numpy())
    frame_times.append(time.perf_counter_ns() - t)
client._closing = True  # nothing to flush to: leave without the exit flush
print(json.dumps({
    "import_ms": imported * 1e3, "bare_mb": bare, "import_mb": after_import,
    "client_mb": with_client, "heavy": heavy,
    "row_median_us": times[len(times) // 2] / 1e3, "row_p99_us": times[int(len(times) * .99)] / 1e3,
    "frame_median_us": statistics.median(frame_times) / 1e3,
}))
"""


def bench_client() -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.splitlines()[-1])
    print(
        f"client: import {r['import_ms']:.0f} ms, RSS {r['bare_mb']:.0f} MB bare -> "
        f"{r['import_mb']:.0f} MB imported -> {r['client_mb']:.0f} MB with a Client "
        f"(pyarrow, pandas); heavy modules imported: {r['heavy'] or 'none'}",
        flush=True,
    )
    print(f"client: log_predictions on the caller's thread: 1 row x 50 features "
          f"{r['row_median_us']:.1f} us median (p99 {r['row_p99_us']:.1f} us); "
          f"1,000-row DataFrame {r['frame_median_us']:.0f} us median", flush=True)  # fmt: skip
    return r


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    bench_client()
