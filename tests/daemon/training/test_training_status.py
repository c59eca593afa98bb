"""A version registered by a running job is ``training`` until the job ends."""

from __future__ import annotations

import asyncio
import sys

from ..registry.helpers import log_model_files
from .test_jobs import FAKE, command_model, wait_for, wait_state

PY = sys.executable


async def run_gated_job(w, client, tmp_path, name: str, code: int) -> tuple[dict, dict]:
    """Start a gated job, register a version for it mid-run, let it end with ``code``."""
    run_id = log_model_files(w)
    ready, go = tmp_path / f"{name}.ready", tmp_path / f"{name}.go"
    job = await w.jobs.submit(name, reason="status test")
    await wait_for(lambda: asyncio.sleep(0, ready.exists()), 30)
    # The trainer (here: the test on its behalf) registers a checkpoint through the API.
    resp = await client.post(
        f"/api/models/{name}/versions",
        json={"run_id": run_id, "lineage": {"training_job": job["id"]}},
    )
    mid_run = await resp.json()
    assert resp.status == 201, mid_run
    assert mid_run["status"] == "training"
    # A registration naming no job, or a job that is not running, is in validation.
    resp = await client.post(f"/api/models/{name}/versions", json={"run_id": run_id})
    assert (await resp.json())["status"] == "validation"
    resp = await client.post(
        f"/api/models/{name}/versions",
        json={"run_id": run_id, "lineage": {"training_job": "no-such-job"}},
    )
    assert (await resp.json())["status"] == "validation"
    go.write_text("go")
    done = await wait_state(w.jobs, job["id"], ("succeeded", "failed"), 60)
    return done, mid_run


async def test_training_versions_move_on_when_their_job_ends(make_warden, make_client, tmp_path):
    w0 = await make_warden()
    uri = f"runs:/{log_model_files(w0)}/model"
    await w0.stop()
    text = "[training]\nmax_retries = 0\nmin_training_data_points = 0\n"
    for name, code in (("good", 0), ("bad", 3)):
        text += command_model(
            name,
            [PY, str(FAKE / "gated.py"), str(tmp_path / f"{name}.ready"),
             str(tmp_path / f"{name}.go"), uri, str(code)],
        )  # fmt: skip
    w = await make_warden(text)
    client = await make_client(w)

    done, mid_run = await run_gated_job(w, client, tmp_path, "good", 0)
    assert done["state"] == "succeeded", done["error"]
    # Both the mid-run version and the job's own result are in validation now.
    assert (await w.registry.get("good", mid_run["version"]))["status"] == "validation"
    own = await w.registry.get("good", done["version"])
    assert own["status"] == "validation"
    assert own["lineage"]["training_job"] == done["id"]
    history = await client.get(f"/api/models/good/versions/{mid_run['version']}")
    assert (await history.json())["status"] == "validation"

    done, mid_run = await run_gated_job(w, client, tmp_path, "bad", 3)
    assert done["state"] == "failed"
    assert (await w.registry.get("bad", mid_run["version"]))["status"] == "failed"
