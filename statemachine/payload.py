"""Payload templates and path resolution (States Language spec, "Payload Template").

A template is any JSON value; inside objects, a key ending in ``.$`` holds a path (``$.a``),
a context path (``$$.Execution.Id``), a variable reference (``$name.field``) or an intrinsic
function call (``States.Format(...)``), and the key loses its ``.$`` suffix in the output.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from statemachine import intrinsics, paths
from statemachine.errors import StatesFailure

JSON = Any

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


# One encoder for every payload: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: JSON) -> str:
    """Serialise like AWS's Jackson: compact, keys in insertion order, non-ASCII kept."""
    return _ENCODER.encode(value)


def _reject_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(text: str | bytes) -> JSON:
    """Strict JSON: like json.loads, but NaN and Infinity are refused (they are not JSON)."""
    return json.loads(text, parse_constant=_reject_constant)


def payload_size(value: JSON) -> int:
    """Bytes of the value's JSON text (AWS's 256 KiB limits count these)."""
    return text_size(payload_text(value))


def text_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, as AWS's size limits count them (a lone surrogate, which a
    JSON escape can make, counts as the three bytes it would take)."""
    return len(text.encode("utf-8", "surrogatepass"))


def payload_text(value: JSON) -> str:
    """The value's JSON text (``dumps``); StatesFailure when it has none (NaN, too deep)."""
    try:
        return dumps(value)
    except RecursionError:
        raise StatesFailure(
            "States.Runtime", "The payload is nested too deeply to be represented as JSON"
        ) from None
    except ValueError as exc:  # NaN and Infinity are not JSON
        raise StatesFailure("States.Runtime", f"The payload is not valid JSON: {exc}") from None


def resolve(
    path: str, data: JSON, context: JSON | Callable[[], JSON], variables: Mapping[str, JSON]
) -> JSON:
    """Evaluate a path against the state input, the context object (``$$``) or a variable.

    ``context`` may be a function building the context object, called only for ``$$`` paths.
    """
    source, name, compiled = _reference(path)
    if source == "input":
        return compiled.read(data)
    if source == "context":
        return compiled.read(context() if callable(context) else context)
    if name not in variables:
        raise paths.PathError(f"Variable '{name}' is not defined")
    return compiled.read(variables[name])


@lru_cache(maxsize=4096)
def _reference(path: str) -> tuple[str, str, paths.Path]:
    """What a path reads ("input", "context" or "variable" with its name) and the compiled rest."""
    if path.startswith("$$"):
        return "context", "", paths.compile_path("$" + path[2:])
    match = _VARIABLE.match(path)
    if match:
        return "variable", match.group(1), paths.compile_path("$" + path[match.end() :])
    return "input", "", paths.compile_path(path)


class Scope:
    """What a template or intrinsic can see: the input, the context object and the variables.

    The context object and the random generator are built on first use: most templates
    read neither, and building them is most of the cost of a Pass state.
    """

    __slots__ = ("_context", "_rng", "data", "variables")

    def __init__(
        self,
        data: JSON,
        context: JSON | Callable[[], JSON],
        variables: Mapping[str, JSON],
        rng: random.Random | Callable[[], random.Random],
    ) -> None:
        self.data = data
        self._context = context
        self.variables = variables
        self._rng = rng

    @property
    def context(self) -> JSON:
        """The context object (``$$``)."""
        if callable(self._context):
            self._context = self._context()
        return self._context

    @property
    def rng(self) -> random.Random:
        """The injected random generator (States.UUID, States.MathRandom)."""
        if not isinstance(self._rng, random.Random):
            self._rng = self._rng()
        return self._rng

    def resolve(self, path: str) -> JSON:
        """Resolve a path; missing paths raise paths.PathError."""
        source, name, compiled = _reference(path)
        if source == "input":
            return compiled.read(self.data)
        if source == "context":
            return compiled.read(self.context)
        if name not in self.variables:
            raise paths.PathError(f"Variable '{name}' is not defined")
        return compiled.read(self.variables[name])

    def input_text(self, path: str) -> str:
        """The JSON text AWS quotes as 'the input' in a failed-path message."""
        return dumps(self.context if path.startswith("$$") else self.data)


def evaluate_expression(expression: str, field: str, scope: Scope) -> JSON:
    """Evaluate the value of a ``.$`` field: a path or an intrinsic function call."""
    if expression.startswith("States."):
        return intrinsics.evaluate(expression, scope)
    try:
        return scope.resolve(expression)
    except paths.PathSyntaxError as exc:
        raise StatesFailure("States.Runtime", exc.message) from None
    except paths.PathError:
        raise StatesFailure(
            "States.Runtime",
            f"The JSONPath '{expression}' specified for the field '{field}' could not be found "
            f"in the input '{scope.input_text(expression)}'",
        ) from None


def evaluate_template(template: JSON, scope: Scope) -> JSON:
    """Expand a payload template (Parameters, ResultSelector, ItemSelector, Assign)."""
    if isinstance(template, dict):
        out: dict[str, JSON] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = evaluate_expression(value, key, scope)
            else:
                out[key] = evaluate_template(value, scope)
        return out
    if isinstance(template, list):
        return [evaluate_template(item, scope) for item in template]
    return template
