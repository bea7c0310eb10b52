"""Intrinsic functions (States Language spec, "Intrinsic Functions"), JSONPath mode.

An expression such as ``States.Format('Hello {}', $.name)`` is parsed once (and cached) into
a small tree of calls, literals and paths, then evaluated against a ``Scope``. Semantics follow
what AWS does, which is a Java/Jackson service: decimals passed where an integer is expected are
rounded like ``Math.round``, ``States.Format`` renders values like Java's ``toString``, and JSON
values compare like Jackson nodes (``1`` and ``1.0`` differ). Every failure is an IntrinsicError,
which AWS reports as ``States.Runtime``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn

from statemachine import paths
from statemachine.errors import IntrinsicError

if TYPE_CHECKING:
    from statemachine.payload import Scope

JSON = Any

MAX_NESTING = 10  # AWS: "You can nest up to 10 intrinsic functions within a field"
MAX_STRING_LENGTH = 10_000  # Base64Encode, Base64Decode and Hash inputs
MAX_RANGE_ITEMS = 1000
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # integer arguments are Java ints

_FUNCTION = re.compile(r"States\.[A-Za-z0-9]+")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_WORD = re.compile(r"(true|false|null)(?![A-Za-z0-9_.])")
_WORDS: dict[str, JSON] = {"true": True, "false": False, "null": None}
_ESCAPABLE = "'{}\\"  # the characters a string literal escapes with a backslash
_HASHES = ("MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512")  # names are case-sensitive


@dataclass(frozen=True, slots=True)
class Literal:
    """A literal argument; a string literal also keeps its text split at unescaped ``{}``."""

    value: JSON
    segments: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class PathArg:
    """A path argument (``$.a``, ``$$.Execution.Id``, ``$var``), resolved at evaluation."""

    text: str


@dataclass(frozen=True, slots=True)
class Call:
    """A call of an intrinsic function."""

    name: str
    args: tuple[Node, ...]


Node = Literal | PathArg | Call


def evaluate(expression: str, scope: Scope) -> JSON:
    """Evaluate an intrinsic function call such as ``States.Format('{}', $.a)``."""
    call = parse(expression)
    try:
        return _invoke(call, scope)
    except RecursionError:
        # Only pathological data (thousands of nesting levels) gets here, via the recursive
        # rendering and comparison helpers.
        raise IntrinsicError(f"The data given to '{expression}' is nested too deeply") from None


@lru_cache(maxsize=2048)
def parse(expression: str) -> Call:
    """Parse an intrinsic function call; raise IntrinsicError when it is malformed."""
    parser = _Parser(expression)
    call = parser.call(1)
    parser.skip_spaces()
    if parser.pos != len(expression):
        parser.fail("unexpected text after the closing parenthesis")
    return call


class _Parser:
    """Recursive descent over: call := NAME '(' [arg (',' arg)*] ')'."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> NoReturn:
        raise IntrinsicError(
            f"Invalid intrinsic function call '{self.text}': {what} at position {self.pos}"
        )

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def call(self, depth: int) -> Call:
        match = _FUNCTION.match(self.text, self.pos)
        if not match:
            self.fail("expected a function name such as States.Format")
        name = match.group()
        if name not in _FUNCTIONS:
            raise IntrinsicError(f"Unknown intrinsic function '{name}' in '{self.text}'")
        if depth > MAX_NESTING:
            self.fail(f"more than {MAX_NESTING} nested intrinsic functions")
        self.pos = match.end()
        self.skip_spaces()
        if not self.text.startswith("(", self.pos):
            self.fail(f"expected '(' after {name}")
        self.pos += 1
        args: list[Node] = []
        self.skip_spaces()
        if self.text.startswith(")", self.pos):
            self.pos += 1
        else:
            while True:
                self.skip_spaces()
                args.append(self.argument(depth))
                self.skip_spaces()
                if self.text.startswith(",", self.pos):
                    self.pos += 1
                elif self.text.startswith(")", self.pos):
                    self.pos += 1
                    break
                else:
                    self.fail("expected ',' or ')'")
        _check_arity(name, len(args))
        return Call(name, tuple(args))

    def argument(self, depth: int) -> Node:
        text, pos = self.text, self.pos
        if text.startswith("'", pos):
            return self.string()
        if text.startswith("$", pos):
            return self.path()
        if text.startswith("States.", pos):
            return self.call(depth + 1)
        number = _NUMBER.match(text, pos)
        if number:
            self.pos = number.end()
            if number.group(1) or number.group(2):
                value = float(number.group())
                if not math.isfinite(value):
                    self.fail("number out of range")
                return Literal(value)
            return Literal(int(number.group()))
        word = _WORD.match(text, pos)
        if word:
            self.pos = word.end()
            return Literal(_WORDS[word.group(1)])
        self.fail("expected a string, number, boolean, null, path or intrinsic function")

    def string(self) -> Literal:
        # Only \' \{ \} \\ are escapes; any other backslash is kept as written. An unescaped
        # '{}' is a States.Format placeholder, so segments keep the text around each one.
        text = self.text
        i = self.pos + 1
        segments: list[str] = []
        current: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
                current.append(text[i + 1])
                i += 2
            elif ch == "'":
                self.pos = i + 1
                segments.append("".join(current))
                return Literal("{}".join(segments), tuple(segments))
            elif text.startswith("{}", i):
                segments.append("".join(current))
                current = []
                i += 2
            else:
                current.append(ch)
                i += 1
        self.fail("unterminated string literal")

    def path(self) -> PathArg:
        # A path ends at ',', ')' or a space outside brackets; brackets may hold quoted names
        # and filters with their own commas and parentheses.
        text, start = self.text, self.pos
        i, depth = start, 0
        quote: str | None = None
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif depth and ch in "'\"":
                quote = ch
            elif ch == "[":
                depth += 1
            elif ch == "]":
                depth -= 1
            elif not depth and (ch in ",)" or ch.isspace()):
                break
            i += 1
        self.pos = i
        return PathArg(text[start:i])


