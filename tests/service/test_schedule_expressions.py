"""The schedule expression parser and fire times (pure: no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.schedule_expressions import (
    ScheduleExpressionError,
    fire_times,
    latest_fire,
    next_fire,
    parse,
    time_zone,
)

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def _local(zone: str, times: list[datetime]) -> list[str]:
    return [t.astimezone(time_zone(zone)).strftime("%Y-%m-%d %a %H:%M %Z") for t in times]


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # every day at 12:00
        (
            "cron(0 12 * * ? *)",
            _utc(2026, 1, 1),
            ["2026-01-01 Thu 12:00 UTC", "2026-01-02 Fri 12:00 UTC"],
        ),
        # steps and ranges: every 15 minutes from 10 past, 9 to 10 o'clock
        (
            "cron(10/15 9-10 * * ? *)",
            _utc(2026, 1, 1),
            ["2026-01-01 Thu 09:10 UTC", "2026-01-01 Thu 09:25 UTC", "2026-01-01 Thu 09:40 UTC"],
        ),
        # lists and names: Monday and Friday, in March only
        (
            "cron(0 8 ? MAR MON,FRI *)",
            _utc(2026, 1, 1),
            ["2026-03-02 Mon 08:00 UTC", "2026-03-06 Fri 08:00 UTC", "2026-03-09 Mon 08:00 UTC"],
        ),
        # weekdays by number (1 = Sunday): 2-6 is Monday to Friday
        (
            "cron(0 0 ? * 2-6 *)",
            _utc(2026, 1, 2, 12),
            ["2026-01-05 Mon 00:00 UTC", "2026-01-06 Tue 00:00 UTC", "2026-01-07 Wed 00:00 UTC"],
        ),
        # the last day of the month
        (
            "cron(0 18 L * ? *)",
            _utc(2026, 1, 1),
            ["2026-01-31 Sat 18:00 UTC", "2026-02-28 Sat 18:00 UTC", "2026-03-31 Tue 18:00 UTC"],
        ),
        # the weekday nearest the 1st (Saturday 1 Aug 2026 -> Monday 3rd, not July)
        (
            "cron(0 9 1W * ? *)",
            _utc(2026, 7, 15),
            ["2026-08-03 Mon 09:00 UTC", "2026-09-01 Tue 09:00 UTC", "2026-10-01 Thu 09:00 UTC"],
        ),
        # the weekday nearest the 15th (Sunday 15 Feb 2026 -> Monday 16th)
        ("cron(0 9 15W * ? *)", _utc(2026, 2, 1), ["2026-02-16 Mon 09:00 UTC"]),
        # the last weekday of the month (31 Jan 2026 is a Saturday)
        (
            "cron(0 9 LW * ? *)",
            _utc(2026, 1, 1),
            ["2026-01-30 Fri 09:00 UTC", "2026-02-27 Fri 09:00 UTC"],
        ),
        # the last Friday of the month
        (
            "cron(0 17 ? * 6L *)",
            _utc(2026, 1, 1),
            ["2026-01-30 Fri 17:00 UTC", "2026-02-27 Fri 17:00 UTC"],
        ),
        # 'L' alone in day-of-week: Saturday
        (
            "cron(0 7 ? * L *)",
            _utc(2026, 1, 1),
            ["2026-01-03 Sat 07:00 UTC", "2026-01-10 Sat 07:00 UTC"],
        ),
        # the first Monday, the third Wednesday (by name)
        (
            "cron(0 9 ? * 2#1 *)",
            _utc(2026, 1, 1),
            ["2026-01-05 Mon 09:00 UTC", "2026-02-02 Mon 09:00 UTC"],
        ),
        ("cron(0 9 ? * WED#3 *)", _utc(2026, 1, 1), ["2026-01-21 Wed 09:00 UTC"]),
        # a fifth Friday exists only in some months
        (
            "cron(0 9 ? * FRI#5 *)",
            _utc(2026, 1, 1),
            ["2026-01-30 Fri 09:00 UTC", "2026-05-29 Fri 09:00 UTC"],
        ),
        # the 31st skips shorter months; the year field ends the schedule
        ("cron(0 0 31 * ? 2026)", _utc(2026, 11, 1), ["2026-12-31 Thu 00:00 UTC"]),
        # 29 February: leap years only
        (
            "cron(0 0 29 2 ? *)",
            _utc(2026, 1, 1),
            ["2028-02-29 Tue 00:00 UTC", "2032-02-29 Sun 00:00 UTC"],
        ),
    ],
)
def test_cron_fire_times(expression: str, after: datetime, expected: list[str]) -> None:
    times = fire_times(parse(expression), time_zone("UTC"), after, ANCHOR, len(expected))
    assert _local("UTC", times) == expected


def test_the_year_field_can_end_a_schedule() -> None:
    expression = parse("cron(0 0 31 * ? 2026)")
    assert next_fire(expression, time_zone("UTC"), _utc(2026, 12, 31), ANCHOR) is None


def test_cron_in_a_time_zone_follows_its_wall_clock_across_dst() -> None:
    zone = "America/New_York"  # spring forward 8 Mar 2026 02:00, fall back 1 Nov 2026 02:00
    daily = parse("cron(30 2 * * ? *)")
    spring = fire_times(daily, time_zone(zone), _utc(2026, 3, 6, 12), ANCHOR, 4)
    # 02:30 does not exist on 8 March: it fires at 03:30 EDT, the same offset past the change.
    assert _local(zone, spring) == [
        "2026-03-07 Sat 02:30 EST",
        "2026-03-08 Sun 03:30 EDT",
        "2026-03-09 Mon 02:30 EDT",
        "2026-03-10 Tue 02:30 EDT",
    ]
    assert [t.hour for t in spring] == [7, 7, 6, 6]  # UTC moves by the hour
    # 01:30 happens twice on 1 November: it fires once, the first time.
    early = parse("cron(30 1 * * ? *)")
    autumn = fire_times(early, time_zone(zone), _utc(2026, 10, 31, 12), ANCHOR, 3)
    assert _local(zone, autumn) == [
        "2026-11-01 Sun 01:30 EDT",
        "2026-11-02 Mon 01:30 EST",
        "2026-11-03 Tue 01:30 EST",
    ]
    # Hourly across the spring gap: 02:00 maps onto 03:00, which fires once.
    hourly = parse("cron(0 1-4 * * ? *)")
    gap = fire_times(hourly, time_zone(zone), _utc(2026, 3, 8, 5), ANCHOR, 3)
    assert _local(zone, gap) == [
        "2026-03-08 Sun 01:00 EST",
        "2026-03-08 Sun 03:00 EDT",
        "2026-03-08 Sun 04:00 EDT",
    ]
    # Europe/Berlin: a 09:00 job stays at 09:00 local, 08:00 then 07:00 UTC.
    berlin = fire_times(
        parse("cron(0 9 * * ? *)"), time_zone("Europe/Berlin"), _utc(2026, 3, 28), ANCHOR, 2
    )
    assert [t.hour for t in berlin] == [8, 7]


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 days)", 172800),
        ("rate( 3 hours )", 10800),
    ],
)
def test_rate_ticks_from_the_anchor(expression: str, seconds: int) -> None:
    rate = parse(expression)
    period = timedelta(seconds=seconds)
    zone = time_zone("UTC")
    assert next_fire(rate, zone, ANCHOR, ANCHOR) == ANCHOR + period
    assert next_fire(rate, zone, ANCHOR - timedelta(days=9), ANCHOR) == ANCHOR + period
    assert next_fire(rate, zone, ANCHOR + period * 3.5, ANCHOR) == ANCHOR + period * 4
    assert next_fire(rate, zone, ANCHOR + period * 4, ANCHOR) == ANCHOR + period * 5
    assert latest_fire(rate, zone, ANCHOR + period, ANCHOR + period * 7.9, ANCHOR) == (
        ANCHOR + period * 7
    )


def test_seconds_only_when_allowed() -> None:
    rate = parse("rate(2 seconds)", allow_seconds=True)
    assert next_fire(rate, time_zone("UTC"), ANCHOR, ANCHOR) == ANCHOR + timedelta(seconds=2)
    with pytest.raises(ScheduleExpressionError, match="STATEWRIGHT_SCHEDULE_SECONDS"):
        parse("rate(2 seconds)")


def test_at_fires_once_in_its_time_zone() -> None:
    at = parse("at(2026-07-01T09:00:00)")
    zone = time_zone("Europe/Berlin")
    assert next_fire(at, zone, ANCHOR, ANCHOR) == _utc(2026, 7, 1, 7)
    assert next_fire(at, zone, _utc(2026, 7, 1, 7), ANCHOR) is None


def test_latest_fire_of_a_cron_after_a_missed_window() -> None:
    cron = parse("cron(0 * * * ? *)")
    assert latest_fire(
        cron, time_zone("UTC"), _utc(2026, 1, 1, 3), _utc(2026, 1, 1, 9, 59), ANCHOR
    ) == _utc(2026, 1, 1, 9)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 12 * * ?)", "it needs 6 fields"),
        ("cron(0 12 * * ? * *)", "it needs 6 fields"),
        ("cron(60 12 * * ? *)", "minutes '60': out of range 0-59"),
        ("cron(0 24 * * ? *)", "hours '24': out of range 0-23"),
        ("cron(0 0 0 * ? *)", "day-of-month '0': out of range 1-31"),
        ("cron(0 0 * 13 ? *)", "month '13': out of range 1-12"),
        ("cron(0 0 * FOO ? *)", "month 'FOO': expected 1-12 or JAN/FEB"),
        ("cron(0 0 ? * 8 *)", "day-of-week '8': out of range 1-7"),
        ("cron(0 0 * * ? 1969)", "year '1969': out of range 1970-2199"),
        ("cron(*/0 0 * * ? *)", "the step after '/' must be a number >= 1"),
        ("cron(0 22-2 * * ? *)", "a range must go upwards"),
        ("cron(0 0 ? * FRI-MON *)", "a range must go upwards"),
        ("cron(0 0 ? * 2#6 *)", "the number after '#' must be 1-5"),
        ("cron(0 0 L-2 * ? *)", "use L, LW or NW"),
        ("cron(0 0 ? * 2W *)", "use L (Saturday), NL"),
        ("cron(0 0 1W,15 * ? *)", "'W' cannot be combined with a list"),
        ("cron(0 12 * * ? *", "missing ')'"),
        ("rate(0 minutes)", "the value must be >= 1"),
        ("rate(1 minutes)", "use 'minute' for 1 and 'minutes' otherwise"),
        ("rate(5 minute)", "use 'minute' for 1 and 'minutes' otherwise"),
        ("rate(5 weeks)", "the unit must be minute(s), hour(s) or day(s)"),
        ("rate(-5 minutes)", "expected rate(VALUE UNIT)"),
        ("rate(five minutes)", "expected rate(VALUE UNIT)"),
        ("at(2026-02-30T00:00:00)", "day is out of range"),
        ("at(2026-02-01 00:00)", "expected at(yyyy-mm-ddThh:mm:ss)"),
        ("every 5 minutes", "expected rate(...), cron(...) or at(...)"),
        ("", "expected rate(...), cron(...) or at(...)"),
    ],
)
def test_invalid_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError) as caught:
        parse(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "", "utc+1"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(ScheduleExpressionError, match="Unknown time zone"):
        time_zone(name)
