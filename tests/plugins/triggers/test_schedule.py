"""Cron schedules in a configured time zone: month ends, DST, missed runs, validation."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mlwarden.errors import ConfigError
from mlwarden.plugins.triggers.schedule import ScheduleTrigger, cron_problem, next_run
from mlwarden.types import Event, TriggerContext


def runs(expr: str, start: datetime, n: int, tz: str) -> list[str]:
    """The next ``n`` runs after ``start`` as ISO strings in ``tz``."""
    out, t = [], start.timestamp()
    for _ in range(n):
        t = next_run(expr, t, tz)
        out.append(datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat())
    return out


BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_monthly_across_month_ends_and_a_dst_change():
    got = runs("@monthly", datetime(2026, 1, 31, 12, tzinfo=BERLIN), 4, "Europe/Berlin")
    assert got == [
        "2026-02-01T00:00:00+01:00",
        "2026-03-01T00:00:00+01:00",
        "2026-04-01T00:00:00+02:00",  # after the spring-forward of 29 March
        "2026-05-01T00:00:00+02:00",
    ]


def test_day_31_skips_short_months_and_feb_29_waits_for_a_leap_year():
    got = runs("0 6 31 * *", datetime(2026, 1, 31, 7, tzinfo=UTC), 3, "UTC")
    assert got == [
        "2026-03-31T06:00:00+00:00",
        "2026-05-31T06:00:00+00:00",
        "2026-07-31T06:00:00+00:00",
    ]
    assert runs("0 0 29 2 *", datetime(2026, 3, 1, tzinfo=UTC), 1, "UTC") == [
        "2028-02-29T00:00:00+00:00"
    ]


def test_weekly_and_daily_aliases_at_year_end():
    assert runs("@weekly", datetime(2026, 12, 28, 1, tzinfo=UTC), 2, "UTC") == [
        "2027-01-03T00:00:00+00:00",
        "2027-01-10T00:00:00+00:00",
    ]
    assert runs("@daily", datetime(2026, 12, 31, 0, 0, 1, tzinfo=UTC), 1, "UTC") == [
        "2027-01-01T00:00:00+00:00"
    ]


def test_a_time_skipped_by_spring_forward_runs_just_after_the_gap():
    got = runs("30 2 * * *", datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3, "Europe/Berlin")
    assert got == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    got = runs("30 2 * * *", datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2, "America/New_York")
    assert got == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_a_time_repeated_by_fall_back_runs_once():
    got = runs("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3, "Europe/Berlin")
    assert got == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_hourly_runs_every_real_hour_through_fall_back():
    got = runs("0 * * * *", datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN), 4, "Europe/Berlin")
    assert got == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_daily_in_new_york_keeps_local_midnight_across_fall_back():
    start = datetime(2026, 10, 31, 12, tzinfo=NEW_YORK)
    first, second = (
        next_run("@daily", start.timestamp(), "America/New_York"),
        next_run(
            "@daily", next_run("@daily", start.timestamp(), "America/New_York"), "America/New_York"
        ),
    )
    assert second - first == 25 * 3600  # the day of the change has 25 hours
    assert datetime.fromtimestamp(second, NEW_YORK).hour == 0


def test_missed_runs_while_down_make_one_run():
    trigger = ScheduleTrigger(cron="@daily", timezone="UTC")
    last = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    now = datetime(2026, 1, 5, 0, 0, 5, tzinfo=UTC).timestamp()
    decision = trigger.evaluate(TriggerContext(model="m", now=now, last_fired=last))
    assert decision.fire
    assert decision.data["missed_runs"] == 3  # Jan 2, 3, 4 missed; Jan 5 runs once
    assert decision.data["due_at"] == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    after = trigger.evaluate(TriggerContext(model="m", now=now + 60, last_fired=now))
    assert not after.fire


def test_schedule_waits_for_its_first_slot_and_ignores_events():
    trigger = ScheduleTrigger(cron="0 6 * * *", timezone="UTC")
    armed = datetime(2026, 1, 1, 7, tzinfo=UTC).timestamp()
    ctx = TriggerContext(model="m", now=armed + 60, armed_at=armed)
    assert not trigger.evaluate(ctx).fire
    event = Event(kind="drift_detected", model="m")
    later = armed + 24 * 3600
    assert not trigger.evaluate(
        TriggerContext(model="m", now=later, armed_at=armed, event=event)
    ).fire
    assert trigger.evaluate(TriggerContext(model="m", now=later, armed_at=armed)).fire


@pytest.mark.parametrize(
    "expr", ["* * * * * *", "61 * * * *", "0 0 * *", "@fortnightly", "0 25 * * *", ""]
)
def test_invalid_schedules_are_refused(expr):
    assert cron_problem(expr)
    with pytest.raises(ValueError, match="cron"):
        ScheduleTrigger(cron=expr)


def test_config_names_the_bad_schedule_and_time_zone(make_config):
    with pytest.raises(ConfigError) as err:
        make_config(
            '[training]\ntimezone = "Mars/Olympus"\n'
            '[[models]]\nname = "m"\nschedule = "61 * * * *"\n'
        )
    text = str(err.value)
    assert "key 'training.timezone': unknown time zone 'Mars/Olympus'" in text
    assert "key 'models[0].schedule': not a valid cron expression: '61 * * * *'" in text
