"""Choice rules in JSONPath mode (States Language spec, "Choice Rules").

A rule is either a comparison (``Variable`` plus exactly one operator) or a Boolean
combination (``And``, ``Or``, ``Not``). Semantics recorded on AWS Step Functions:

* a value of the wrong type never matches: ``NumericEquals`` on a string, ``StringEquals`` on
  a number, ``BooleanEquals`` on ``0`` are simply false, not errors; JSON booleans are not
  numbers;
* a missing ``Variable`` (or ``...Path`` operand) fails the state with ``States.Runtime``,
  except for ``IsPresent`` which exists to test exactly that;
* strings compare like Java's ``String.compareTo`` (UTF-16 code units), numbers by value
  (``1 == 1.0``), timestamps as instants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from statemachine import paths
from statemachine.errors import DefinitionError, StatesFailure

if TYPE_CHECKING:
    from statemachine.payload import Scope

JSON = Any
Comparison = Callable[[JSON, JSON], bool]


class _Missing:
    """The value of a Variable path that selects nothing (only IsPresent accepts it)."""

    __slots__ = ()


_MISSING: Final = _Missing()


def _is_number(value: JSON) -> bool:
    # bool is an int subclass in Python, but JSON true/false are never numbers on AWS.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _utf16(text: str) -> bytes:
    # Big-endian UTF-16 bytes order like Java's String.compareTo (code unit by code unit);
    # Python's own str order is by code point and differs above U+FFFF.
    return text.encode("utf-16-be", "surrogatepass")


# "Timestamps" (spec, "Choice Rules"): RFC 3339 profile of ISO 8601 where an uppercase T
# separates date and time and an uppercase Z stands for a zero offset; numeric offsets
# (+01:00) and fractional seconds are allowed, a date alone or a missing offset is not.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d must not accept other scripts' digits
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=1024)
def parse_timestamp(text: str) -> int | None:
    """The instant a Step Functions timestamp denotes, in epoch nanoseconds; None if invalid."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, sign, offset_h, offset_m = match.group(7, 8, 9, 10)
    offset = timedelta()
    if sign is not None:
        if int(offset_h) > 23 or int(offset_m) > 59:
            return None
        offset = timedelta(hours=int(offset_h), minutes=int(offset_m))
        offset = -offset if sign == "-" else offset
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:  # 2023-02-30, 24:00:00, leap second 60 ...
        return None
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def _timestamps(value: JSON, other: JSON) -> tuple[int, int] | None:
    if not isinstance(value, str) or not isinstance(other, str):
        return None
    left, right = parse_timestamp(value), parse_timestamp(other)
    return None if left is None or right is None else (left, right)


@lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    # "StringMatches" (spec, "Choice Rules"): only * is special; \* is a literal star and
    # \\ a literal backslash. Any other backslash stands for itself.
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*\\":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _string(test: Callable[[bytes, bytes], bool]) -> Comparison:
    def compare(value: JSON, other: JSON) -> bool:
        if not isinstance(value, str) or not isinstance(other, str):
            return False
        return test(_utf16(value), _utf16(other))

    return compare


def _numeric(test: Callable[[float, float], bool]) -> Comparison:
    def compare(value: JSON, other: JSON) -> bool:
        return _is_number(value) and _is_number(other) and test(value, other)

    return compare


def _timestamp(test: Callable[[int, int], bool]) -> Comparison:
    def compare(value: JSON, other: JSON) -> bool:
        pair = _timestamps(value, other)
        return pair is not None and test(*pair)

    return compare


def _type_test(test: Callable[[JSON], bool]) -> Comparison:
    # Is* operators take a boolean: `"IsString": false` matches every non-string.
    def compare(value: JSON, expected: JSON) -> bool:
        return test(value) is expected

    return compare


def _matches(value: JSON, pattern: JSON) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    return _wildcard(pattern).fullmatch(value) is not None


def _boolean_equals(value: JSON, other: JSON) -> bool:
    return isinstance(value, bool) and isinstance(other, bool) and value is other


