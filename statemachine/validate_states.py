"""Tables and per-state-type checks of the static validator (statemachine/validate.py).

Which fields each state type takes in each query language, the Choice operators and the
intrinsic arities, and one function per state type that checks its own fields and returns the
nested machines (Parallel branches, Map processors) to check next.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from statemachine.waits import parse_timestamp

if TYPE_CHECKING:
    from statemachine.validate import _Checker

JSON = Any

ERROR: Final = "ERROR"
WARNING: Final = "WARNING"
MAX_DEFINITION_BYTES: Final = 1_048_576  # AWS quota: a definition is at most 1 MiB
# JSON nesting. AWS allows 1000 (Jackson's default StreamReadConstraints limit), but the REST
# API's serializer (pydantic) stops at 254 levels: a deeper definition would be stored and then
# fail every answer that carries it (upload, describe, the list of all state machines).
MAX_DEPTH: Final = 250
MAX_NAME_LENGTH: Final = 80  # state and variable names
MAX_SECONDS: Final = 99_999_999  # TimeoutSeconds, HeartbeatSeconds, Wait Seconds, retry fields
MAX_DELAY_SECONDS: Final = 31_622_400  # Retry MaxDelaySeconds: one year plus a day
JSONPATH, JSONATA = "JSONPath", "JSONata"
STATE_TYPES: Final = ("Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map")

# --- Tables -------------------------------------------------------------------------------

_COMMON = frozenset({"Type", "Comment", "QueryLanguage"})
_FLOW = frozenset({"Next", "End"})
_IO_PATHS = frozenset({"InputPath", "OutputPath"})
_RESULT = frozenset({"Parameters", "ResultSelector", "ResultPath"})
_ERRORS = frozenset({"Retry", "Catch"})

# Fields each state type accepts: (in both languages, JSONPath only, JSONata only).
# States Language spec, "State Types", and the AWS guide's JSONata field table.
_FIELDS: Final[Mapping[str, tuple[frozenset[str], frozenset[str], frozenset[str]]]] = {
    "Pass": (
        _FLOW | {"Assign"},
        _IO_PATHS | {"Parameters", "Result", "ResultPath"},
        frozenset({"Output"}),
    ),
    "Task": (
        _FLOW
        | _ERRORS
        | {"Assign", "Resource", "TimeoutSeconds", "HeartbeatSeconds", "Credentials"},
        _IO_PATHS | _RESULT | {"TimeoutSecondsPath", "HeartbeatSecondsPath"},
        frozenset({"Arguments", "Output"}),
    ),
    "Choice": (frozenset({"Choices", "Default", "Assign"}), _IO_PATHS, frozenset({"Output"})),
    "Wait": (
        _FLOW | {"Assign", "Seconds", "Timestamp"},
        _IO_PATHS | {"SecondsPath", "TimestampPath"},
        frozenset({"Output"}),
    ),
    "Succeed": (frozenset(), _IO_PATHS, frozenset({"Output"})),
    "Fail": (frozenset({"Error", "Cause"}), frozenset({"ErrorPath", "CausePath"}), frozenset()),
    "Parallel": (
        _FLOW | _ERRORS | {"Assign", "Branches"},
        _IO_PATHS | _RESULT,
        frozenset({"Arguments", "Output"}),
    ),
    "Map": (
        _FLOW
        | _ERRORS
        | {"Assign", "ItemProcessor", "Iterator", "ItemSelector", "ItemReader", "ItemBatcher"}
        | {"ResultWriter", "MaxConcurrency", "Label"}
        | {"ToleratedFailurePercentage", "ToleratedFailureCount"},
        _IO_PATHS
        | _RESULT
        | {"ItemsPath", "MaxConcurrencyPath"}
        | {"ToleratedFailurePercentagePath", "ToleratedFailureCountPath"},
        frozenset({"Items", "Output"}),
    ),
}
_JSONATA_INSTEAD: Final = {
    "InputPath": "Arguments or Output with $states.input",
    "OutputPath": "Output",
    "Parameters": "Arguments",
    "ResultSelector": "Output with $states.result",
    "ResultPath": "Output (or Assign)",
    "Result": "Output",
    "ItemsPath": "Items",
}
_JSONPATH_INSTEAD: Final = {
    "Arguments": "Parameters",
    "Output": "ResultSelector/ResultPath/OutputPath",
    "Items": "ItemsPath",
    "Condition": "Variable with a comparison operator",
}
_MACHINE_FIELDS: Final = {
    "top": frozenset({"StartAt", "States", "Comment", "Version", "TimeoutSeconds"})
    | {"QueryLanguage"},
    "branch": frozenset({"StartAt", "States", "Comment"}),
    "processor": frozenset({"StartAt", "States", "Comment", "ProcessorConfig"}),
}
_RETRIER_FIELDS: Final = frozenset(
    {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds"}
    | {"JitterStrategy", "Comment"}
)
_CATCHER_FIELDS: Final = {
    JSONPATH: frozenset({"ErrorEquals", "Next", "Comment", "Assign", "ResultPath"}),
    JSONATA: frozenset({"ErrorEquals", "Next", "Comment", "Assign", "Output"}),
}

# Choice comparison operators and the operand each takes (States Language spec, "Choice Rules").
_OPERAND_KINDS: Final = {"String": "string", "Numeric": "number", "Timestamp": "timestamp"}
_OPERATORS: dict[str, str] = {
    f"{family}{suffix}": kind
    for family, kind in _OPERAND_KINDS.items()
    for suffix in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
}
_OPERATORS["BooleanEquals"] = "boolean"
_PATH_OPERATORS: Final = frozenset(f"{name}Path" for name in _OPERATORS)
_OPERATORS["StringMatches"] = "string"
_OPERATORS.update(
    {f"Is{t}": "boolean" for t in ("Null", "Present", "Numeric", "String", "Boolean", "Timestamp")}
)
_LOGICAL: Final = ("And", "Or", "Not")

# Predefined error names (AWS guide, "Error names"); anything else under States. is a typo.
_STATES_ERRORS: Final = frozenset(
    f"States.{name}"
    for name in (
        "ALL DataLimitExceeded Runtime Timeout HeartbeatTimeout TaskFailed Permissions "
        "ResultPathMatchFailure ParameterPathFailure IntrinsicFailure NoChoiceMatched "
        "QueryEvaluationError BranchFailed ExceedToleratedFailureThreshold ItemReaderFailed "
        "ResultWriterFailed Http.Socket"
        # Raised by Statewright's HTTP task runner (README, "HTTP tasks"): Retry/Catch may
        # name them without a warning.
        " Http.Connection Http.NameResolution Http.TLS Http.DestinationNotAllowed"
        " Http.UnsupportedResponse"
    ).split()
)
_HTTP_STATUS_ERROR = re.compile(r"States\.Http\.StatusCode\.\d{3}")
# AWS ARNs, and Statewright's own integrations (arn:statewright:::container:run), which have no
# service, region or account.
_ARN = re.compile(
    r"arn:[A-Za-z0-9-]+:[A-Za-z0-9-]+:[A-Za-z0-9-]*:(?:\d{12})?:\S+"
    r"|arn:statewright:::[a-z0-9-]+:\S+"
)
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VARIABLE_REFERENCE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LOOKS_LIKE_PATH = re.compile(r"\$\$?[.\[]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: JSON) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_jsonata(value: JSON) -> bool:
    return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")


def _kind(value: JSON) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


class _Duplicates(dict[str, JSON]):
    """A decoded object whose text repeated keys; JSON decoding keeps only the last value."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    dup = _Duplicates(obj)
    seen: set[str] = set()
    dup.duplicates = []
    for key, _ in pairs:
        if key in seen:
            dup.duplicates.append(key)
        seen.add(key)
    return dup


