"""JSONata expressions (``"QueryLanguage": "JSONata"``), evaluated with jsonata-python.

A field value is an expression when it is a whole string ``{% ... %}``; inside objects and
arrays (Arguments, Output, Assign, Items ...) every such string is evaluated and the rest is
taken literally. Expressions see ``$states`` (input, context, and result or errorOutput where
they exist) and the workflow variables as ``$name``. Failures are
``States.QueryEvaluationError`` with AWS's causes; the interpreter records an
EvaluationFailed event naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from statemachine.errors import StatesFailure

JSON = Any
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"


MAX_RANGE = 1000  # like States.ArrayRange; a larger $range is an error, never cut silently
# $pad builds its whole result in one evaluation step, where the step budget cannot stop it:
# wider than a payload may be is an error, not a gigabyte string ($pad('x', 1e9)).
MAX_PAD = 1_048_576  # four payloads: the payload limits then say what is too large
_SIGNATURES = {"pad": "<s-ns?:s>"}  # JSONata's own signatures of the built-ins replaced here
# The budget of one expression's evaluation, so one definition cannot stall a worker: counted
# in evaluation steps (not seconds, which would make replays depend on the machine's speed),
# and in nesting depth (recursion that is not a tail call). A tail-recursive function that
# never returns runs in constant depth, so only the step count stops it. The depth limit is
# well below where Python's own recursion limit would strike (about 250 levels from a shallow
# stack), so the outcome does not depend on how deep the caller's stack already is.
MAX_STEPS = 100_000
MAX_DEPTH = 150
_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
}


class FunctionError(Exception):
    """One of Step Functions' JSONata functions was called wrongly (the message says how)."""


class BudgetExceeded(Exception):
    """An expression took more evaluation steps or nesting depth than its budget allows."""


class _Budget:
    """Counts the evaluation steps and depth of one expression (jsonata-python's callbacks)."""

    def __init__(self) -> None:
        self.steps = 0
        self.depth = 0

    def enter(self, expr: Any, input: Any, env: Any) -> None:
        self.steps += 1
        self.depth += 1
        if self.steps > MAX_STEPS:
            raise BudgetExceeded(
                f"The expression exceeded its budget of {MAX_STEPS} evaluation steps "
                "(an endless recursion or a very large computation)"
            )
        if self.depth > MAX_DEPTH:
            raise BudgetExceeded(
                f"The expression is nested or recurses deeper than {MAX_DEPTH} levels"
            )

    def leave(self, expr: Any, input: Any, env: Any, result: Any) -> None:
        self.depth -= 1


class QueryEvaluationError(StatesFailure):
    """A JSONata expression failed; ``location`` names the field (``Output/result``)."""

    def __init__(self, location: str, cause: str) -> None:
        super().__init__(QUERY_EVALUATION_ERROR, cause)
        self.location = location


def is_expression(value: JSON) -> bool:
    """Whether ``value`` is a JSONata expression string ``{% ... %}``."""
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


def _text(value: str) -> str:
    return value[2:-2].strip()


def _jsonata() -> Any:
    """The jsonata module, imported on first use (definitions without JSONata never pay).

    Importing it raises Python's recursion limit to 10,000 for the whole process; deep
    recursion in C code could then overflow the stack instead of raising RecursionError, so
    the limit is put back. A deeply nested expression fails cleanly instead.
    """
    limit = sys.getrecursionlimit()
    try:
        import jsonata
    finally:
        sys.setrecursionlimit(limit)
    return jsonata


def compile_problem(expression: str) -> str | None:
    """Why a JSONata expression does not compile, or None when it does."""
    try:
        _compiled(expression)
    except RecursionError:
        return "the expression is nested too deeply"
    except Exception as exc:  # jsonata-python raises JException, and Python errors too
        return str(exc) or type(exc).__name__
    return None


@lru_cache(maxsize=2048)
def _compiled(expression: str) -> Any:
    return _jsonata().Jsonata(expression)


