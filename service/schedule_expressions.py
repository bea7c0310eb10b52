"""Schedule expressions in EventBridge Scheduler's syntax, and their fire times.

* ``rate(VALUE UNIT)``: every VALUE minutes, hours or days (``rate(1 minute)``,
  ``rate(5 minutes)``, ``rate(2 days)``; singular for 1, plural otherwise, as AWS wants).
  ``seconds`` only with ``allow_seconds`` (a dev/test setting: AWS's minimum is a minute).
  Ticks are counted from the schedule's anchor (when it was created or its expression
  last changed): anchor + n × period.
* ``cron(minutes hours day-of-month month day-of-week year)``: ``*``, ``,``, ``-``, ``/`` in
  every field; ``?`` in day-of-month or day-of-week (one of the two must be ``?``, the
  other is the one that counts); ``L`` (last day of the month; ``L`` alone in day-of-week
  is Saturday, ``5L`` the last Thursday), ``W`` (``15W`` the weekday nearest the 15th
  within the month, ``LW`` the last weekday) and ``#`` (``2#1``: the first Monday). Months
  ``JAN``-``DEC``, days ``SUN``-``SAT`` (1 = Sunday). A range must go upwards (no
  ``FRI-MON`` wrap-around); ``L-n`` offsets are not supported.
* ``at(yyyy-mm-ddThh:mm:ss)``: once.

cron and at are wall-clock times in the schedule's time zone (an IANA name). Across DST:
a local time that a spring-forward skips fires at the same offset past the change (02:30
becomes 03:30, and only once if 03:30 also matches); a local time that a fall-back repeats
fires once, at its first occurrence.

Pure: no I/O, no clock; the caller passes the times.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = {name.upper(): n for n, name in enumerate(calendar.month_abbr) if name}
DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_RATE = re.compile(r"^rate\(\s*(\d+)\s+([a-z]+)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_LAST_YEAR = 2199  # AWS's year field: 1970-2199


class ScheduleExpressionError(ValueError):
    """The schedule expression or time zone is not valid; the message says why."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate(...)``: a fixed period from an anchor."""

    seconds: int


@dataclass(frozen=True, slots=True)
class At:
    """``at(...)``: one local time."""

    local: datetime  # naive, in the schedule's time zone


