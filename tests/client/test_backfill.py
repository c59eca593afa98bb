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


async def test_backfill_carries_a_classifiers_scores(make_warden, make_client, tmp_path):
    """probability / probabilities.<class> columns of the file arrive as the scores."""
    warden = await make_warden(config(write_reference(tmp_path)))
    await ready(warden, "cls")
    url = str((await make_client(warden)).make_url("")).rstrip("/")
    rng = np.random.default_rng(5)
    n, now = 30, time.time()
    up = rng.uniform(size=n)
    frame = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(n)],
            "ts": now - 3000 + rng.permutation(n).astype(float),
            "x": rng.normal(size=n),
            "kind": rng.choice(["a", "b"], n),
            "prediction": np.where(up > 0.5, "up", "down"),
            "probabilities.down": 1 - up,
            "probabilities.up": up,
            "label": rng.choice(["up", "down"], n),
        }
    )
    order = np.argsort(frame["ts"].to_numpy())
    frame.loc[order[17], "probabilities.up"] = 1.5  # row 17 of the sorted file: batch 10-19
    path = tmp_path / "scored.csv"
    frame.to_csv(path, index=False)
    summary = await asyncio.to_thread(backfill, url, "cls", path, batch_rows=10, progress=None)
    assert summary.loaded == 20 and summary.labels == 20
    [(first, last, why)] = summary.refused
    assert (first, last) == (10, 19)
    assert "column 'probabilities.up'" in why and "row 17 of the sorted file" in why
    found = await warden.ingest.scored_predictions("cls", now - 3600, now + 3600)
    assert found.classes == ("down", "up") and len(found.scores) == 20
    kept = np.r_[order[:10], order[20:]]
    np.testing.assert_allclose(found.scores[:, 1], up[kept])
    # A binary model's P(positive class), from Parquet.
    binary = frame.drop(columns=["probabilities.down", "probabilities.up", "label"])
    binary["id"] = [f"p{i}" for i in range(n)]
    binary["ts"] = now - 1000.0
    binary["probability"] = up
    path = tmp_path / "binary.parquet"
    binary.to_parquet(path)
    summary = await asyncio.to_thread(backfill, url, "cls", path, progress=None)
    assert summary.ok and summary.loaded == n
    found = await warden.ingest.scored_predictions("cls", now - 1500, now + 3600)
    assert found.classes == () and found.scores[:, 0].tolist() == up.tolist()
