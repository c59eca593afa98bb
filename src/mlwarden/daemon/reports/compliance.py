"""The compliance report's data: who changed what, and whether the audit log holds.

For every model asked (default: every configured or registered one) over a period:
the inventory of versions with status and lineage, each version's gate run, each
promotion and rollback (direct, or the start and end of a rollout), status transition,
rollout and traffic change with its actor, the actor's role and the reason, the drift
and performance incidents (alerts) and what followed them (training jobs, rollbacks),
the notifications sent, who holds which role, the audit entries of the period and the
audit chain's verification (the audit module's own ``verify``).

An actor's role is the one recorded with its audit entry nearest in time (the audit
middleware records the caller's role with each request), else the one the config gives
its token now; the daemon acting on its own (``mlwarden``: a rollout's steps, an
automatic rollback; ``registry``: the traffic table following an in-process registry
change) is ``system``, and any other actor (an in-process caller) has none.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
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
#: The actors of what the daemon does on its own (a rollout's controller; the traffic
#: table following an in-process registry change), and the role the report gives them.
SYSTEM_ACTORS, SYSTEM_ROLE = frozenset({"mlwarden", "registry"}), "system"


class _Roles:
    """The role an actor held at a time (see the module's docstring)."""

    def __init__(self, config: Config, entries: Sequence[dict[str, Any]]) -> None:
        self.configured = {t.name: t.role for t in config.auth.tokens}
        if not config.auth.tokens:
            self.configured["anonymous"] = "admin"
        self.recorded: defaultdict[str, list[tuple[float, str]]] = defaultdict(list)
        for entry in entries:
            detail = entry.get("detail")
            role = detail.get("role") if isinstance(detail, dict) else None
            if role:
                self.recorded[entry["actor"]].append((entry["ts"], role))

    def at(self, actor: str, ts: float) -> str:
        seen = self.recorded.get(actor)
        if seen:
            return min(seen, key=lambda entry: abs(entry[0] - ts))[1]
        if actor in self.configured:
            return self.configured[actor]
        return SYSTEM_ROLE if actor in SYSTEM_ACTORS else ""


def _target_model(target: str) -> str | None:
    """The model an audit target (``model=btc,version=1.2.0``) names."""
    for part in target.split(","):
        key, _, value = part.partition("=")
        if key in ("model", "name"):
            return value
    return None


async def _rollout_events(
    store: Store, period: Period, models: Sequence[str]
) -> list[dict[str, Any]]:
    """The audited starts and ends of rollouts (``rollout started``, ``rollout
    rolled_back``, ...) of ``models`` in the period."""
    a = audit_table
    query = (
        sa.select(a)
        .where(a.c.ts >= period.since, a.c.ts <= period.until, a.c.action.startswith("rollout "))
        .order_by(a.c.id)
    )
    async with store.connect() as conn:
        rows = [_plain(r) for r in (await conn.execute(query)).mappings().all()]
    return [r for r in rows if _target_model(r["target"]) in models]


def _promotions(
    transitions: Sequence[dict[str, Any]],
    rollout_events: Sequence[dict[str, Any]],
    roles: _Roles,
) -> list[dict[str, Any]]:
    """Each promotion and rollback, oldest first: a version entering production directly
    (from ``deprecated``: a rollback), and each audited start and end of a rollout."""
    events = []
    for t in transitions:
        if t["to_status"] != "production":
            continue
        events.append({
            "ts": t["ts"], "model": t["model"], "version": t["version"],
            "event": "rollback" if t["from_status"] == "deprecated" else "promotion",
            "actor": t["actor"], "reason": t["reason"], "rollout": None,
        })  # fmt: skip
    for r in rollout_events:
        target = dict(part.partition("=")[::2] for part in r["target"].split(","))
        detail = r["detail"] if isinstance(r["detail"], dict) else {}
        events.append({
            "ts": r["ts"], "model": target.get("model"), "version": target.get("version"),
            "event": r["action"], "actor": r["actor"], "reason": detail.get("reason", ""),
            "rollout": detail.get("rollout"),
        })  # fmt: skip
    events.sort(key=lambda e: e["ts"])
    return [{**e, "role": roles.at(e["actor"], e["ts"]), "ts_iso": iso(e["ts"])} for e in events]


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
    roles = _Roles(config, audit_section["entries"])
    promotions = _promotions(transitions, await _rollout_events(store, period, chosen), roles)
    traffic = await history.traffic_changes(chosen)
    counted = (
        inventory,
        gate_runs,
        promotions,
        transitions,
        traffic,
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
        "promotions": promotions,
        "transitions": [
            {**t, "ts_iso": iso(t["ts"]), "actor_role": roles.at(t["actor"], t["ts"])}
            for t in transitions
        ],
        "rollouts": [
            {
                **r,
                "started_at_iso": iso(r["started_at"]),
                "finished_at_iso": iso(r["finished_at"]),
                "actor_role": roles.at(r["actor"], r["started_at"]),
            }
            for r in rollouts
        ],
        "traffic_changes": [
            {**c, "ts_iso": iso(c["ts"]), "actor_role": roles.at(c["actor"], c["ts"])}
            for c in traffic
        ],
        "incidents": incidents,
        "training_jobs": jobs,
        "notifications": sent,
        "roles": [{"token": t.name, "role": t.role} for t in config.auth.tokens]
        or [{"token": "anonymous (no tokens configured; loopback only)", "role": "admin"}],
        "audit": audit_section,
    }
