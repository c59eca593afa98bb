"""An experiment evaluated by two daemons on one PostgreSQL store at once (issue 18).

Warden A (from ``lab``) and Warden B share the store and the MLflow server; B has its
own base path and ``cluster.instance``. Both evaluate the same experiment at the same
time, as the owner's loop on one and an API call on the other would.
"""

from __future__ import annotations

import asyncio

import pytest

from mlwarden.daemon.warden import Warden
from tests.daemon.experiments import test_experiments
from tests.daemon.experiments.test_experiments import CONFIG, START, serve
from tests.helpers import second_warden

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
lab = test_experiments.lab  # the fixture: A, with models m@1.0.0 and m@1.1.0


@pytest.fixture
async def second(make_config, tmp_path):
    """``second(a)``: a Warden B on A's store and MLflow, started."""
    made: list[Warden] = []

    async def make(a: Warden, clock) -> Warden:
        b = second_warden(make_config, CONFIG, a, tmp_path / "b", "b", clock)
        await b.start()
        await b.ingest.model_state("m").ready.wait()
        made.append(b)
        return b

    yield make
    for b in made:
        await b.stop()


async def test_concurrent_evaluations_take_turns_on_the_sequential_state(lab, second):
    a, clock, _, client = await lab()
    b = await second(a, clock)
    resp = await client.post("/api/experiments", json={**START, "sequential": True})
    exp_id = (await resp.json())["id"]
    await serve(a, 300)
    # Both evaluate at once, three rounds: each look counts, none is overwritten.
    for _ in range(3):
        await asyncio.gather(a.experiments.evaluate(exp_id), b.experiments.evaluate(exp_id))
    record = await b.experiments.get(exp_id)
    assert record["evaluations"] == 6
    assert record["_state"]["primary"]["looks"] == 6
    assert len(await a.experiments.evaluations(exp_id)) == 6


async def test_an_experiment_concludes_once_when_two_daemons_stop_it(lab, second):
    a, clock, _, client = await lab()
    b = await second(a, clock)
    resp = await client.post("/api/experiments", json=START)
    exp_id = (await resp.json())["id"]
    results = await asyncio.gather(
        a.experiments.stop_experiment(exp_id, actor="x", reason="one"),
        b.experiments.stop_experiment(exp_id, actor="y", reason="two"),
        return_exceptions=True,
    )
    done = [r for r in results if not isinstance(r, Exception)]
    assert done and all(r["status"] == "stopped" for r in done)
    # One conclusion: one audit entry in the shared store (each daemon's would count).
    audit = [e for e in await a.audit.entries(1000) if e["action"] == "experiment stopped"]
    assert len(audit) == 1, audit
