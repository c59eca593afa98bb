"""mlwarden backfill: a file of past predictions in time order; refused ranges reported."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pandas as pd

from mlwarden.cli import main
from mlwarden.client.backfill import backfill

from ..daemon.ingest.test_ingest import config, ready, write_reference


def history(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    now = time.time()
    return pd.DataFrame(
        {
            "id": [f"h{i}" for i in range(n)],
            "ts": now - 3000 + rng.permutation(n).astype(float),  # not in time order
            "x": rng.normal(size=n),
            "y": rng.uniform(size=n),
            "kind": rng.choice(["a", "b"], n),
            "prediction": rng.normal(size=n),
            "label": rng.normal(size=n),
        }
    )


async def test_backfill_loads_in_time_order_and_reports_a_bad_range(
    make_warden, make_client, tmp_path
):
    warden = await make_warden(config(write_reference(tmp_path)))
    await ready(warden)
    url = str((await make_client(warden)).make_url("")).rstrip("/")
    frame = history(25)
    frame.loc[frame["ts"].idxmax(), "ts"] = time.time() + 86400  # sorts last: rows 20-24
    path = tmp_path / "history.parquet"
    frame.to_parquet(path)
    out = io.StringIO()
    summary = await asyncio.to_thread(backfill, url, "m", path, batch_rows=10, progress=out)
    assert summary.rows == 25 and summary.loaded == 20 and summary.labels == 20
    assert len(summary.refused) == 1
    first, last, why = summary.refused[0]
    assert (first, last) == (20, 24)
    assert "in the future" in why and "row 24 of the sorted file" in why
    assert "predictions" in out.getvalue() and "25/25" in out.getvalue()
    assert await warden.ingest.count_predictions("m") == 20
    outcomes = await warden.ingest.outcomes("m")
    assert len(outcomes.id) == 20
    assert np.all(np.diff(outcomes.ts) >= 0)


async def test_backfill_cli_with_csv(make_warden, make_client, tmp_path, capsys):
    warden = await make_warden(config(write_reference(tmp_path)))
    await ready(warden)
    url = str((await make_client(warden)).make_url("")).rstrip("/")
    path = tmp_path / "history.csv"
    history(12).drop(columns=["label"]).to_csv(path, index=False)
    code = await asyncio.to_thread(main, ["backfill", "m", str(path), "--url", url])
    assert code == 0
    assert "12 of 12 predictions loaded" in capsys.readouterr().out
    assert await warden.ingest.count_predictions("m") == 12
    bad = tmp_path / "history.txt"
    bad.write_text("x")
    assert await asyncio.to_thread(main, ["backfill", "m", str(bad), "--url", url]) == 2
