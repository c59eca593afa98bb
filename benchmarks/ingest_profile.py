"""Where an Arrow batch's milliseconds go inside the daemon, step by step.

    python benchmarks/ingest_profile.py [--batches 100] [--sizes 1000,10000]

A started Warden in this process (SQLite, the daemon's pragmas: WAL, synchronous=NORMAL)
watching one model of 50 numeric features with a 50k-row Parquet reference, fed Arrow
IPC bodies (benchmarks/ingest.py's) one at a time, so that the process's CPU time
between two points is the CPU of the step between them (the store's statements run in
aiosqlite's thread and count too). Per batch size it prints the median CPU per batch of:

- **decode**: ``read_table`` (the IPC stream into an Arrow table);
- **validate**: ``table_predictions`` (schema, ids, times, the typed feature columns);
- **profile**: the batch cut by (version, bucket) and profiled (``Profile.from_columns``:
  moments, histograms, the sample), its journal blob and its stored-predictions blob;
- **id probe**: the duplicate-id check against the stored ids (``check_new_ids``);
- **batch + id rows**: the ``prediction_batches`` row and one ``prediction_ids`` row per
  record (``store_predictions``);
- **journal**: the batch's columns appended to ``ingest_journal``;
- **commit**: the transaction's begin and commit (with synchronous=NORMAL in WAL mode the
  commit writes the WAL and does not fsync; the fsyncs come with the checkpoints,
  counted here when one falls into a commit);
- **fold**: the batch's profile folded into the open bucket after the commit;
- **queue**: the rest of ``Ledger.record_predictions`` (the writer task's hand-offs).

What the HTTP layer adds (reading the body, the middlewares, the audit entry, the
answer) is the real daemon's CPU per batch (benchmarks/ingest.py) minus this sum.
Also printed: the same steps for the ``prediction_ids`` part as the table grows (the
id probe and id rows at the first and the last tenth of the batches).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest_harness as bench  # the bodies and the reference of the HTTP benchmark

from mlwarden.daemon.core.config_loader import load_config
from mlwarden.daemon.ingest import ledger as ledger_module
from mlwarden.daemon.ingest import prepare as prepare_module
from mlwarden.daemon.ingest.arrow import TableBody, read_table, table_predictions
from mlwarden.daemon.warden import Warden

STEPS = (
    "decode", "validate", "profile", "id probe", "batch + id rows", "journal", "commit",
    "fold", "queue",
)  # fmt: skip

_spent: dict[str, float] = defaultdict(float)


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[name] += time.process_time() - start

    return run


def _timed_async(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def run(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return await fn(*args, **kwargs)
        finally:
            _spent[name] += time.process_time() - start

    return run


def _instrument() -> None:
    """Time the ledger's steps where the ledger looks them up (its module's globals)."""
    for name, fn in (
        ("id probe", ledger_module.check_new_ids),
        ("batch + id rows", ledger_module.store_predictions),
        ("journal", ledger_module.insert_rows),
    ):
        setattr(ledger_module, fn.__name__, _timed_async(name, fn))
    ledger_module.fold = _timed("fold", ledger_module.fold)
    commit = ledger_module.Ledger._commit
    ledger_module.Ledger._commit = _timed_async("transaction", commit)  # type: ignore[method-assign]


async def profile(warden: Warden, bodies: list[bytes]) -> list[dict[str, float]]:
    """Per batch, CPU seconds by step."""
    ingest = warden.ingest
    state = ingest.model_state("m")
    await state.ready.wait()
    out = []
    for body in bodies:
        _spent.clear()
        now = time.time()
        t0 = time.process_time()
        table = read_table(TableBody(body))
        t1 = time.process_time()
        batch = table_predictions(
            table, state.layout, task="regression", now=now, oldest=now - 86400, max_batch=100_000
        )
        t2 = time.process_time()
        batch.versions[batch.versions == ""] = "1"
        parts = [
            (key, columns.to_bytes(), p)
            for key, columns, p in prepare_module._split(batch, state.layout, 300, 5000)
        ]
        prepared = prepare_module.PreparedBatch(
            batch, parts, prepare_module.encode_predictions(batch)
        )
        t3 = time.process_time()
        await ingest.ledger.record_predictions(state, prepared)
        t4 = time.process_time()
        steps = {"decode": t1 - t0, "validate": t2 - t1, "profile": t3 - t2, **_spent}
        inside = steps["id probe"] + steps["batch + id rows"] + steps["journal"]
        steps["commit"] = steps.pop("transaction") - inside
        steps["queue"] = (t4 - t3) - steps["commit"] - inside - steps["fold"]
        out.append(steps)
    return out


async def main_async(batches: int, sizes: list[int]) -> None:
    _instrument()
    with tempfile.TemporaryDirectory(prefix="mlwarden-profile-") as tmp:
        root = Path(tmp)
        reference = root / "reference.parquet"
        bench.reference_frame(50_000, seed=1).to_parquet(reference)
        for size in sizes:
            base = root / f"size-{size}"
            base.mkdir()
            path = base / "mlwarden.toml"
            path.write_text(
                f'[daemon]\nbase_path = "{base / "state"}"\n'
                "[monitoring]\ninterval_seconds = 3600\nbucket_seconds = 300\n"
                f'[[models]]\nname = "m"\nreference = "{reference}"\n'
            )
            warden = Warden(load_config(path, env={}))
            await warden.start()
            try:
                n = max(batches * 1000 // size, 10)
                bodies = bench.arrow_bodies(n + 2, size, seed=size)
                await profile(warden, bodies[:2])  # warm-up
                runs = await profile(warden, bodies[2:])
            finally:
                await warden.stop()
            total = sum(statistics.median(r[s] for r in runs) for s in STEPS)
            print(f"Arrow, {size:,} records x 50 features, {n} batches (median CPU per batch):")
            for step in STEPS:
                ms = statistics.median(r[step] for r in runs) * 1e3
                print(f"  {step:16s} {ms:7.2f} ms  {ms / total / 10:5.1f}%  "
                      f"{ms * 1000 / size:6.2f} ms per 1,000 records")  # fmt: skip
            print(f"  {'sum':16s} {total * 1e3:7.2f} ms -> at most "
                  f"{size / total:,.0f} records/s on one core")  # fmt: skip
            tenth = max(len(runs) // 10, 1)
            for step in ("id probe", "batch + id rows"):
                first = statistics.median(r[step] for r in runs[:tenth]) * 1e3
                last = statistics.median(r[step] for r in runs[-tenth:]) * 1e3
                print(f"  {step} as the table grows: first tenth {first:.2f} ms, "
                      f"last tenth {last:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100, help="1,000-record batches' worth")
    parser.add_argument("--sizes", default="1000,10000", help="records per batch (1000,10000)")
    args = parser.parse_args()
    asyncio.run(main_async(args.batches, [int(s) for s in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