def _check_arity(name: str, count: int) -> None:
    low, high, _ = _FUNCTIONS[name]
    if low <= count and (high is None or count <= high):
        return
    if high is None:
        wanted = f"at least {low} argument{'s' if low != 1 else ''}"
    elif low == high:
        wanted = f"exactly {low} argument{'s' if low != 1 else ''}"
    else:
        wanted = f"{low} to {high} arguments"
    raise IntrinsicError(f"{name} takes {wanted}, but {count} were given")


def _invoke(call: Call, scope: Scope) -> JSON:
    values = [_value(node, call.name, scope) for node in call.args]
    return _FUNCTIONS[call.name][2](_Arguments(call, values, scope))


def _value(node: Node, function: str, scope: Scope) -> JSON:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Call):
        return _invoke(node, scope)
    try:
        return scope.resolve(node.text)
    except paths.PathSyntaxError as exc:
        raise IntrinsicError(f"{function}: {exc.message}") from None
    except paths.PathError as exc:
        if node.text[1:2].isalpha() or node.text[1:2] == "_":  # a variable, not the input
            raise IntrinsicError(
                f"The variable path '{node.text}' given to {function} could not be resolved: "
                f"{exc.message}"
            ) from None
        raise IntrinsicError(
            f"The JSONPath '{node.text}' given to {function} could not be found "
            f"in the input '{scope.input_text(node.text)}'"
        ) from None