@dataclass(frozen=True, slots=True)
class Cron:
    """``cron(...)``: the sets each field allows, and the day rules."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    years: frozenset[int]
    # Exactly one of these is set (the other field was '?').
    day_of_month: tuple[str, ...] | None  # items: "5", "L", "LW", "15W"
    day_of_week: tuple[str, ...] | None  # items: "2" (MON), "6L", "2#1"

    def days(self, year: int, month: int) -> list[int]:
        """The days of ``month`` the day fields allow, ascending."""
        last = calendar.monthrange(year, month)[1]
        found: set[int] = set()
        if self.day_of_month is not None:
            for item in self.day_of_month:
                if item == "L":
                    found.add(last)
                elif item == "LW":
                    found.add(_nearest_weekday(year, month, last))
                elif item.endswith("W"):
                    day = int(item[:-1])
                    if day <= last:
                        found.add(_nearest_weekday(year, month, day))
                elif int(item) <= last:
                    found.add(int(item))
        else:
            assert self.day_of_week is not None
            first = _aws_weekday(date(year, month, 1))
            for item in self.day_of_week:
                if item.endswith("L"):  # the last such weekday of the month
                    wanted = int(item[:-1])
                    day = last - (_aws_weekday(date(year, month, last)) - wanted) % 7
                    found.add(day)
                elif "#" in item:
                    wanted, nth = (int(x) for x in item.split("#"))
                    day = 1 + (wanted - first) % 7 + 7 * (nth - 1)
                    if day <= last:
                        found.add(day)
                else:
                    wanted = int(item)
                    found.update(range(1 + (wanted - first) % 7, last + 1, 7))
        return sorted(found)


Expression = Rate | At | Cron


def _aws_weekday(day: date) -> int:
    """1 = Sunday ... 7 = Saturday (Python's Monday = 0)."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest ``day``, without leaving the month (Quartz's ``W``)."""
    last = calendar.monthrange(year, month)[1]
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: Friday before, or Monday after when the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, or Friday before when the last
        return day + 1 if day < last else day - 2
    return day


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or ScheduleExpressionError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(
            f"Unknown time zone '{name}' (an IANA name such as 'UTC' or 'Europe/Berlin')"
        ) from None


def parse(text: str, *, allow_seconds: bool = False) -> Expression:
    """Parse ``rate(...)``, ``cron(...)`` or ``at(...)``; ScheduleExpressionError says what
    is wrong."""
    if not isinstance(text, str):
        raise ScheduleExpressionError("The schedule expression must be a string")
    text = text.strip()
    if text.startswith("rate("):
        return _parse_rate(text, allow_seconds)
    if text.startswith("cron("):
        found = _CRON.match(text)
        if found is None:
            raise ScheduleExpressionError(f"Invalid cron expression '{text}': missing ')'")
        return _parse_cron(text, found.group(1).split())
    if text.startswith("at("):
        at = _AT.match(text)
        if at is None:
            raise ScheduleExpressionError(
                f"Invalid at expression '{text}': expected at(yyyy-mm-ddThh:mm:ss)"
            )
        try:
            return At(datetime.fromisoformat(at.group(1)))
        except ValueError as exc:
            raise ScheduleExpressionError(f"Invalid at expression '{text}': {exc}") from None
    raise ScheduleExpressionError(
        f"Invalid schedule expression '{text}': expected rate(...), cron(...) or at(...)"
    )


def _parse_rate(text: str, allow_seconds: bool) -> Rate:
    found = _RATE.match(text)
    if found is None:
        raise ScheduleExpressionError(
            f"Invalid rate expression '{text}': expected rate(VALUE UNIT), e.g. rate(5 minutes)"
        )
    value, unit = int(found.group(1)), found.group(2)
    singular = unit[:-1] if unit.endswith("s") else unit
    units = dict(_UNITS, second=1) if allow_seconds else _UNITS
    if singular not in units:
        hint = (
            ""
            if singular != "second"
            else " (seconds need the dev setting STATEWRIGHT_SCHEDULE_SECONDS)"
        )
        raise ScheduleExpressionError(
            f"Invalid rate expression '{text}': the unit must be minute(s), hour(s) or day(s){hint}"
        )
    if value < 1:
        raise ScheduleExpressionError(f"Invalid rate expression '{text}': the value must be >= 1")
    if (value == 1) != (unit == singular):
        raise ScheduleExpressionError(
            f"Invalid rate expression '{text}': use '{singular}' for 1 and '{singular}s' otherwise"
        )
    return Rate(value * units[singular])


# name, lowest, highest, names, the special characters allowed besides , - * /
_FIELDS: tuple[tuple[str, int, int, dict[str, int], str], ...] = (
    ("minutes", 0, 59, {}, ""),
    ("hours", 0, 23, {}, ""),
    ("day-of-month", 1, 31, {}, "?LW"),
    ("month", 1, 12, MONTHS, ""),
    ("day-of-week", 1, 7, DAYS, "?L#"),
    ("year", 1970, _LAST_YEAR, {}, ""),
)


def _parse_cron(text: str, fields: list[str]) -> Cron:
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"Invalid cron expression '{text}': it needs 6 fields (minutes hours day-of-month "
            f"month day-of-week year), not {len(fields)}"
        )
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(
            f"Invalid cron expression '{text}': exactly one of day-of-month and day-of-week "
            "must be '?'"
        )

    def plain(index: int) -> list[int]:
        name, low, high, names, _ = _FIELDS[index]
        return _values(text, name, fields[index].upper(), low, high, names)

    return Cron(
        minutes=tuple(plain(0)),
        hours=tuple(plain(1)),
        months=frozenset(plain(3)),
        years=frozenset(plain(5)),
        day_of_month=None if dom == "?" else _day_of_month(text, dom.upper()),
        day_of_week=None if dow == "?" else _day_of_week(text, dow.upper()),
    )


def _error(text: str, field: str, item: str, why: str) -> ScheduleExpressionError:
    return ScheduleExpressionError(f"Invalid cron expression '{text}': {field} '{item}': {why}")


def _number(text: str, field: str, item: str, low: int, high: int, names: dict[str, int]) -> int:
    if item in names:
        return names[item]
    if not item.isdigit():
        return _fail(text, field, item, low, high, names)
    value = int(item)
    if not low <= value <= high:
        raise _error(text, field, item, f"out of range {low}-{high}")
    return value


def _fail(text: str, field: str, item: str, low: int, high: int, names: dict[str, int]) -> int:
    allowed = f"{low}-{high}" + (f" or {'/'.join(names)}" if names else "")
    raise _error(text, field, item, f"expected {allowed}")


def _values(
    text: str, field: str, spec: str, low: int, high: int, names: dict[str, int]
) -> list[int]:
    """The values a list of ``*``, ``N``, ``A-B`` with an optional ``/STEP`` allows."""
    out: set[int] = set()
    for item in spec.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise _error(text, field, item, "the step after '/' must be a number >= 1")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _number(text, field, a, low, high, names)
            end = _number(text, field, b, low, high, names)
            if start > end:
                raise _error(text, field, item, "a range must go upwards (no wrap-around)")
        else:
            start = _number(text, field, base, low, high, names)
            end = high if step_text else start  # "0/15": from 0 every 15
        out.update(range(start, end + 1, step))
    return sorted(out)


def _day_of_month(text: str, spec: str) -> tuple[str, ...]:
    field = "day-of-month"
    items: list[str] = []
    for item in spec.split(","):
        if item in ("L", "LW"):
            items.append(item)
        elif item.endswith("W"):
            if "," in spec:
                raise _error(text, field, spec, "'W' cannot be combined with a list")
            items.append(f"{_number(text, field, item[:-1], 1, 31, {})}W")
        elif "L" in item or "W" in item or "?" in item or "#" in item:
            raise _error(text, field, item, "use L, LW or NW (e.g. 15W) on their own")
        else:
            items.extend(str(v) for v in _values(text, field, item, 1, 31, {}))
    return tuple(items)


def _day_of_week(text: str, spec: str) -> tuple[str, ...]:
    field = "day-of-week"
    items: list[str] = []
    for item in spec.split(","):
        if item == "L":
            items.append("7")  # 'L' alone: the last day of the week, Saturday
        elif item.endswith("L"):
            items.append(f"{_number(text, field, item[:-1], 1, 7, DAYS)}L")
        elif "#" in item:
            day, _, nth = item.partition("#")
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise _error(text, field, item, "the number after '#' must be 1-5")
            items.append(f"{_number(text, field, day, 1, 7, DAYS)}#{nth}")
        elif "L" in item or "?" in item or "W" in item:
            raise _error(text, field, item, "use L (Saturday), NL (e.g. 6L) or N#K on their own")
        else:
            items.extend(str(v) for v in _values(text, field, item, 1, 7, DAYS))
    return tuple(items)


def next_fire(
    expression: Expression, zone: ZoneInfo, after: datetime, anchor: datetime
) -> datetime | None:
    """The first fire time strictly after ``after`` (aware UTC), None when there is none."""
    after = after.astimezone(UTC)
    if isinstance(expression, Rate):
        period = timedelta(seconds=expression.seconds)
        return anchor + max((after - anchor) // period + 1, 1) * period
    if isinstance(expression, At):
        at = _instant(expression.local, zone)
        return at if at > after else None
    found: datetime | None = None
    for day in _cron_days(expression, zone, after):
        later = [t for t in day if t > after]
        if found is not None:
            # A skipped local time of the day before can land after this day's first.
            return min([found, *later])
        if later:
            found = min(later)
    return found


def fire_times(
    expression: Expression, zone: ZoneInfo, after: datetime, anchor: datetime, count: int
) -> list[datetime]:
    """The next ``count`` fire times after ``after``."""
    out: list[datetime] = []
    at: datetime | None = after
    while at is not None and len(out) < count:
        at = next_fire(expression, zone, at, anchor)
        if at is not None:
            out.append(at)
    return out


def latest_fire(
    expression: Expression, zone: ZoneInfo, due: datetime, now: datetime, anchor: datetime
) -> datetime:
    """The last fire time at or before ``now``, starting from ``due`` (itself a fire time at
    or before ``now``): what 'catch up once' starts after a missed window."""
    if isinstance(expression, Rate):
        period = timedelta(seconds=expression.seconds)
        return due + ((now - due) // period) * period
    latest = due
    while True:
        following = next_fire(expression, zone, latest, anchor)
        if following is None or following > now:
            return latest
        latest = following


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in ``zone`` as UTC. fold=0: a repeated time is its first occurrence,
    and a skipped one takes the offset from before the change (02:30 becomes 03:30)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _cron_days(cron: Cron, zone: ZoneInfo, after: datetime) -> Iterator[list[datetime]]:
    """The candidate fire times of each matching local day, from the day before ``after``'s
    (a skipped local time of that day can land after ``after``)."""
    start = after.astimezone(zone).date() - timedelta(days=1)
    for year in sorted(y for y in cron.years if y >= start.year):
        for month in sorted(cron.months):
            if (year, month) < (start.year, start.month):
                continue
            for day in cron.days(year, month):
                if date(year, month, day) < start:
                    continue
                yield [
                    _instant(datetime(year, month, day, hour, minute), zone)
                    for hour in cron.hours
                    for minute in cron.minutes
                ]
