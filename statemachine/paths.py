"""Reference paths and JSONPath, as AWS Step Functions evaluates them.

AWS evaluates paths with Jayway JsonPath semantics (States Language spec, "Paths"):

* a *definite* path (only names and single indexes) yields one value or fails; the failure
  text names the first missing step (``Missing property in path $['a']``) or, when only the
  last step is missing, ``No results for path: $['a']['b']``;
* an *indefinite* path (wildcards, slices, unions, deep scan, filters) always yields a list,
  possibly empty.

Paths are compiled once and cached: a definition uses the same few paths over and over.
Filters (``[?(...)]``) are delegated to jsonpath-ng's extended parser.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

JSON = Any


class PathError(Exception):
    """A path did not match the data it was applied to (the message is AWS's wording)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PathSyntaxError(PathError):
    """A path is not valid JSONPath."""


@dataclass(frozen=True, slots=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


@dataclass(frozen=True, slots=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Union:
    keys: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class DeepScan:
    name: str | None  # None: every descendant (``..*``)


@dataclass(frozen=True, slots=True)
class Filter:
    expression: str  # the whole ``[?(...)]`` selector, evaluated by jsonpath-ng


Step = Name | Index | Wildcard | Slice | Union | DeepScan | Filter


def _jayway(step: Name | Index) -> str:
    return f"['{step.name}']" if isinstance(step, Name) else f"[{step.index}]"


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled JSONPath rooted at ``$``."""

    text: str
    steps: tuple[Step, ...]
    definite: bool
    # For a definite path: its object keys (str) and array indexes (int), in order.
    keys: tuple[str | int, ...] = ()

    def read(self, data: JSON) -> JSON:
        """Return the value the path selects; raise PathError if a definite path is missing."""
        if self.definite:
            return self._read_definite(data)
        return list(self._select(data, 0))

    def _read_definite(self, data: JSON) -> JSON:
        # The hot path of every Parameters and Choice: a tight loop over keys.
        current = data
        for position, key in enumerate(self.keys):
            if isinstance(key, str):
                if type(current) is dict and key in current:
                    current = current[key]
                    continue
            elif type(current) is list and -len(current) <= key < len(current):
                current = current[key]
                continue
            walked = "$" + "".join(_jayway(s) for s in self.steps[: position + 1])  # type: ignore[arg-type]
            if position == len(self.keys) - 1:
                raise PathError(f"No results for path: {walked}")
            raise PathError(f"Missing property in path {walked}")
        return current

    def exists(self, data: JSON) -> bool:
        """Whether the path selects something (IsPresent)."""
        if self.definite:
            try:
                self._read_definite(data)
            except PathError:
                return False
            return True
        return bool(list(self._select(data, 0)))

    def _select(self, value: JSON, position: int) -> Iterator[JSON]:
        if position == len(self.steps):
            yield value
            return
        step = self.steps[position]
        nxt = position + 1
        if isinstance(step, Name | Index):
            found, child = _child(value, step)
            if found:
                yield from self._select(child, nxt)
        elif isinstance(step, Wildcard):
            if isinstance(value, dict):
                for child in value.values():
                    yield from self._select(child, nxt)
            elif isinstance(value, list):
                for child in value:
                    yield from self._select(child, nxt)
        elif isinstance(step, Slice):
            if isinstance(value, list):
                for child in value[step.start : step.stop : step.step]:
                    yield from self._select(child, nxt)
        elif isinstance(step, Union):
            for key in step.keys:
                found, child = _child(value, Name(key) if isinstance(key, str) else Index(key))
                if found:
                    yield from self._select(child, nxt)
        elif isinstance(step, DeepScan):
            for child in _descendants(value, step.name):
                yield from self._select(child, nxt)
        else:
            for child in _filter(step.expression, value):
                yield from self._select(child, nxt)


def _child(value: JSON, step: Name | Index) -> tuple[bool, JSON]:
    if isinstance(step, Name):
        if isinstance(value, dict) and step.name in value:
            return True, value[step.name]
        return False, None
    if isinstance(value, list):
        index = step.index
        if -len(value) <= index < len(value):
            return True, value[index]
    return False, None


def _descendants(value: JSON, name: str | None) -> Iterator[JSON]:
    # Jayway's deep scan visits a node's own match before descending into its children.
    if isinstance(value, dict):
        if name is None:
            yield from value.values()
        elif name in value:
            yield value[name]
        for child in value.values():
            yield from _descendants(child, name)
    elif isinstance(value, list):
        if name is None:
            yield from value
        for child in value:
            yield from _descendants(child, name)


def _filter(expression: str, value: JSON) -> list[JSON]:
    from jsonpath_ng.exceptions import JsonPathParserError
    from jsonpath_ng.ext import parse  # type: ignore[attr-defined]

    try:
        compiled = parse("$" + expression)
    except (JsonPathParserError, Exception) as exc:  # jsonpath-ng raises plain Exceptions too
        raise PathSyntaxError(f"Invalid filter expression {expression}: {exc}") from None
    return [match.value for match in compiled.find(value)]


_NAME = re.compile(r"[^.\[\]\s]+")
_INT = re.compile(r"-?\d+")


@lru_cache(maxsize=4096)
def compile_path(text: str) -> Path:
    """Parse a JSONPath beginning with ``$``; raise PathSyntaxError when it is malformed."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathSyntaxError(f"The path '{text}' must begin with '$'")
    steps: list[Step] = []
    i, n = 1, len(text)
    while i < n:
        c = text[i]
        if text.startswith("..", i):
            i += 2
            if i < n and text[i] == "*":
                steps.append(DeepScan(None))
                i += 1
                continue
            match = _NAME.match(text, i)
            if not match:
                raise PathSyntaxError(f"Invalid path '{text}': a name must follow '..'")
            steps.append(DeepScan(match.group()))
            i = match.end()
        elif c == ".":
            i += 1
            if i < n and text[i] == "*":
                steps.append(Wildcard())
                i += 1
                continue
            match = _NAME.match(text, i)
            if not match:
                raise PathSyntaxError(f"Invalid path '{text}': a name must follow '.'")
            steps.append(Name(match.group()))
            i = match.end()
        elif c == "[":
            close, step = _bracket(text, i)
            steps.append(step)
            i = close + 1
        else:
            raise PathSyntaxError(f"Invalid path '{text}': unexpected '{c}' at position {i}")
    definite = all(isinstance(s, Name | Index) for s in steps)
    keys = tuple(s.name if isinstance(s, Name) else s.index for s in steps) if definite else ()  # type: ignore[union-attr]
    return Path(text, tuple(steps), definite, keys)


def _bracket(text: str, start: int) -> tuple[int, Step]:
    """Parse the selector opening at ``text[start] == '['``; return (index of ']', step)."""
    body_start = start + 1
    if text.startswith("?", body_start):
        depth, i = 0, body_start
        quote: str | None = None
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "]" and depth == 0:
                return i, Filter(text[start : i + 1])
            i += 1
        raise PathSyntaxError(f"Invalid path '{text}': unterminated filter")
    keys: list[str | int] = []
    i = body_start
    while True:
        while i < len(text) and text[i] == " ":
            i += 1
        if i >= len(text):
            raise PathSyntaxError(f"Invalid path '{text}': missing ']'")
        ch = text[i]
        if ch in "'\"":
            end = i + 1
            chars: list[str] = []
            while end < len(text) and text[end] != ch:
                # Only an escaped quote is an escape; any other backslash is literal (Jayway).
                if text[end] == "\\" and end + 1 < len(text) and text[end + 1] == ch:
                    end += 1
                chars.append(text[end])
                end += 1
            if end >= len(text):
                raise PathSyntaxError(f"Invalid path '{text}': unterminated quoted name")
            keys.append("".join(chars))
            i = end + 1
        elif ch == "*":
            close = text.find("]", i)
            if close < 0 or text[i + 1 : close].strip():
                raise PathSyntaxError(f"Invalid path '{text}': malformed '[*]'")
            return close, Wildcard()
        else:
            close = text.find("]", i)
            if close < 0:
                raise PathSyntaxError(f"Invalid path '{text}': missing ']'")
            body = text[i:close]
            if ":" in body:
                parts = [p.strip() for p in body.split(":")]
                if len(parts) > 3 or not all(p == "" or _INT.fullmatch(p) for p in parts):
                    raise PathSyntaxError(f"Invalid path '{text}': malformed slice [{body}]")
                ints = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
                return close, Slice(ints[0], ints[1], ints[2])
            for part in body.split(","):
                part = part.strip()
                if not _INT.fullmatch(part):
                    raise PathSyntaxError(f"Invalid path '{text}': malformed index [{body}]")
                keys.append(int(part))
            i = close
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        if i < len(text) and text[i] == "]":
            if len(keys) == 1:
                key = keys[0]
                return i, Name(key) if isinstance(key, str) else Index(key)
            return i, Union(tuple(keys))
        raise PathSyntaxError(f"Invalid path '{text}': malformed selector")


def read(text: str, data: JSON) -> JSON:
    """Evaluate the path ``text`` against ``data`` (see Path.read)."""
    return compile_path(text).read(data)


def is_reference_path(text: str) -> bool:
    """Whether ``text`` is a Reference Path: definite, so it can be written to (ResultPath)."""
    try:
        return compile_path(text).definite
    except PathSyntaxError:
        return False


def write(text: str, data: JSON, value: JSON) -> JSON:
    """Return a copy of ``data`` with ``value`` placed at the Reference Path ``text`` (ResultPath).

    Missing intermediate objects are created, as AWS does; stepping into a value that is not
    an object raises PathError.
    """
    path = compile_path(text)
    if not path.definite:
        raise PathSyntaxError(f"The path '{text}' is not a reference path")
    if not path.steps:
        return value
    root = copy.copy(data) if isinstance(data, dict | list) else data
    if not isinstance(root, dict | list):
        raise PathError(f"Unable to apply ResultPath '{text}' to input {root!r}")
    parent: Any = root
    for position, step in enumerate(path.steps):
        last = position == len(path.steps) - 1
        if isinstance(step, Name):
            if not isinstance(parent, dict):
                raise PathError(f"Unable to write to path '{text}'")
            if last:
                parent[step.name] = value
            else:
                child = parent.get(step.name, {})
                if not isinstance(child, dict | list):
                    raise PathError(f"Unable to write to path '{text}'")
                child = copy.copy(child)
                parent[step.name] = child
                parent = child
        else:
            assert isinstance(step, Index)
            if not isinstance(parent, list) or not -len(parent) <= step.index < len(parent):
                raise PathError(f"Unable to write to path '{text}'")
            if last:
                parent[step.index] = value
            else:
                child = parent[step.index]
                if not isinstance(child, dict | list):
                    raise PathError(f"Unable to write to path '{text}'")
                child = copy.copy(child)
                parent[step.index] = child
                parent = child
    return root
