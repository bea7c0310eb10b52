"""Numbers a state reads at run time: Wait delays and Map failure tolerances.

Each check raises StatesFailure("States.Runtime", <AWS's wording>); the interpreter adds the
"An error occurred while executing the state ..." prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from statemachine import paths
from statemachine.errors import StatesFailure
from statemachine.payload import Scope, dumps

JSON = Any
MAX_WAIT_SECONDS = 2**31 - 1  # AWS: "Wait state delay is too long" beyond a signed 32-bit count

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp with uppercase T and an offset (Z or ±hh:mm), else None."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if offset == "Z":
        tz = UTC
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        return None


def max_concurrency(fields: Mapping[str, JSON], read: Callable[[str], JSON]) -> int:
    """A Map's MaxConcurrency (0: unlimited); MaxConcurrencyPath may name a numeric string."""
    if "MaxConcurrencyPath" not in fields:
        value = fields.get("MaxConcurrency", 0)
        if not _is_int(value) or value < 0:
            raise StatesFailure(
                "States.Runtime",
                f"MaxConcurrency must be a non-negative integer, not {_show(value)}",
            )
        return value  # type: ignore[no-any-return]
    path = fields["MaxConcurrencyPath"]
    value = _numeric_string(read(path), int)
    if not _is_int(value) or value < 0:
        raise StatesFailure(
            "States.Runtime",
            f'The MaxConcurrencyPath field refers to value "{_show(value)}" which is not a valid '
            f"non-negative integer: {path}",
        )
    return value  # type: ignore[no-any-return]


def batch_limits(batcher: JSON, read: Callable[[str], JSON]) -> tuple[int, int]:
    """ItemBatcher's MaxItemsPerBatch and MaxInputBytesPerBatch (0: no limit)."""
    if not isinstance(batcher, dict):
        raise StatesFailure("States.Runtime", "ItemBatcher must be an object")
    limits = []
    for key in ("MaxItemsPerBatch", "MaxInputBytesPerBatch"):
        value: JSON = batcher.get(key, 0)
        if f"{key}Path" in batcher:
            value = _numeric_string(read(batcher[f"{key}Path"]), int)
        if not _is_int(value) or value < 0:
            raise StatesFailure(
                "States.Runtime",
                f"The {key} field must be a non-negative integer, got {_show(value)}",
            )
        limits.append(value)
    if limits[1] > 262_144:
        raise StatesFailure("States.Runtime", "MaxInputBytesPerBatch cannot exceed 262144 bytes")
    return limits[0], limits[1]


def _numeric_string(value: JSON, kind: Callable[[str], JSON]) -> JSON:
    """AWS accepts a number written as a string in the *Path forms (corpus: assign, map cases)."""
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return value
    return value


def _is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fire_at(fields: Mapping[str, JSON], effective: JSON, scope: Scope, now: datetime) -> datetime:
    """When a Wait state entered at ``now`` ends (States Language spec, "Wait State")."""
    if "Seconds" in fields:
        seconds = fields["Seconds"]
        return now + timedelta(seconds=_checked_delay(seconds))
    if "SecondsPath" in fields:
        path = fields["SecondsPath"]
        value = _read(path, effective, scope)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value):
            raise StatesFailure(
                "States.Runtime",
                f"The SecondsPath parameter cannot be parsed as a long value: {path} == {_show(value)}",
            )
        if value < 0:
            raise StatesFailure(
                "States.Runtime",
                f"The SecondsPath parameter references a negative value: {path} == {value}",
            )
        return now + timedelta(seconds=_checked_delay(value))
    if "TimestampPath" in fields:
        path = fields["TimestampPath"]
        value = _read(path, effective, scope)
        moment = parse_timestamp(value) if isinstance(value, str) else None
        if moment is None:
            raise StatesFailure(
                "States.Runtime",
                f"The TimestampPath parameter does not reference a valid ISO-8601 extended offset "
                f"date-time format string: {path} == {_show(value)}",
            )
    else:
        text = fields.get("Timestamp")
        moment = parse_timestamp(text) if isinstance(text, str) else None
        if moment is None:
            raise StatesFailure(
                "States.Runtime", f"The Timestamp value is not a valid timestamp: {text}"
            )
    if (moment - now).total_seconds() > MAX_WAIT_SECONDS:
        raise StatesFailure("States.Runtime", "Wait state delay is too long.")
    return max(moment, now)


def _checked_delay(seconds: JSON) -> float:
    if seconds > MAX_WAIT_SECONDS:
        raise StatesFailure("States.Runtime", "Wait state delay is too long.")
    return float(seconds)


def _show(value: JSON) -> str:
    return value if isinstance(value, str) else dumps(value)


def _read(path: str, effective: JSON, scope: Scope) -> JSON:
    try:
        return (
            scope.resolve(path)
            if not path.startswith("$") or path.startswith("$$")
            else paths.read(path, effective)
        )
    except paths.PathError as exc:
        raise StatesFailure("States.Runtime", f"Invalid path '{path}' : {exc.message}") from None


def tolerance(
    fields: Mapping[str, JSON], read: Callable[[str], JSON]
) -> tuple[float | None, float | None]:
    """A Map's ToleratedFailureCount and ToleratedFailurePercentage; None where not set."""
    count: JSON = fields.get("ToleratedFailureCount")
    percentage: JSON = fields.get("ToleratedFailurePercentage")
    if "ToleratedFailureCountPath" in fields:
        path = fields["ToleratedFailureCountPath"]
        count = _numeric_string(read(path), int)
        if not _is_int(count):
            raise StatesFailure(
                "States.Runtime",
                f'The ToleratedFailureCountPath field refers to value "{_show(count)}" which is not a valid integer: {path}',
            )
    if "ToleratedFailurePercentagePath" in fields:
        path = fields["ToleratedFailurePercentagePath"]
        percentage = _numeric_string(read(path), float)
        if not isinstance(percentage, int | float) or isinstance(percentage, bool):
            raise StatesFailure(
                "States.Runtime",
                f'The ToleratedFailurePercentagePath field refers to value "{_show(percentage)}" which is not a valid number: {path}',
            )
    if count is not None and count < 0:
        raise StatesFailure("States.Runtime", "ToleratedFailureCount cannot be negative.")
    if percentage is not None and not 0 <= percentage <= 100:
        raise StatesFailure(
            "States.Runtime", "ToleratedFailurePercentage must be between 0 and 100."
        )
    return count, percentage
