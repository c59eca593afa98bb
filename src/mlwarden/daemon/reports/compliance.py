"""The compliance report's data: who changed what, and whether the audit log holds.

For every model asked (default: every configured or registered one) over a period:
the inventory of versions with status and lineage, each version's gate run, each
status transition, rollout and traffic change with its actor and reason, the drift and
performance incidents (alerts) and what followed them (training jobs, rollbacks), the
notifications sent, who holds which role, the audit entries of the period and the
audit chain's verification (the audit module's own ``verify``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ...errors import NotFound
from ..core.audit import AuditLog, audit_table
from ..core.config import Config
from ..core.store import Store
from .history import History, _plain
from .period import Period, iso

__all__ = ["compliance_report"]

#: The audit entries listed in a report at most (the export has them all).
MAX_AUDIT_ENTRIES = 5000


def _lineage(version: dict[str, Any]) -> dict[str, Any]:
    stored = version.get("lineage")
    lineage: dict[str, Any] = stored if isinstance(stored, dict) else {}
    return {
        "training_data": lineage.get("training_data") or lineage.get("data") or "",
        "training_data_sha256": lineage.get("training_data_sha256")
        or lineage.get("data_sha256")
        or lineage.get("sha256")
        or "",
        "code_version": lineage.get("code_version") or lineage.get("git_commit") or "",
        "run_id": version.get("run_id") or "",
        "other": {
            k: v
            for k, v in lineage.items()
            if k not in ("training_data", "data", "training_data_sha256", "data_sha256",
                         "sha256", "code_version", "git_commit")
        },
    }  # fmt: skip


async def _audit_section(store: Store, audit: AuditLog, period: Period) -> dict[str, Any]:
    a = audit_table
    within = sa.and_(a.c.ts >= period.since, a.c.ts <= period.until)
    async with store.connect() as conn:
        bounds = (
            await conn.execute(sa.select(sa.func.min(a.c.id), sa.func.max(a.c.id), sa.func.count())
                               .where(within))
        ).one()  # fmt: skip
        listed = sa.select(a).where(within).order_by(a.c.id).limit(MAX_AUDIT_ENTRIES)
        rows = (await conn.execute(listed)).mappings().all()  # fmt: skip
        first = last = None
        if bounds[0] is not None:
            ends = (
                await conn.execute(sa.select(a).where(a.c.id.in_([bounds[0], bounds[1]])))
            ).mappings().all()  # fmt: skip
            by_id = {r["id"]: _plain(r) for r in ends}
            first, last = by_id[bounds[0]], by_id[bounds[1]]
    verified = await audit.verify()
    result = dataclasses.asdict(verified) if dataclasses.is_dataclass(verified) else dict(verified)
    bad = result.get("bad_id")
    return {
        "first_entry": first,
        "last_entry": last,
        "entries_in_period": bounds[2],
        "entries": [_plain(r) for r in rows],
        "entries_truncated": bounds[2] > len(rows),
        "verification": {
            **result,
            "intact": bool(result.get("ok")),
            "first_broken_id": bad,
            "broken_in_period": bad is not None
            and bounds[0] is not None
            and bounds[0] <= bad <= bounds[1],
        },
    }


async def compliance_report(
    config: Config,
    store: Store,
    audit: AuditLog,
    models: Sequence[str],
    period: Period,
    now: float,
) -> dict[str, Any]:
    """The compliance report over ``period`` for ``models`` (all when empty)."""
    history = History(store, period)
    registered = await history.model_names()
    known = sorted({m.name for m in config.models} | set(registered))
    for model in models:
        if model not in known:
            raise NotFound(f"model {model!r} is neither configured nor registered (known: {known})")
    chosen = list(models) or known
    versions = await history.versions(chosen)
    inventory = [
        {
            "model": v["model"],
            "version": v["version"],
            "status": v["status"],
            "registered_by": v["author"],
            "registered_at": v["created_at"],
            "registered_at_iso": iso(v["created_at"]),
            "mlflow_version": v["mlflow_version"],
            "model_uri": v["model_uri"],
            "parent": v["parent"],
            "params": v["params"],
            "metrics": v["metrics"],
            "lineage": _lineage(v),
        }
        for v in versions
    ]
    gate_runs = [
        {
            "model": v["model"],
            "version": v["version"],
            "at": v["created_at"],
            "at_iso": iso(v["created_at"]),
            "passed": (v["gate_report"] or {}).get("passed")
            if isinstance(v["gate_report"], dict)
            else None,
            "report": v["gate_report"],
        }
        for v in versions
        if v["gate_report"] is not None and period.since <= v["created_at"] <= period.until
    ]
    transitions = await history.transitions(chosen)
    rollouts = await history.rollouts(chosen)
    alerts = await history.alerts(chosen)
    jobs = await history.jobs(chosen)
    incidents = []
    for alert in alerts:
        later = [
            t for t in transitions if t["model"] == alert["model"] and t["ts"] >= alert["starts_at"]
        ]
        followed = [
            j
            for j in jobs
            if j["model"] == alert["model"] and j["created_at"] >= alert["starts_at"]
        ]
        incidents.append(
            {
                **alert,
                "starts_at_iso": iso(alert["starts_at"]),
                "ends_at_iso": iso(alert["ends_at"]),
                "actions": [
                    f"status {t['version']}: {t['from_status']} -> {t['to_status']} by "
                    f"{t['actor']} ({t['reason']})" for t in later
                ] + [
                    f"training job {j['id']} ({j['trigger']}): {j['state']}" for j in followed
                ],
            }
        )  # fmt: skip
    sent = [n for n in await history.notifications_sent() if n["model"] in (None, *chosen)]
    audit_section = await _audit_section(store, audit, period)
    counted = (
        inventory,
        gate_runs,
        transitions,
        rollouts,
        incidents,
        sent,
        audit_section["entries"],
    )
    empty = not any(counted)
    return {
        "kind": "compliance",
        "models": chosen,
        "period": period.to_dict(),
        "generated_at": now,
        "generated_at_iso": iso(now),
        "empty": empty,
        "message": (
            f"nothing recorded between {iso(period.since)} and {iso(period.until)}" if empty else ""
        ),
        "inventory": inventory,
        "gate_runs": gate_runs,
        "transitions": [{**t, "ts_iso": iso(t["ts"])} for t in transitions],
        "rollouts": [
            {**r, "started_at_iso": iso(r["started_at"]), "finished_at_iso": iso(r["finished_at"])}
            for r in rollouts
        ],
        "traffic_changes": await history.traffic_changes(chosen),
        "incidents": incidents,
        "training_jobs": jobs,
        "notifications": sent,
        "roles": [{"token": t.name, "role": t.role} for t in config.auth.tokens]
        or [{"token": "anonymous (no tokens configured; loopback only)", "role": "admin"}],
        "audit": audit_section,
    }
