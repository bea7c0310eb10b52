"""The typed model of a state machine definition, parsed from ASL JSON.

``parse()`` checks what the interpreter relies on (shapes, types, transition targets) and
raises DefinitionError with a JSON-pointer location. The full static validation with every
diagnostic at once is ``validate()`` (Engine II issue).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from statemachine.errors import DefinitionError
from statemachine.payload import dumps, parse_json, text_size

JSON = Any

STATE_TYPES = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")
MAX_DEFINITION_BYTES = 1_048_576  # AWS: a definition is at most 1 MiB


class _Default:
    """Marks a path field that is absent, which for InputPath/OutputPath/ResultPath means ``$``."""

    def __repr__(self) -> str:
        return "DEFAULT"


@dataclass(frozen=True, slots=True)
class Retrier:
    """One entry of a Retry list (States Language spec, "Retrying after error")."""

    error_equals: tuple[str, ...]
    interval_seconds: float = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter_strategy: str = "NONE"


@dataclass(frozen=True, slots=True)
class Catcher:
    """One entry of a Catch list (States Language spec, "Fallback states")."""

    error_equals: tuple[str, ...]
    next: str
    result_path: str | None = "$"
    assign: JSON = None
    raw: Mapping[str, JSON] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class State:
    """Fields every state has; ``raw`` keeps the JSON for the type-specific ones."""

    name: str
    type: str
    raw: Mapping[str, JSON] = field(repr=False)
    location: str
    next: str | None = None
    end: bool = False
    input_path: str | None = "$"
    output_path: str | None = "$"
    result_path: str | None = "$"
    parameters: JSON = None
    has_parameters: bool = False
    result_selector: JSON = None
    has_result_selector: bool = False
    assign: JSON = None
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    # Parallel branches, or the Map's ItemProcessor/Iterator as a one-element tuple.
    machines: tuple[StateMachine, ...] = ()
    distributed: bool = False  # a Map whose ItemProcessor runs in DISTRIBUTED mode
    jsonata: bool = False  # the state's query language is JSONata

    def get(self, key: str, default: JSON = None) -> JSON:
        """A type-specific field of the state, as written in the definition."""
        return self.raw.get(key, default)


@dataclass(frozen=True, slots=True)
class StateMachine:
    """A machine: the top level, a Parallel branch or a Map's item processor."""

    start_at: str
    states: Mapping[str, State]
    comment: str | None = None
    timeout_seconds: int | None = None
    version: str | None = None
    query_language: str = "JSONPath"

    def all_states(self) -> list[State]:
        """Every state of the machine, nested machines included."""
        out: list[State] = []
        for state in self.states.values():
            out.append(state)
            for machine in state.machines:
                out.extend(machine.all_states())
        return out


