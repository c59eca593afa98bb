"""The size and time of a reference upload (``PUT /api/models/{name}/reference``).

    python benchmarks/reference_upload.py [--rows 50000] [--features 50]

A real Warden on SQLite in a temporary directory, its API on aiohttp's test server;
one model with ``--features`` numeric features listed. The reference is random
float64 (the worst case for Parquet compression) sent three ways: as an Arrow IPC
stream, as Parquet, and as Parquet of values rounded to 3 decimals (closer to real
data). Printed per body: its size against ``daemon.max_body_bytes`` (the limit a
reference must fit) and the time from the request to the answer, which includes
reading, checking, profiling, storing and putting it in force.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _bodies(rows: int, features: int) -> list[tuple[str, str, bytes]]:
    rng = np.random.default_rng(0)
    table = pa.table({f"f{i}": rng.normal(size=rows) for i in range(features)})
    rounded = pa.table({n: np.round(table.column(n).to_numpy(), 3) for n in table.column_names})
    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    out = []
    for name, t in (("parquet", table), ("parquet, 3 decimals", rounded)):
        sink = io.BytesIO()
        pq.write_table(t, sink)
        out.append((name, "application/vnd.apache.parquet", sink.getvalue()))
    return [("arrow stream", "application/vnd.apache.arrow.stream", stream.getvalue()), *out]


async def main(rows: int, features: int) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from mlwarden.daemon.api.routes import build_app
    from mlwarden.daemon.core.config_loader import load_config
    from mlwarden.daemon.warden import Warden

    root = Path(tempfile.mkdtemp(prefix="mlwarden-bench-"))
    names = ", ".join(f'"f{i}"' for i in range(features))
    (root / "c.toml").write_text(f'[[models]]\nname = "m"\nfeatures = [{names}]\n')
    config = load_config(root / "c.toml", env={}, overrides={"daemon.base_path": str(root)})
    limit = config.daemon.max_body_bytes
    warden = Warden(config)
    await warden.start()
    try:
        await warden.ingest.model_state("m").ready.wait()
        async with TestClient(TestServer(build_app(warden))) as client:
            print(
                f"{rows} rows x {features} features; daemon.max_body_bytes = {limit / 1e6:.1f} MB"
            )
            for name, media_type, body in _bodies(rows, features):
                start = time.perf_counter()
                resp = await client.put(
                    "/api/models/m/reference", data=body, headers={"Content-Type": media_type}
                )
                took = time.perf_counter() - start
                answer = await resp.json()
                assert resp.status == 200, answer
                print(
                    f"  {name:20s} {len(body) / 1e6:6.1f} MB  ({100 * len(body) / limit:3.0f}% "
                    f"of the limit)  {took:5.2f} s  {answer['rows']} rows in force"
                )
    finally:
        await warden.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.features))
