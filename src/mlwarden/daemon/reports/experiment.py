"""The experiment report's data: arms, lift and its interval, the p-value's path, SRM,
the decision and why."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ...errors import NotFound
from ..core.store import Store
from ..experiments.records import experiments_table
from .history import History, _plain
from .period import Period, iso

__all__ = ["experiment_report"]


async def experiment_report(store: Store, experiment_id: str, now: float) -> dict[str, Any]:
    """The report of experiment ``experiment_id``; NotFound when there is none."""
    async with store.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(experiments_table).where(experiments_table.c.id == experiment_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"experiment {experiment_id!r} not found")
    experiment = _plain(row)
    experiment.pop("sequential_state", None)
    until = experiment["concluded_at"] or now
    history = History(store, Period(experiment["started_at"], until))
    evaluations = await history.experiment_evaluations(experiment_id)
    path = []
    for e in evaluations:
        looked: dict[str, Any] = e["result"] if isinstance(e["result"], dict) else {}
        path.append(
            {
                "ts": e["ts"],
                "ts_iso": iso(e["ts"]),
                "recommendation": e["recommendation"],
                "p_value": e["p_value"],
                "samples_a": e["samples_a"],
                "samples_b": e["samples_b"],
                "lift": looked.get("lift"),
                "lift_interval": looked.get("lift_interval"),
                "srm": looked.get("srm") or {},
            }
        )
    stored = experiment.get("result")
    result: dict[str, Any] = stored if isinstance(stored, dict) else {}
    srm = result.get("srm") or {}
    arms = [
        {
            "arm": arm,
            "version": experiment[f"version_{arm.lower()}"],
            "weight": experiment["weight_b"] if arm == "B" else 1.0 - experiment["weight_b"],
            "samples": (result.get("samples") or {}).get(arm),
            "mean": (result.get("means") or {}).get(arm),
        }
        for arm in ("A", "B")
    ]
    decision = experiment.get("recommendation") or result.get("recommendation") or "none yet"
    reason = result.get("reason") or (
        "no evaluation yet" if not evaluations else "see the latest evaluation"
    )
    return {
        "kind": "experiment",
        "experiment": experiment,
        "model": experiment["model"],
        "period": Period(experiment["started_at"], until).to_dict(),
        "generated_at": now,
        "generated_at_iso": iso(now),
        "empty": not evaluations,
        "message": "" if evaluations else "the experiment has not been evaluated yet",
        "arms": arms,
        "metric": result.get("metric"),
        "lift": result.get("lift"),
        "lift_interval": result.get("lift_interval"),
        "confidence_level": result.get("confidence_level"),
        "p_value": result.get("p_value"),
        "significance_threshold": result.get("significance_threshold"),
        "sequential": result.get("sequential"),
        "srm": srm,
        "decision": decision,
        "winner": experiment.get("winner"),
        "reason": reason,
        "guardrails": result.get("guardrails") or {},
        "path": path,
    }
