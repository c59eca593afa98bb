"""The ``schedule`` trigger and the cron arithmetic it rests on (croniter + zoneinfo).

Policy, in the configured time zone (``training.timezone``):

- ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly`` or five cron fields;
- a wall-clock time skipped by a DST jump forward runs at the first instant after
  the gap (02:30 on the spring-forward night runs at 03:00);
- a wall-clock time repeated by a DST jump back runs once, at its first occurrence,
  when the hour is fixed (``30 2 * * *``); an hour wildcard (``0 * * * *``) runs in
  every real hour, like Vixie cron;
- runs missed while the daemon was down are caught up by *one* run at start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ...hookspecs import hookimpl
from ...types import Decision, TriggerContext

__all__ = ["ALIASES", "ScheduleTrigger", "cron_problem", "next_run", "timezone_problem"]

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

#: Bound on the slots counted when reporting runs missed while down.
_MAX_MISSED_COUNT = 1000


def _expand(expr: str) -> str:
    return ALIASES.get(expr.strip().lower(), expr.strip())


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a valid schedule, or None."""
    fields = _expand(expr).split()
    if len(fields) != 5:
        return (
            f"expected @hourly, @daily, @weekly, @monthly, @yearly or five cron fields "
            f"(minute hour day month weekday), got {expr!r}"
        )
    if not croniter.is_valid(" ".join(fields)):
        return f"not a valid cron expression: {expr!r}"
    return None


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Berlin')"
    return None


def _repeated(slot: datetime, zone: ZoneInfo) -> bool:
    """Whether ``slot`` is the second occurrence of a wall time repeated by DST."""
    wall = slot.astimezone(zone).replace(tzinfo=None)
    first = wall.replace(tzinfo=zone, fold=0).timestamp()
    second = wall.replace(tzinfo=zone, fold=1).timestamp()
    return first < second and slot.timestamp() == second


def next_run(expr: str, after: float, timezone: str = "UTC") -> float:
    """The first run of ``expr`` strictly after Unix time ``after``, in ``timezone``."""
    cron = _expand(expr)
    zone = ZoneInfo(timezone)
    fixed_hour = cron.split()[1] != "*"
    it = croniter(cron, datetime.fromtimestamp(after, zone))
    while True:
        slot = it.get_next(datetime)
        if fixed_hour and _repeated(slot, zone):
            continue
        if slot.timestamp() > after:
            return slot.timestamp()


class ScheduleTrigger:
    """Fire when a cron slot has come since the last run (one run for many missed slots).

    The model's ``schedule`` key configures it (``cron`` option), in
    ``training.timezone`` unless ``timezone`` is given. Until the first run, slots
    count from the moment the scheduler first watched the model, so adding a schedule
    does not start a run at once.

    Example
    -------
    >>> t = ScheduleTrigger(cron="@daily", timezone="UTC")
    >>> t.evaluate(TriggerContext(model="m", now=86400.0 + 5, last_fired=60.0)).fire
    True
    >>> t.evaluate(TriggerContext(model="m", now=86400.0 + 5, last_fired=86401.0)).fire
    False
    """

    name = "schedule"
    test_params: ClassVar[tuple[dict[str, Any], ...]] = (
        {"cron": "@daily"},
        {"cron": "30 2 * * 1-5", "timezone": "Europe/Berlin", "cooldown_seconds": 60},
    )

    def __init__(self, *, cron: str, timezone: str = "UTC", cooldown_seconds: float = 0.0):
        if problem := cron_problem(cron):
            raise ValueError(f"option 'cron': {problem}")
        if problem := timezone_problem(timezone):
            raise ValueError(f"option 'timezone': {problem}")
        if cooldown_seconds < 0:
            raise ValueError("option 'cooldown_seconds' must be >= 0")
        self.cron = cron
        self.timezone = timezone
        self.cooldown_seconds = float(cooldown_seconds)

    def next_run(self, after: float) -> float:
        return next_run(self.cron, after, self.timezone)

    def evaluate(self, context: TriggerContext) -> Decision:
        """Fire on a periodic tick when the next slot after the last run has passed."""
        if context.event is not None:
            return Decision(False)
        since = context.last_fired if context.last_fired is not None else context.armed_at
        if since is None:
            return Decision(False, "not armed yet")
        due = self.next_run(since)
        if due > context.now:
            return Decision(False, f"next run at {due}", data={"next_run": due})
        slots, slot = 0, due
        while slot <= context.now and slots < _MAX_MISSED_COUNT:
            slots += 1
            slot = self.next_run(slot)
        when = datetime.fromtimestamp(due, ZoneInfo(self.timezone)).isoformat()
        reason = f"schedule {self.cron!r} due at {when}"
        if slots > 1:
            reason += f" ({slots - 1} more slot(s) missed while down; running once)"
        return Decision(True, reason, data={"due_at": due, "missed_runs": slots - 1})


@hookimpl
def mlwarden_triggers() -> list[type]:
    return [ScheduleTrigger]
