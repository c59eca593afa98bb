"""Two daemons on one PostgreSQL store ingesting at once: the keys keep every batch,
id and label exactly once (what SQLite's single writer gave for free)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlwarden.daemon.ingest.batches import BatchRejected
from tests.daemon.ingest.test_ingest import config, ready, records, write_reference


async def stored(ingest) -> int:
    """The predictions stored by every daemon (each one's open buckets count its own)."""
    return await ingest.count_predictions("m", since=time.time() - 3600)


@pytest.fixture
async def pair(make_config, tmp_path, postgres_url):
    """Two started Wardens on one fresh PostgreSQL database (as two hosts would be)."""
    from mlwarden.daemon.warden import Warden

    reference = write_reference(tmp_path)
    cfg = make_config(config(reference), **{"store.url": postgres_url})
    wardens = [Warden(cfg), Warden(cfg)]
    for w in wardens:
        await w.start()
    yield [await ready(w) for w in wardens]
    for w in wardens:
        await w.stop()


async def test_one_batch_id_sent_to_both_is_stored_once(pair):
    a, b = pair
    for round_ in range(8):
        body = {"records": records(25, start=100 * round_)}
        answers = await asyncio.gather(
            a.record_predictions("m", body, batch_id=f"batch-{round_}"),
            b.record_predictions("m", body, batch_id=f"batch-{round_}"),
        )
        assert sorted(bool(x.get("replayed")) for x in answers) == [False, True], answers
    assert await stored(a) == 8 * 25


async def test_a_clashing_id_refuses_one_batch_whole_and_spares_its_commit_group(pair):
    a, b = pair
    for round_ in range(6):
        base = 1000 * (round_ + 1)
        clash_a = {"records": records(20, start=base)}  # r{base}..: both hold r{base+19}
        clash_b = {"records": records(20, start=base + 19)}
        # Unrelated batches to the same daemons share their group commits.
        bystanders = [
            (a if n % 2 else b).record_predictions(
                "m", {"records": records(5, start=base + 100 + 10 * n)}
            )
            for n in range(4)
        ]
        results = await asyncio.gather(
            a.record_predictions("m", clash_a),
            b.record_predictions("m", clash_b),
            *bystanders,
            return_exceptions=True,
        )
        refused = [r for r in results[:2] if isinstance(r, BatchRejected)]
        assert len(refused) == 1 and refused[0].code == "duplicate_id", results[:2]
        assert all(r == {"accepted": 5, "profiled": True} for r in results[2:]), results[2:]
    # Each round: one clashing batch (20) and four bystanders (20); nothing of the refused.
    assert await stored(b) == 6 * 40


async def test_labels_for_one_prediction_through_both_daemons_join_once(pair):
    a, b = pair
    await a.record_predictions("m", {"records": records(30)})
    for value in range(5):
        labels = {"labels": [{"id": f"r{i}", "label": float(value)} for i in range(30)]}
        answers = await asyncio.gather(a.record_labels("m", labels), b.record_labels("m", labels))
        assert [x["matched"] for x in answers] == [30, 30]
    outcomes = await b.outcomes("m")
    assert sorted(outcomes.id) == sorted(f"r{i}" for i in range(30))
    assert set(outcomes.label) == {4.0}