def _show(value: JSON) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _type_name(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Evaluator:
    """Evaluates the JSONata fields of one state with one set of bindings."""

    def __init__(
        self,
        states: Mapping[str, JSON],
        variables: Mapping[str, JSON],
        rng: Callable[[], random.Random],
    ) -> None:
        self.states = states
        self.variables = variables
        self.rng = rng
        self._random: random.Random | None = None

    def field(self, value: JSON, location: str) -> JSON:
        """Evaluate a field: expression strings anywhere inside it, literals as they are."""
        if isinstance(value, str):
            return self.expression(value, location) if is_expression(value) else value
        if isinstance(value, dict):
            return {key: self.field(item, f"{location}/{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self.field(item, f"{location}/{index}") for index, item in enumerate(value)]
        return value

    def typed(self, value: JSON, location: str, expected: str) -> JSON:
        """Evaluate a field whose result must have a JSON type (array, number, boolean, ...)."""
        result = self.field(value, location)
        if is_expression(value) and _type_name(result) != expected:
            if not (expected == "integer" and _is_integer(result)):
                raise QueryEvaluationError(
                    location,
                    f"The JSONata expression '{_text(value)}' specified for the field '{location}' "
                    f"returned an unexpected result type. Expected '{expected}', but was "
                    f"'{_type_name(result)}' for value: {_show(result)}",
                )
        return result

    def expression(self, value: str, location: str) -> JSON:
        """Evaluate one ``{% ... %}`` string."""
        text = _text(value)
        jsonata = _jsonata()
        try:
            compiled = _compiled(text)
            bindings = {name: _to_jsonata(v) for name, v in self.variables.items()}
            bindings["states"] = {k: _to_jsonata(v) for k, v in self.states.items()}
            result = self._evaluate(compiled, bindings)
        except jsonata.JException as exc:
            raise QueryEvaluationError(
                location,
                f"The JSONata expression '{text}' specified for the field '{location}' threw an "
                f"error during evaluation. {exc.error}: {exc}",
            ) from None
        except RecursionError:
            raise QueryEvaluationError(
                location,
                f"The JSONata expression '{text}' specified for the field '{location}' threw an "
                "error during evaluation. The expression is nested too deeply",
            ) from None
        except (FunctionError, BudgetExceeded) as exc:
            raise QueryEvaluationError(
                location,
                f"The JSONata expression '{text}' specified for the field '{location}' threw an "
                f"error during evaluation. {exc}",
            ) from None
        except Exception as exc:  # jsonata-python lets Python errors through (1/0, bad types)
            raise QueryEvaluationError(
                location,
                f"The JSONata expression '{text}' specified for the field '{location}' threw an "
                f"error during evaluation. {type(exc).__name__}: {exc}",
            ) from None
        if result is None:
            raise QueryEvaluationError(
                location,
                f"The JSONata expression '{text}' specified for the field '{location}' returned "
                "nothing (undefined).",
            )
        return _from_jsonata(result)

    def _evaluate(self, compiled: Any, bindings: dict[str, JSON]) -> JSON:
        jsonata = _jsonata().Jsonata
        for name, function in self._functions().items():
            if name in _SIGNATURES:  # a JSONata built-in replaced: its argument checks stay
                checked = jsonata.JFunction(jsonata.JLambda(function), _SIGNATURES[name])
                compiled.register_function(name, checked)
            else:
                compiled.register_lambda(name, function)
        compiled.set_output_convert_nulls(False)
        budget = _Budget()
        # Bound last, so no workflow variable of the same name can take their place.
        bindings["__evaluate_entry"] = budget.enter
        bindings["__evaluate_exit"] = budget.leave
        return compiled.evaluate(None, bindings)

    def _generator(self) -> random.Random:
        # One generator per state evaluation: successive $uuid()/$random() calls differ, and a
        # replay of the same history draws the same values.
        if self._random is None:
            self._random = self.rng()
        return self._random

    def _functions(self) -> dict[str, Callable[..., JSON]]:
        """The functions Step Functions adds to JSONata's library."""

        def partition(array: JSON, size: JSON) -> JSON:
            if not isinstance(array, list):
                raise FunctionError(
                    f"$partition: the first argument must be an array, not {_type_name(array)}"
                )
            if not _is_integer(size) or size <= 0:
                raise FunctionError(
                    f"$partition: the size must be a positive integer, not {_show(size)}"
                )
            return [array[i : i + int(size)] for i in range(0, len(array), int(size))]

        def range_(start: JSON, end: JSON, step: JSON = 1) -> JSON:
            if not all(_is_integer(v) for v in (start, end, step)):
                raise FunctionError("$range: start, end and step must be integers")
            if step == 0:
                return []
            start, end, step = int(start), int(end), int(step)
            stop = end + (1 if step > 0 else -1)
            if len(range(start, stop, step)) > MAX_RANGE:
                raise FunctionError(f"$range: the result would have more than {MAX_RANGE} items")
            # A JSONata sequence: one value collapses to that value, as AWS returns it.
            return _jsonata().utils.Utils.create_sequence_from_iter(range(start, stop, step))

        def pad(text: JSON, width: JSON, char: JSON = None) -> JSON:
            if isinstance(width, int | float) and abs(width) > MAX_PAD:
                raise FunctionError(
                    f"$pad: the width must be at most {MAX_PAD} characters, not {_show(width)}"
                )
            return _jsonata().functions.Functions.pad(text, width, char)

        def hash_(data: JSON, algorithm: JSON) -> JSON:
            if not isinstance(data, str):
                raise FunctionError(f"$hash: the data must be a string, not {_type_name(data)}")
            if algorithm not in _HASHES:
                raise FunctionError(
                    f"$hash: unknown algorithm {_show(algorithm)}; use one of {', '.join(_HASHES)}"
                )
            return hashlib.new(_HASHES[algorithm], data.encode()).hexdigest()

        def random_(seed: JSON = None) -> JSON:
            generator = random.Random(seed) if seed is not None else self._generator()
            return generator.random()

        def uuid_() -> JSON:
            return str(uuid.UUID(int=self._generator().getrandbits(128), version=4))

        def parse(text: JSON) -> JSON:
            if not isinstance(text, str):
                raise FunctionError(
                    f"$parse: the argument must be a string, not {_type_name(text)}"
                )
            try:
                return _to_jsonata(json.loads(text))
            except ValueError as exc:
                raise FunctionError(f"$parse: the string is not valid JSON ({exc})") from None

        return {
            "partition": partition,
            "pad": pad,
            "range": range_,
            "hash": hash_,
            "random": random_,
            "uuid": uuid_,
            "parse": parse,
        }


def _is_integer(value: JSON) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _to_jsonata(value: JSON) -> JSON:
    """JSON null must reach jsonata-python as its null marker (None means 'undefined')."""
    if value is None:
        return _jsonata().utils.Utils.NULL_VALUE
    return value


def _from_jsonata(value: JSON) -> JSON:
    """Back to plain JSON: the null marker becomes None, whole floats become ints."""
    null = _jsonata().utils.Utils.NULL_VALUE
    if value is null:
        return None
    if isinstance(value, dict):
        return {k: _from_jsonata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonata(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