def loads(text: str | bytes) -> StateMachine:
    """Parse a definition from JSON text."""
    if isinstance(text, bytes):
        if len(text) > MAX_DEFINITION_BYTES:
            raise DefinitionError(
                f"The definition is {len(text)} bytes; the limit is {MAX_DEFINITION_BYTES}"
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DefinitionError(f"The definition is not valid UTF-8 (byte {exc.start})") from None
    if text_size(text) > MAX_DEFINITION_BYTES:
        raise DefinitionError(f"The definition is larger than {MAX_DEFINITION_BYTES} bytes")
    try:
        document = parse_json(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"The definition is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise DefinitionError(f"The definition is not valid JSON: {exc}") from None
    except RecursionError:
        raise DefinitionError("The definition is nested too deeply") from None
    return parse(document)


def parse(document: JSON) -> StateMachine:
    """Build the typed model from a decoded definition; raise DefinitionError if unusable.

    Parsed machines are cached by their JSON text: running one definition many times (the
    service, a test suite, run_local in a loop) parses it once. The model is built from a
    private copy, so changing ``document`` afterwards cannot change it.
    """
    if isinstance(document, StateMachine):
        return document
    try:
        text = dumps(document)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"The definition is not JSON: {exc}") from None
    except RecursionError:
        raise DefinitionError("The definition is nested too deeply") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON text may spell half of a surrogate pair ("\ud800"); that is no Unicode text,
        # and no database, log or AWS client could store or show it.
        code = f"U+{ord(text[exc.start]):04X}"
        raise DefinitionError(
            f"The definition contains a lone surrogate ({code}), which is not Unicode text",
            _surrogate_location(document, "") or "/",
        ) from None
    return _parse_text(text)


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def _surrogate_location(value: JSON, at: str) -> str | None:
    """The JSON Pointer of the first key or string holding a lone surrogate, if any."""
    if isinstance(value, dict):
        for key, item in value.items():
            # The pointer is shown as text: the surrogate is escaped in it.
            where = f"{at}/{key.encode('utf-8', 'backslashreplace').decode()}"
            found = where if _has_surrogate(key) else _surrogate_location(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _surrogate_location(item, f"{at}/{index}")
            if found is not None:
                return found
    elif isinstance(value, str) and _has_surrogate(value):
        return at or "/"
    return None


@lru_cache(maxsize=256)
def _parse_text(text: str) -> StateMachine:
    machine = _machine(json.loads(text), "")
    names: set[str] = set()
    for state in machine.all_states():
        if state.name in names:
            raise DefinitionError(
                f"State name '{state.name}' is used more than once", state.location
            )
        names.add(state.name)
    return machine


def _machine(doc: JSON, at: str, inherited: str = "JSONPath") -> StateMachine:
    if not isinstance(doc, dict):
        raise DefinitionError("A state machine must be a JSON object", at or "/")
    start_at = doc.get("StartAt")
    if not isinstance(start_at, str):
        raise DefinitionError("StartAt is required and must be a string", f"{at}/StartAt")
    states_doc = doc.get("States")
    if not isinstance(states_doc, dict) or not states_doc:
        raise DefinitionError("States is required and must be a non-empty object", f"{at}/States")
    language = doc.get("QueryLanguage", inherited)
    if language not in ("JSONPath", "JSONata"):
        raise DefinitionError("QueryLanguage must be JSONPath or JSONata", f"{at}/QueryLanguage")
    states = {
        name: _state(name, body, f"{at}/States/{_escape(name)}", language)
        for name, body in states_doc.items()
    }
    if start_at not in states:
        raise DefinitionError(
            f"StartAt '{start_at}' is not a state of this machine", f"{at}/StartAt"
        )
    for state in states.values():
        targets = [("Next", state.next)] + [
            (f"Catch/{i}/Next", c.next) for i, c in enumerate(state.catch)
        ]
        if state.type == "Choice":
            targets += [
                (f"Choices/{i}/Next", r.get("Next")) for i, r in enumerate(state.get("Choices"))
            ]
            targets.append(("Default", state.get("Default")))
        for where, target in targets:
            if target is not None and target not in states:
                raise DefinitionError(
                    f"Missing transition target '{target}'", f"{state.location}/{where}"
                )
    timeout = doc.get("TimeoutSeconds")
    if timeout is not None and (not _is_int(timeout) or timeout < 0):
        raise DefinitionError(
            "TimeoutSeconds must be a non-negative integer", f"{at}/TimeoutSeconds"
        )
    comment = doc.get("Comment")
    return StateMachine(
        start_at=start_at,
        states=states,
        comment=comment if isinstance(comment, str) else None,
        timeout_seconds=timeout,
        version=doc.get("Version"),
        query_language=language,
    )


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _path_field(body: Mapping[str, JSON], key: str, at: str) -> str | None:
    if key not in body:
        return "$"
    value = body[key]
    if value is not None and not (isinstance(value, str) and value.startswith("$")):
        raise DefinitionError(f"{key} must be a path beginning with '$' or null", f"{at}/{key}")
    return value


def _state(name: str, body: JSON, at: str, language: str) -> State:
    if not isinstance(body, dict):
        raise DefinitionError("A state must be a JSON object", at)
    kind = body.get("Type")
    if kind not in STATE_TYPES:
        raise DefinitionError(f"Type must be one of {', '.join(STATE_TYPES)}", f"{at}/Type")
    language = body.get("QueryLanguage", language)
    if language not in ("JSONPath", "JSONata"):
        raise DefinitionError("QueryLanguage must be JSONPath or JSONata", f"{at}/QueryLanguage")
    nxt = body.get("Next")
    end = body.get("End", False) is True
    if kind in ("Choice", "Succeed", "Fail"):
        if "Next" in body or "End" in body:
            raise DefinitionError(f"A {kind} state cannot have Next or End", at)
    elif (nxt is None) == (not end):
        raise DefinitionError("A state must have exactly one of Next or End: true", at)
    if nxt is not None and not isinstance(nxt, str):
        raise DefinitionError("Next must be a string", f"{at}/Next")
    if kind == "Choice":
        choices = body.get("Choices")
        if (
            not isinstance(choices, list)
            or not choices
            or not all(isinstance(c, dict) for c in choices)
        ):
            raise DefinitionError("Choices must be a non-empty array of rules", f"{at}/Choices")
    machines: tuple[StateMachine, ...] = ()
    if kind == "Parallel":
        branches = body.get("Branches")
        if not isinstance(branches, list) or not branches:
            raise DefinitionError("Branches must be a non-empty array", f"{at}/Branches")
        machines = tuple(
            _machine(b, f"{at}/Branches/{i}", language) for i, b in enumerate(branches)
        )
    elif kind == "Map":
        key = "ItemProcessor" if "ItemProcessor" in body else "Iterator"
        if key not in body:
            raise DefinitionError("A Map state needs an ItemProcessor", at)
        machines = (_machine(body[key], f"{at}/{key}", language),)
    elif kind == "Task" and not isinstance(body.get("Resource"), str):
        raise DefinitionError("Resource is required and must be a string", f"{at}/Resource")
    parameters_key = "ItemSelector" if kind == "Map" and "ItemSelector" in body else "Parameters"
    return State(
        name=name,
        type=kind,
        raw=body,
        location=at,
        next=nxt,
        end=end,
        input_path=_path_field(body, "InputPath", at),
        output_path=_path_field(body, "OutputPath", at),
        result_path=_path_field(body, "ResultPath", at),
        parameters=body.get(parameters_key),
        has_parameters=parameters_key in body,
        result_selector=body.get("ResultSelector"),
        has_result_selector="ResultSelector" in body,
        assign=body.get("Assign"),
        retry=tuple(_retrier(r, f"{at}/Retry/{i}") for i, r in enumerate(body.get("Retry") or ())),
        catch=tuple(_catcher(c, f"{at}/Catch/{i}") for i, c in enumerate(body.get("Catch") or ())),
        machines=machines,
        distributed=kind == "Map" and _mode(body) == "DISTRIBUTED",
        jsonata=language == "JSONata",
    )


def _mode(body: Mapping[str, JSON]) -> JSON:
    processor = body.get("ItemProcessor")
    if not isinstance(processor, dict):
        return "INLINE"
    config = processor.get("ProcessorConfig")
    return config.get("Mode", "INLINE") if isinstance(config, dict) else "INLINE"


def _error_equals(doc: Mapping[str, JSON], at: str) -> tuple[str, ...]:
    errors = doc.get("ErrorEquals")
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        raise DefinitionError(
            "ErrorEquals must be a non-empty array of strings", f"{at}/ErrorEquals"
        )
    return tuple(errors)


def _retrier(doc: JSON, at: str) -> Retrier:
    if not isinstance(doc, dict):
        raise DefinitionError("A retrier must be an object", at)
    numbers: dict[str, Any] = {}
    for key, default in (
        ("IntervalSeconds", 1),
        ("MaxAttempts", 3),
        ("BackoffRate", 2.0),
        ("MaxDelaySeconds", None),
    ):
        value = doc.get(key, default)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            raise DefinitionError(f"{key} must be a non-negative number", f"{at}/{key}")
        numbers[key] = value
    return Retrier(
        error_equals=_error_equals(doc, at),
        interval_seconds=numbers["IntervalSeconds"],
        max_attempts=int(numbers["MaxAttempts"]),
        backoff_rate=float(numbers["BackoffRate"]),
        max_delay_seconds=numbers["MaxDelaySeconds"],
        jitter_strategy=doc.get("JitterStrategy", "NONE"),
    )


def _catcher(doc: JSON, at: str) -> Catcher:
    if not isinstance(doc, dict):
        raise DefinitionError("A catcher must be an object", at)
    nxt = doc.get("Next")
    if not isinstance(nxt, str):
        raise DefinitionError("Next is required in a catcher", f"{at}/Next")
    return Catcher(
        error_equals=_error_equals(doc, at),
        next=nxt,
        result_path=_path_field(doc, "ResultPath", at),
        assign=doc.get("Assign"),
        raw=doc,
    )