# Every comparison operator: fn(value of Variable, operand) -> bool. The operand is the
# rule's literal or, for the "<Operator>Path" variant, the value its path selects.
OPERATORS: Final[Mapping[str, Comparison]] = {
    "StringEquals": _string(lambda a, b: a == b),
    "StringLessThan": _string(lambda a, b: a < b),
    "StringGreaterThan": _string(lambda a, b: a > b),
    "StringLessThanEquals": _string(lambda a, b: a <= b),
    "StringGreaterThanEquals": _string(lambda a, b: a >= b),
    "StringMatches": _matches,
    "NumericEquals": _numeric(lambda a, b: a == b),
    "NumericLessThan": _numeric(lambda a, b: a < b),
    "NumericGreaterThan": _numeric(lambda a, b: a > b),
    "NumericLessThanEquals": _numeric(lambda a, b: a <= b),
    "NumericGreaterThanEquals": _numeric(lambda a, b: a >= b),
    "BooleanEquals": _boolean_equals,
    "TimestampEquals": _timestamp(lambda a, b: a == b),
    "TimestampLessThan": _timestamp(lambda a, b: a < b),
    "TimestampGreaterThan": _timestamp(lambda a, b: a > b),
    "TimestampLessThanEquals": _timestamp(lambda a, b: a <= b),
    "TimestampGreaterThanEquals": _timestamp(lambda a, b: a >= b),
    "IsNull": _type_test(lambda v: v is None),
    "IsPresent": _type_test(lambda v: v is not _MISSING),
    "IsNumeric": _type_test(_is_number),
    "IsString": _type_test(lambda v: isinstance(v, str)),
    "IsBoolean": _type_test(lambda v: isinstance(v, bool)),
    "IsTimestamp": _type_test(lambda v: isinstance(v, str) and parse_timestamp(v) is not None),
}

# The spec defines a "...Path" variant for every comparison except the type tests and
# StringMatches.
_WITHOUT_PATH_VARIANT: Final = frozenset(
    {"StringMatches", "IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"}
)
_ROOT = re.compile(r"\$(?:\$|[A-Za-z_][A-Za-z0-9_]*)?")


def _operator(rule: Mapping[str, Any]) -> tuple[str, bool]:
    """The rule's operator name and whether it is the ...Path variant."""
    for key in rule:
        if key in OPERATORS:
            return key, False
        base = key.removesuffix("Path")
        if key != base and base in OPERATORS and base not in _WITHOUT_PATH_VARIANT:
            return base, True
    raise DefinitionError(f"Choice rule has no comparison operator: {sorted(rule)}")


def _path(rule: Mapping[str, Any], key: str) -> str:
    path = rule.get(key)
    if not isinstance(path, str):
        raise DefinitionError(f"Choice rule field '{key}' must be a path, not {path!r}")
    return path


def _read(path: str, scope: Scope) -> JSON:
    """The value at path, or _MISSING when it selects nothing (Jayway: an empty result)."""
    try:
        value = scope.resolve(path)
    except paths.PathSyntaxError as exc:
        raise StatesFailure("States.Runtime", exc.message) from None
    except paths.PathError:
        return _MISSING
    # An indefinite path ($.a[*]) yields a list; an empty one means nothing is present.
    if value == [] and not paths.compile_path(_ROOT.sub("$", path, count=1)).definite:
        return _MISSING
    return value


def _missing(path: str, scope: Scope) -> StatesFailure:
    # AWS's wording for a path that selects nothing (as for InputPath): "Invalid path '$.x' :
    # No results for path: $['x']". The interpreter prefixes "An error occurred while
    # executing the state ...".
    try:
        scope.resolve(path)
        detail = f"No results for path: {path}"
    except paths.PathError as exc:
        detail = exc.message
    return StatesFailure("States.Runtime", f"Invalid path '{path}' : {detail}")


def evaluate_rule(rule: Mapping[str, Any], scope: Scope) -> bool:
    """Whether one Choice rule (Variable + one comparison operator, or And/Or/Not) matches."""
    # Boolean expressions (spec, "Choice Rules"): And/Or short-circuit, so a guard such as
    # {"IsPresent": true} placed first protects the rules after it from a missing path.
    if "And" in rule:
        return all(evaluate_rule(sub, scope) for sub in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(sub, scope) for sub in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], scope)
    name, by_path = _operator(rule)
    variable = _path(rule, "Variable")
    value = _read(variable, scope)
    if value is _MISSING and name != "IsPresent":
        raise _missing(variable, scope)
    if not by_path:
        return OPERATORS[name](value, rule[name])
    path = _path(rule, name + "Path")
    operand = _read(path, scope)
    if operand is _MISSING:
        raise _missing(path, scope)
    return OPERATORS[name](value, operand)


def choose(choices: Sequence[Mapping[str, Any]], scope: Scope) -> int | None:
    """Index of the first matching top-level rule in Choices, or None."""
    for index, rule in enumerate(choices):
        if evaluate_rule(rule, scope):
            return index
    return None
