"""Worker processes: results and errors come back, a dead worker costs no call, and
ingest through workers accepts and refuses exactly what it does in threads."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from mlwarden.daemon.core.workers import WorkerPool
from mlwarden.daemon.ingest.batches import BatchRejected
from tests.daemon.ingest.test_ingest import config, ready, records, write_reference

NOW = time.time()


@pytest.fixture
def reference(tmp_path):
    return write_reference(tmp_path)


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def refuse(reason: str) -> None:
    raise BatchRejected(reason, f"record 3 (id 'a'), field 'x': {reason}", status=409)


async def test_calls_run_in_other_processes_and_errors_come_back_whole():
    pool = WorkerPool(1)
    try:
        pid, value = await pool.run(pid_and_square, 7)
        assert value == 49 and pid != os.getpid()
        with pytest.raises(BatchRejected) as info:
            await pool.run(refuse, "duplicate_id")
        assert info.value.reason == info.value.code == "duplicate_id"
        assert info.value.status == 409 and "record 3" in str(info.value)
    finally:
        await pool.close()


async def test_a_killed_worker_costs_no_call():
    pool = WorkerPool(1)
    try:
        worker, _ = await pool.run(pid_and_square, 1)
        os.kill(worker, signal.SIGKILL)
        await asyncio.sleep(0.2)
        pid, value = await pool.run(pid_and_square, 3)  # the broken pool: run in a thread
        assert value == 9
        pid, value = await pool.run(pid_and_square, 4)  # a new pool
        assert value == 16 and pid not in (worker, os.getpid())
    finally:
        await pool.close()


async def test_no_processes_means_threads():
    pool = WorkerPool(0)
    pid, value = await pool.run(pid_and_square, 5)
    assert (pid, value) == (os.getpid(), 25)
    with pytest.raises(ValueError):
        WorkerPool(-1)


async def test_ingest_through_workers_matches_ingest_in_threads(
    make_warden,
    make_client,
    reference,
    tmp_path,
    new_store_overrides,
):
    batch = records(40)
    columns = {
        "id": [f"c{i}" for i in range(40)],
        "features": {k: [r["features"][k] for r in batch] for k in ("x", "y", "kind")},
        "prediction": [r["prediction"] for r in batch],
    }
    bad = records(5)
    bad[3]["features"]["x"] = "1.5"
    seen = []
    for workers in (0, 1):
        warden = await make_warden(
            config(reference, f"ingest_workers = {workers}"),
            **{"daemon.base_path": str(tmp_path / f"state-{workers}")},
            **await new_store_overrides(),
        )
        await ready(warden)
        assert warden.ingest.workers.processes == workers
        client = await make_client(warden)
        for body in ({"records": batch}, {"columns": columns}):
            resp = await client.post("/api/models/m/predictions", json=body)
            assert resp.status == 201, await resp.text()
        resp = await client.post("/api/models/m/predictions", data=b'{"records": [')
        assert resp.status == 400  # decode errors come back from the worker as they are
        assert (await resp.json())["error"]["code"] == "malformed_json"
        resp = await client.post("/api/models/m/predictions", json={"records": bad})
        assert resp.status == 400
        error = (await resp.json())["error"]
        profile = await warden.ingest.window("m", NOW - 3600, NOW + 3600)
        seen.append((error, profile))
    (error0, p0), (error1, p1) = seen
    assert error0 == error1 and "record 3" in error0["message"]
    assert p0.rows == p1.rows == 80
    np.testing.assert_array_equal(p0.hist, p1.hist)
    np.testing.assert_array_equal(p0.cat_counts, p1.cat_counts)
    np.testing.assert_allclose(p0.mean, p1.mean, rtol=1e-12)
    assert p1.layout is warden.ingest.model_state("m").layout


async def test_a_reload_changes_the_number_of_workers(make_warden, make_config, reference):
    warden = await make_warden(config(reference))
    ingest = await ready(warden)
    assert ingest.workers.processes == 0
    await warden.reload(make_config(config(reference, "ingest_workers = 1")))
    assert ingest.workers.processes == 1
    result = await ingest.record_predictions("m", {"records": records(3)})
    assert result["accepted"] == 3
