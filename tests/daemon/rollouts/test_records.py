"""The rollouts' records: their types match the tables, and a row round-trips."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mlwarden.daemon.rollouts.records import (
    AnalysisRecord,
    Rollout,
    StepRecord,
    analyses_table,
    analysis_from_row,
    public,
    rollout_from_row,
    rollouts_table,
    row_values,
    step_record,
)
from mlwarden.types import Analysis, Check, Step


def columns(table: sa.Table) -> list[str]:
    return [c.name for c in table.columns]


def test_the_record_types_name_every_column_and_field():
    # (``__annotations__``: NotRequired does not show at run time under postponed annotations.)
    keys = set(Rollout.__annotations__)
    assert keys == set(columns(rollouts_table)) | {"active", "last_analysis"}
    assert set(StepRecord.__annotations__) == set(Step.__dataclass_fields__)
    stored = set(Analysis("pass").to_dict()) | {"decision"}
    assert set(AnalysisRecord.__annotations__) == stored | {"step", "ts", "action"}


def rollout() -> Rollout:
    held = step_record(Step("promote", reason="all good", memo={"k": 1}))
    return {
        "id": "r1", "model": "m", "candidate": "1.1.0", "baseline": "1.0.0",
        "strategy": "canary", "options": {"interval_seconds": 60.0}, "state": "paused",
        "step": 2, "weight": 0.25, "mirror": True, "failures": 1, "memo": {"seen": [1]},
        "held": held, "step_started_at": 1.0, "next_analysis_at": 2.0, "started_at": 0.5,
        "updated_at": 3.0, "finished_at": None, "actor": "ana", "reason": "held",
        "active": True,
    }  # fmt: skip


def test_a_rollout_row_round_trips_in_column_order():
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        rollouts_table.create(conn)
        conn.execute(rollouts_table.insert(), row_values({**rollout(), "last_analysis": {}}))
        row = conn.execute(sa.select(rollouts_table)).one()
    again = rollout_from_row(row)
    assert again == rollout()
    assert list(again) == [*columns(rollouts_table), "active"]
    assert Step(**again["held"]) == Step("promote", reason="all good", memo={"k": 1})


def test_public_leaves_the_cached_analysis_out_of_a_copy():
    cached = {**rollout(), "last_analysis": {"verdict": "pass"}}
    shown = public(cached)
    assert shown == rollout() and "last_analysis" in cached


def test_an_analysis_row_shows_the_stored_analysis_and_the_decision():
    analysis = Analysis(
        "fail", (Check("mse", 2.0, 1.0, 1.1, False, "rule"),), {"candidate_requests": 9},
        since=1.0, until=2.0, reason="failed: mse",
    )  # fmt: skip
    detail = {**analysis.to_dict(), "decision": "rolling back"}
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        rollouts_table.create(conn)
        analyses_table.create(conn)
        conn.execute(rollouts_table.insert(), row_values(rollout()))
        conn.execute(
            analyses_table.insert(),
            {"rollout_id": "r1", "step": 2, "ts": 3.0, "verdict": "fail", "action": "rollback",
             "detail": json.dumps(detail)},
        )  # fmt: skip
        row = conn.execute(sa.select(analyses_table)).one()
    record = analysis_from_row(row)
    # As the API has always shown it: the row's step, time, verdict and action, then
    # the stored analysis.
    assert record == {"step": 2, "ts": 3.0, "verdict": "fail", "action": "rollback", **detail}
    assert list(record) == list({"step": 0, "ts": 0, "verdict": 0, "action": 0, **detail})