def _kind(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class _Arguments:
    """The evaluated arguments of one call, with typed accessors that fail in AWS's terms."""

    __slots__ = ("call", "scope", "values")

    def __init__(self, call: Call, values: list[JSON], scope: Scope) -> None:
        self.call = call
        self.values = values
        self.scope = scope

    def fail(self, detail: str) -> NoReturn:
        raise IntrinsicError(f"{self.call.name}: {detail}")

    def wrong(self, index: int, wanted: str) -> NoReturn:
        """Fail because argument ``index`` is not ``wanted``."""
        self.fail(f"argument {index + 1} must be {wanted}, but it is {_kind(self.values[index])}")

    def string(self, index: int) -> str:
        value = self.values[index]
        if not isinstance(value, str):
            self.wrong(index, "a string")
        return value

    def array(self, index: int) -> list[JSON]:
        value = self.values[index]
        if not isinstance(value, list):
            self.wrong(index, "an array")
        return value

    def object(self, index: int) -> dict[str, JSON]:
        value = self.values[index]
        if not isinstance(value, dict):
            self.wrong(index, "a JSON object")
        return value

    def integer(self, index: int) -> int:
        """A Java int; decimals are rounded half up, like AWS (and Java's Math.round)."""
        value = self.values[index]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.wrong(index, "a number")
        if isinstance(value, float):
            if not math.isfinite(value):
                self.wrong(index, "a finite number")
            floor = math.floor(value)
            # value - floor is exact for doubles, unlike floor(value + 0.5) near .5 boundaries
            value = floor + 1 if value - floor >= 0.5 else floor
        if not INT_MIN <= value <= INT_MAX:
            self.fail(f"argument {index + 1} must be between {INT_MIN} and {INT_MAX}, got {value}")
        return value

    def short_string(self, index: int) -> str:
        """A string of at most MAX_STRING_LENGTH characters (Base64 and Hash inputs)."""
        value = self.string(index)
        if len(value) > MAX_STRING_LENGTH:
            self.fail(
                f"argument {index + 1} has {len(value)} characters, "
                f"more than the maximum of {MAX_STRING_LENGTH}"
            )
        return value


def _format(args: _Arguments) -> str:
    first = args.call.args[0]
    if isinstance(first, Literal) and first.segments is not None:
        segments: tuple[str, ...] | list[str] = first.segments
    else:  # a template from a path or a nested call has no escapes
        segments = args.string(0).split("{}")
    values = args.values[1:]
    if len(segments) - 1 != len(values):
        args.fail(
            f"the template has {len(segments) - 1} placeholder(s) '{{}}' "
            f"but {len(values)} value(s) were given"
        )
    out = [segments[0]]
    for value, segment in zip(values, segments[1:], strict=True):
        out += [_render(value), segment]
    return "".join(out)


def _render(value: JSON) -> str:
    """Render a value as AWS's States.Format does: Java toString of the Jackson-parsed value."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_render(item)}" for key, item in value.items()) + "}"
    return str(value)


def _java_double(value: float) -> str:
    """Java's Double.toString: plain between 1e-3 and 1e7, else ``d.dddE<n>``."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        return repr(value)  # Python also writes this range plainly, with the shortest digits
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    power = int(exponent) + len(digits) - 1
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{power}"


def _identity(value: JSON) -> JSON:
    """A hashable key with Jackson's equality: types matter (``1 != 1.0 != true``), key order not."""
    if isinstance(value, dict):
        return ("object", frozenset((key, _identity(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_identity(item) for item in value))
    return (type(value).__name__, value)


def _json_to_string(args: _Arguments) -> str:
    # Jackson's compact form; non-ASCII characters are kept, not escaped
    return json.dumps(args.values[0], separators=(",", ":"), ensure_ascii=False)


def _string_to_json(args: _Arguments) -> JSON:
    text = args.string(0)
    if not text.strip(" \t\r\n"):
        return None  # Jackson reads blank text as no value, which AWS returns as null
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        args.fail(f"the string is not valid JSON: {exc}")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _array_partition(args: _Arguments) -> list[JSON]:
    items, size = args.array(0), args.integer(1)
    if size <= 0:
        args.fail(f"the chunk size must be a positive integer, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def _array_contains(args: _Arguments) -> bool:
    wanted = _identity(args.values[1])
    return any(_identity(item) == wanted for item in args.array(0))


def _array_range(args: _Arguments) -> list[int]:
    start, end, step = args.integer(0), args.integer(1), args.integer(2)
    if step == 0:
        args.fail("the step must not be 0")
    count = max(0, (end - start) // step + 1)  # the end is inclusive
    if count > MAX_RANGE_ITEMS:
        args.fail(f"the range has {count} items, more than the maximum of {MAX_RANGE_ITEMS}")
    return list(range(start, end + (1 if step > 0 else -1), step))


def _array_get_item(args: _Arguments) -> JSON:
    items, index = args.array(0), args.values[1]
    if isinstance(index, bool) or not isinstance(index, int):
        args.wrong(1, "an integer index")
    if not 0 <= index < len(items):
        args.fail(f"index {index} is out of bounds for an array of length {len(items)}")
    return items[index]


def _array_unique(args: _Arguments) -> list[JSON]:
    seen: set[JSON] = set()
    out: list[JSON] = []
    for item in args.array(0):
        key = _identity(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # a lone surrogate becomes '?', as in Java


def _base64_encode(args: _Arguments) -> str:
    return base64.b64encode(_utf8(args.short_string(0))).decode("ascii")


def _base64_decode(args: _Arguments) -> str:
    text = args.short_string(0)
    if "=" not in text:  # Java's decoder accepts missing padding
        text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        args.fail("the string is not valid Base64")
    return data.decode("utf-8", "replace")


def _hash(args: _Arguments) -> str:
    data, algorithm = args.short_string(0), args.string(1)
    if algorithm not in _HASHES:
        args.fail(f"the algorithm '{algorithm}' is not supported; use one of {', '.join(_HASHES)}")
    name = algorithm.replace("-", "").lower()  # hashlib's name: "SHA-256" -> "sha256"
    return hashlib.new(name, _utf8(data), usedforsecurity=False).hexdigest()


def _json_merge(args: _Arguments) -> dict[str, JSON]:
    first, second, deep = args.object(0), args.object(1), args.values[2]
    if not isinstance(deep, bool):
        args.wrong(2, "a boolean (isDeepMerge)")
    if deep:
        args.fail("only shallow merging is supported; isDeepMerge must be false")
    return {**first, **second}  # shallow: a key in both takes the second value whole


def _math_random(args: _Arguments) -> int:
    start, end = args.integer(0), args.integer(1)
    if end <= start:
        args.fail(f"the end ({end}) must be greater than the start ({start})")
    # The end is exclusive. A seed gives a repeatable number (not AWS's: its generator is
    # not documented); without one, the scope's generator keeps replays deterministic.
    rng = random.Random(args.integer(2)) if len(args.values) == 3 else args.scope.rng
    return rng.randrange(start, end)


def _string_split(args: _Arguments) -> list[str]:
    # Like Java's StringTokenizer: each delimiter character splits and empty tokens are dropped.
    text, delimiters = args.string(0), args.string(1)
    if not delimiters:
        return [text] if text else []
    return [token for token in re.split(f"[{re.escape(delimiters)}]", text) if token]


def _uuid(args: _Arguments) -> str:
    return str(uuid.UUID(int=args.scope.rng.getrandbits(128), version=4))


_Function = Callable[[_Arguments], JSON]

# name -> (minimum arguments, maximum or None, implementation)
_FUNCTIONS: dict[str, tuple[int, int | None, _Function]] = {
    "States.Format": (1, None, _format),
    "States.StringToJson": (1, 1, _string_to_json),
    "States.JsonToString": (1, 1, _json_to_string),
    "States.Array": (0, None, lambda args: list(args.values)),
    "States.ArrayPartition": (2, 2, _array_partition),
    "States.ArrayContains": (2, 2, _array_contains),
    "States.ArrayRange": (3, 3, _array_range),
    "States.ArrayGetItem": (2, 2, _array_get_item),
    "States.ArrayLength": (1, 1, lambda args: len(args.array(0))),
    "States.ArrayUnique": (1, 1, _array_unique),
    "States.Base64Encode": (1, 1, _base64_encode),
    "States.Base64Decode": (1, 1, _base64_decode),
    "States.Hash": (2, 2, _hash),
    "States.JsonMerge": (3, 3, _json_merge),
    "States.MathRandom": (2, 3, _math_random),
    "States.MathAdd": (2, 2, lambda args: args.integer(0) + args.integer(1)),
    "States.StringSplit": (2, 2, _string_split),
    "States.UUID": (0, 0, _uuid),
}