def _reject_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not a JSON value")


# --- Type-specific checks: each returns the nested machines to check ------------------------

_Nested = list[tuple[JSON, str, str]]


def _task(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    resource = body.get("Resource")
    if "Resource" not in body:
        c.schema("A Task state needs Resource, the ARN of what to run", at)
    elif not isinstance(resource, str) or not _ARN.fullmatch(resource):
        c.error(
            "INVALID_RESOURCE",
            f"Resource must be an ARN such as 'arn:aws:states:::lambda:invoke', not {resource!r}",
            f"{at}/Resource",
        )
    limits: dict[str, int] = {}
    for key in ("TimeoutSeconds", "HeartbeatSeconds"):
        c.exclusive(body, (key, f"{key}Path"), at)
        if key in body and not c.jsonata_or(body[key], language):
            if c.integer(body[key], f"{at}/{key}", key, 1):
                limits[key] = body[key]
        if f"{key}Path" in body and language == JSONPATH:
            c.path(body[f"{key}Path"], f"{at}/{key}Path", f"{key}Path", reference=True)
    if limits.get("HeartbeatSeconds", 0) >= limits.get("TimeoutSeconds", MAX_SECONDS + 1):
        c.schema(
            "HeartbeatSeconds must be less than TimeoutSeconds, or the heartbeat can never fire",
            f"{at}/HeartbeatSeconds",
        )
    if "Credentials" in body and not isinstance(body["Credentials"], dict):
        c.schema("Credentials must be an object with RoleArn", f"{at}/Credentials")
    return []


def _choice(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    choices = body.get("Choices")
    if not isinstance(choices, list) or not choices:
        c.schema("A Choice state needs Choices, a non-empty array of rules", at)
        choices = choices if isinstance(choices, list) else []
    for i, rule in enumerate(choices):
        _rule(c, rule, f"{at}/Choices/{i}", language, top=True)
    if "Default" in body and not isinstance(body["Default"], str):
        c.schema("Default must be a state name (a string)", f"{at}/Default")
    return []


def _rule(c: _Checker, rule: JSON, at: str, language: str, *, top: bool) -> None:
    if not isinstance(rule, dict):
        c.schema(f"A Choice rule must be an object, not {_kind(rule)}", at)
        return
    if top:
        if "Next" not in rule:
            c.error("CHOICE_RULE_MISSING_NEXT", "A Choice rule needs Next", at)
        elif not isinstance(rule["Next"], str):
            c.schema("Next must be a state name (a string)", f"{at}/Next")
        if "Assign" in rule:
            c.assign(rule["Assign"], f"{at}/Assign", language)
    else:
        for key in ("Next", "Assign", "Output"):
            if key in rule:
                c.error(
                    "CHOICE_RULE_NEXT_IN_NESTED" if key == "Next" else "SCHEMA_VALIDATION_FAILED",
                    f"{key} belongs on the top-level Choice rule, not inside And/Or/Not",
                    f"{at}/{key}",
                )
    if language == JSONATA:
        _jsonata_rule(c, rule, at)
        return
    operators = [k for k in rule if k in _OPERATORS or k in _PATH_OPERATORS or k in _LOGICAL]
    for key in rule:
        if key not in operators and key not in ("Variable", "Next", "Assign", "Comment"):
            hint = _JSONPATH_INSTEAD.get(key, "a comparison operator")
            c.schema(f"{key} is not a field of a JSONPath Choice rule; use {hint}", f"{at}/{key}")
    if not operators:
        c.error(
            "CHOICE_RULE_NO_OPERATOR",
            "The rule has no comparison operator (e.g. StringEquals) and no And/Or/Not",
            at,
        )
    elif len(operators) > 1:
        c.error(
            "CHOICE_RULE_MULTIPLE_OPERATORS",
            f"A rule takes exactly one operator but has {', '.join(operators)}; combine them "
            "with And/Or",
            at,
        )
    for op in operators:
        where = f"{at}/{op}"
        if op in _LOGICAL:
            _logical(c, rule[op], where, op, language)
            if "Variable" in rule:
                c.schema(f"Variable is not used by {op}; move it into the nested rules", at)
            continue
        if "Variable" not in rule:
            c.error("CHOICE_RULE_MISSING_VARIABLE", f"{op} needs a Variable to compare", at)
        else:
            c.path(rule["Variable"], f"{at}/Variable", "Variable")
        if op in _PATH_OPERATORS:
            c.path(rule[op], where, op)
        elif not _operand_ok(_OPERATORS[op], rule[op]):
            wanted = _OPERATORS[op]
            detail = "an RFC 3339 timestamp string" if wanted == "timestamp" else f"a {wanted}"
            c.error(
                "CHOICE_RULE_INVALID_OPERAND",
                f"{op} compares with {detail}, not {rule[op]!r}",
                where,
            )


def _operand_ok(kind: str, value: JSON) -> bool:
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "timestamp":
        return isinstance(value, str) and parse_timestamp(value) is not None
    return isinstance(value, str)


def _logical(c: _Checker, value: JSON, at: str, op: str, language: str) -> None:
    if op == "Not":
        if not isinstance(value, dict):
            c.error("CHOICE_RULE_INVALID_LOGICAL", "Not takes one rule (an object)", at)
        else:
            _rule(c, value, at, language, top=False)
        return
    if not isinstance(value, list) or not value:
        c.error("CHOICE_RULE_INVALID_LOGICAL", f"{op} takes a non-empty array of rules", at)
        return
    for i, nested in enumerate(value):
        _rule(c, nested, f"{at}/{i}", language, top=False)


def _jsonata_rule(c: _Checker, rule: Mapping[str, JSON], at: str) -> None:
    for key in rule:
        if key not in ("Condition", "Next", "Assign", "Output", "Comment"):
            c.schema(
                f"{key} is not a field of a JSONata Choice rule; write the test as "
                "Condition: '{% ... %}'",
                f"{at}/{key}",
            )
    condition = rule.get("Condition")
    if "Condition" not in rule:
        c.error("CHOICE_RULE_MISSING_CONDITION", "A JSONata Choice rule needs Condition", at)
    elif not isinstance(condition, bool) and not _is_jsonata(condition):
        c.schema("Condition must be a '{% ... %}' expression or a boolean", f"{at}/Condition")


def _wait(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    present = [k for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath") if k in body]
    if len(present) != 1:
        got = ", ".join(present) if present else "none"
        c.schema(
            f"A Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath "
            f"(has {got})",
            at,
        )
    seconds, timestamp = body.get("Seconds"), body.get("Timestamp")
    if "Seconds" in body and not c.jsonata_or(seconds, language):
        c.integer(seconds, f"{at}/Seconds", "Seconds", 0)
    if "Timestamp" in body and not c.jsonata_or(timestamp, language):
        if not isinstance(timestamp, str) or parse_timestamp(timestamp) is None:
            c.error(
                "INVALID_TIMESTAMP",
                f"Timestamp must be RFC 3339 with an uppercase T and an offset, e.g. "
                f"'2024-03-14T01:59:00Z', not {timestamp!r}",
                f"{at}/Timestamp",
            )
    for key in ("SecondsPath", "TimestampPath"):
        if key in body and language == JSONPATH:
            c.path(body[key], f"{at}/{key}", key, reference=True)
    return []


def _fail(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    for key in ("Error", "Cause"):
        c.exclusive(body, (key, f"{key}Path"), at)
        if key in body and not isinstance(body[key], str):
            c.schema(f"{key} must be a string", f"{at}/{key}")
        if f"{key}Path" in body and language == JSONPATH:
            c.expression(body[f"{key}Path"], f"{at}/{key}Path", f"{key}Path")
    return []


def _parallel(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    branches = body.get("Branches")
    if not isinstance(branches, list) or not branches:
        c.schema("A Parallel state needs Branches, a non-empty array of state machines", at)
        return []
    return [(branch, f"{at}/Branches/{i}", "branch") for i, branch in enumerate(branches)]


def _map(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    c.exclusive(body, ("ItemProcessor", "Iterator"), at)
    c.exclusive(body, ("Parameters", "ItemSelector"), at)
    for key in ("MaxConcurrency", "ToleratedFailurePercentage", "ToleratedFailureCount"):
        c.exclusive(body, (key, f"{key}Path"), at)
        value: Any = body[key] if key in body else None
        if key in body and not c.jsonata_or(value, language):
            if key == "ToleratedFailurePercentage":
                if not _is_number(value) or not 0 <= value <= 100:
                    c.schema(f"{key} must be a number from 0 to 100", f"{at}/{key}")
            else:
                c.integer(value, f"{at}/{key}", key, 0, 2**31 - 1)
        if f"{key}Path" in body and language == JSONPATH:
            c.path(body[f"{key}Path"], f"{at}/{key}Path", f"{key}Path", reference=True)
    if "ItemsPath" in body and language == JSONPATH:
        c.path(body["ItemsPath"], f"{at}/ItemsPath", "ItemsPath", reference=True)
    for key in ("ItemReader", "ResultWriter", "ItemBatcher"):
        config = body.get(key)
        if key not in body:
            continue
        if not isinstance(config, dict):
            c.schema(f"{key} must be an object", f"{at}/{key}")
            continue
        if key != "ItemBatcher" and ("Resource" in config or key == "ItemReader"):
            resource = config.get("Resource")
            if not isinstance(resource, str) or not _ARN.fullmatch(resource):
                c.error("INVALID_RESOURCE", f"{key}.Resource must be an ARN", f"{at}/{key}")
        if language == JSONPATH and "Parameters" in config:
            c.template(config["Parameters"], f"{at}/{key}/Parameters")
    if "Label" in body and not isinstance(body["Label"], str):
        c.schema("Label must be a string", f"{at}/Label")
    for key, kind in (("ItemProcessor", "processor"), ("Iterator", "processor")):
        if key in body:
            return [(body[key], f"{at}/{key}", kind)]
    c.schema("A Map state needs ItemProcessor, the state machine run for each item", at)
    return []


def _no_checks(c: _Checker, body: Mapping[str, JSON], at: str, language: str) -> _Nested:
    return []


_STATE_CHECKS: Final[Mapping[str, Callable[[_Checker, Mapping[str, JSON], str, str], _Nested]]] = {
    "Pass": _no_checks,
    "Task": _task,
    "Choice": _choice,
    "Wait": _wait,
    "Succeed": _no_checks,
    "Fail": _fail,
    "Parallel": _parallel,
    "Map": _map,
}
