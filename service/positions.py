"""Where a JSON pointer points in a JSON text: the line and column (1-based) the viewer puts
a diagnostic at.

An object member is located at its key (the line that names it), an array element and the
whole document ("/") at the value. Columns count characters (code points) from 1. The
walk reads only the containers on the way to the wanted nodes; everything else is skipped
by the C decoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from json.decoder import scanstring  # type: ignore[attr-defined]

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def pointer_parts(pointer: str) -> tuple[str, ...] | None:
    """The reference tokens of a JSON pointer (RFC 6901); "/" and "" are the document."""
    if pointer in ("", "/"):
        return ()
    if not pointer.startswith("/"):
        return None
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _Walk:
    def __init__(self, text: str, wanted: set[tuple[str, ...]]) -> None:
        self.text = text
        self.wanted = wanted
        self.prefixes = {w[:n] for w in wanted for n in range(len(w) + 1)}
        self.found: dict[tuple[str, ...], int] = {}

    def skip_ws(self, i: int) -> int:
        text = self.text
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        return i

    def value(self, i: int, path: tuple[str, ...]) -> int:
        """Walk the value at ``i`` (no whitespace before it); return the offset after it."""
        text = self.text
        if path not in self.prefixes or text[i] not in "{[":
            return _DECODER.raw_decode(text, i)[1]
        if text[i] == "{":
            i = self.skip_ws(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                key_at = i
                key, i = scanstring(text, i + 1)
                child = (*path, key)
                if child in self.wanted and child not in self.found:
                    self.found[child] = key_at
                i = self.skip_ws(self.skip_ws(i) + 1)  # past the colon
                i = self.skip_ws(self.value(i, child))
                if text[i] == "}":
                    return i + 1
                i = self.skip_ws(i + 1)  # past the comma
        i = self.skip_ws(i + 1)
        if text[i] == "]":
            return i + 1
        index = 0
        while True:
            child = (*path, str(index))
            if child in self.wanted and child not in self.found:
                self.found[child] = i
            i = self.skip_ws(self.value(i, child))
            if text[i] == "]":
                return i + 1
            i = self.skip_ws(i + 1)
            index += 1


def locate(text: str, pointers: Iterable[str]) -> dict[str, tuple[int, int] | None]:
    """For each pointer, the (line, column) of its node in ``text``; None when the text is
    not JSON or has no such node."""
    pointers = list(pointers)
    parts = {p: pointer_parts(p) for p in pointers}
    out: dict[str, tuple[int, int] | None] = dict.fromkeys(pointers)
    wanted = {path for path in parts.values() if path is not None}
    walk = _Walk(text, wanted)
    try:
        start = walk.skip_ws(0)
        walk.value(start, ())
    except (ValueError, IndexError, RecursionError):
        return out  # not JSON (the diagnostic says where, see json_error_position)
    walk.found[()] = start
    for pointer, path in parts.items():
        if path is not None and path in walk.found:
            out[pointer] = line_column(text, walk.found[path])
    return out


def json_error_position(text: str) -> tuple[int, int] | None:
    """Where the JSON text stops being JSON (line, column), or None if it parses."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.lineno, exc.colno
    except (ValueError, RecursionError):
        return None
    return None
