"""A JSON Schema (draft 2020-12) of the Amazon States Language, for editors.

It gives completion and basic checks in any JSON-Schema-aware editor: states by ``Type`` with
their fields, in both query languages. It is a helper, not the validator: transitions,
reachability, paths, intrinsics and operand types are checked by ``validate()``.
"""

from __future__ import annotations

from typing import Any

JSON = Any

_SECONDS = {"type": "integer", "minimum": 0, "maximum": 99_999_999}
_POSITIVE_SECONDS = {"type": "integer", "minimum": 1, "maximum": 99_999_999}
_JSONATA = {"type": "string", "pattern": r"^\{%[\s\S]*%\}$"}
_PATH = {"type": "string", "pattern": r"^\$"}
_NULLABLE_PATH = {"type": ["string", "null"], "pattern": r"^\$"}
_NAME = {"type": "string", "minLength": 1, "maxLength": 80}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _either(*options: JSON) -> dict[str, JSON]:
    return {"anyOf": list(options)}


# Fields of each state type beside Type/Comment/QueryLanguage (States Language spec).
_COMMON_FLOW: dict[str, JSON] = {"Next": _NAME, "End": {"const": True}, "Assign": _ref("assign")}
_IO: dict[str, JSON] = {"InputPath": _NULLABLE_PATH, "OutputPath": _NULLABLE_PATH}
_RESULT: dict[str, JSON] = {
    "Parameters": _ref("template"),
    "ResultSelector": _ref("template"),
    "ResultPath": _NULLABLE_PATH,
    "Arguments": {},
    "Output": {},
}
_ERRORS: dict[str, JSON] = {
    "Retry": {"type": "array", "items": _ref("retrier")},
    "Catch": {"type": "array", "items": _ref("catcher")},
}
_STATE_FIELDS: dict[str, dict[str, JSON]] = {
    "Pass": {
        **_COMMON_FLOW,
        **_IO,
        "Parameters": _ref("template"),
        "Result": {},
        "ResultPath": _NULLABLE_PATH,
        "Output": {},
    },
    "Task": {
        **_COMMON_FLOW,
        **_IO,
        **_RESULT,
        **_ERRORS,
        "Resource": {"type": "string", "pattern": "^arn:"},
        "TimeoutSeconds": _either(_POSITIVE_SECONDS, _JSONATA),
        "TimeoutSecondsPath": _PATH,
        "HeartbeatSeconds": _either(_POSITIVE_SECONDS, _JSONATA),
        "HeartbeatSecondsPath": _PATH,
        "Credentials": {"type": "object"},
    },
    "Choice": {
        **_IO,
        "Choices": {"type": "array", "minItems": 1, "items": _ref("choiceRule")},
        "Default": _NAME,
        "Assign": _ref("assign"),
        "Output": {},
    },
    "Wait": {
        **_COMMON_FLOW,
        **_IO,
        "Seconds": _either(_SECONDS, _JSONATA),
        "SecondsPath": _PATH,
        "Timestamp": {"type": "string"},
        "TimestampPath": _PATH,
        "Output": {},
    },
    "Succeed": {**_IO, "Output": {}},
    "Fail": {
        "Error": {"type": "string"},
        "ErrorPath": {"type": "string"},
        "Cause": {"type": "string"},
        "CausePath": {"type": "string"},
    },
    "Parallel": {
        **_COMMON_FLOW,
        **_IO,
        **_RESULT,
        **_ERRORS,
        "Branches": {"type": "array", "minItems": 1, "items": _ref("machine")},
    },
    "Map": {
        **_COMMON_FLOW,
        **_IO,
        **_RESULT,
        **_ERRORS,
        "ItemProcessor": _ref("itemProcessor"),
        "Iterator": _ref("machine"),
        "ItemsPath": _PATH,
        "Items": {},
        "ItemSelector": {},
        "ItemReader": {"type": "object", "properties": {"Resource": {"type": "string"}}},
        "ItemBatcher": {"type": "object"},
        "ResultWriter": {"type": "object"},
        "MaxConcurrency": _either({"type": "integer", "minimum": 0}, _JSONATA),
        "MaxConcurrencyPath": _PATH,
        "ToleratedFailurePercentage": _either(
            {"type": "number", "minimum": 0, "maximum": 100}, _JSONATA
        ),
        "ToleratedFailurePercentagePath": _PATH,
        "ToleratedFailureCount": _either({"type": "integer", "minimum": 0}, _JSONATA),
        "ToleratedFailureCountPath": _PATH,
        "Label": {"type": "string", "maxLength": 40},
    },
}
# Fields that exist only in one query language (AWS guide, "Transforming data with JSONata").
_JSONPATH_ONLY = (
    "InputPath OutputPath Parameters ResultSelector ResultPath Result ItemsPath "
    "TimeoutSecondsPath HeartbeatSecondsPath SecondsPath TimestampPath ErrorPath CausePath "
    "MaxConcurrencyPath ToleratedFailurePercentagePath ToleratedFailureCountPath"
).split()
_JSONATA_ONLY = ("Arguments", "Output", "Items")

_OPERATORS = [
    f"{family}{op}{path}"
    for family in ("String", "Numeric", "Timestamp")
    for op in ("Equals", "LessThan", "GreaterThan", "LessThanEquals", "GreaterThanEquals")
    for path in ("", "Path")
] + ["BooleanEquals", "BooleanEqualsPath", "StringMatches"]
_TYPE_TESTS = ["IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp"]


def _state(kind: str) -> dict[str, JSON]:
    fields = _STATE_FIELDS[kind]
    properties: dict[str, JSON] = {
        "Type": {"const": kind},
        "Comment": {"type": "string"},
        "QueryLanguage": {"enum": ["JSONPath", "JSONata"]},
        **fields,
    }
    schema: dict[str, JSON] = {
        "type": "object",
        "properties": properties,
        "required": ["Type"] + (["Resource"] if kind == "Task" else []),
        "additionalProperties": False,
        "allOf": [
            {
                "if": {
                    "properties": {"QueryLanguage": {"const": "JSONata"}},
                    "required": ["QueryLanguage"],
                },
                "then": {"not": {"anyOf": [{"required": [f]} for f in _JSONPATH_ONLY]}},
            },
            {
                "if": {
                    "properties": {"QueryLanguage": {"const": "JSONPath"}},
                    "required": ["QueryLanguage"],
                },
                "then": {"not": {"anyOf": [{"required": [f]} for f in _JSONATA_ONLY]}},
            },
        ],
    }
    if "Next" in fields:
        schema["oneOf"] = [{"required": ["Next"]}, {"required": ["End"]}]
    if kind == "Wait":
        schema["oneOf"] = [
            {"required": [k]} for k in ("Seconds", "Timestamp", "SecondsPath", "TimestampPath")
        ]
        schema["allOf"].append({"oneOf": [{"required": ["Next"]}, {"required": ["End"]}]})
    return schema


def _defs() -> dict[str, JSON]:
    machine_properties = {
        "StartAt": _NAME,
        "States": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"maxLength": 80},
            "additionalProperties": _ref("state"),
        },
        "Comment": {"type": "string"},
    }
    rule_properties: dict[str, JSON] = {op: {} for op in _OPERATORS} | {
        t: {"type": "boolean"} for t in _TYPE_TESTS
    }
    return {
        "state": {
            "type": "object",
            "required": ["Type"],
            "oneOf": [_ref(f"{kind}State") for kind in _STATE_FIELDS],
        },
        **{f"{kind}State": _state(kind) for kind in _STATE_FIELDS},
        "machine": {
            "type": "object",
            "required": ["StartAt", "States"],
            "properties": machine_properties,
            "additionalProperties": False,
        },
        "itemProcessor": {
            "type": "object",
            "required": ["StartAt", "States"],
            "properties": machine_properties
            | {
                "ProcessorConfig": {
                    "type": "object",
                    "properties": {
                        "Mode": {"enum": ["INLINE", "DISTRIBUTED"]},
                        "ExecutionType": {"enum": ["STANDARD", "EXPRESS"]},
                    },
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
        },
        "template": {"description": "Payload template: keys ending in .$ take a path or intrinsic"},
        "assign": {
            "type": "object",
            "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.\$)?$", "maxLength": 82},
        },
        "errorEquals": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "retrier": {
            "type": "object",
            "required": ["ErrorEquals"],
            "properties": {
                "ErrorEquals": _ref("errorEquals"),
                "IntervalSeconds": _POSITIVE_SECONDS,
                "MaxAttempts": _SECONDS,
                "BackoffRate": {"type": "number", "minimum": 1},
                "MaxDelaySeconds": {"type": "integer", "minimum": 1, "maximum": 31_622_400},
                "JitterStrategy": {"enum": ["FULL", "NONE"]},
                "Comment": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "catcher": {
            "type": "object",
            "required": ["ErrorEquals", "Next"],
            "properties": {
                "ErrorEquals": _ref("errorEquals"),
                "Next": _NAME,
                "ResultPath": _NULLABLE_PATH,
                "Output": {},
                "Assign": _ref("assign"),
                "Comment": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "choiceRule": {
            "type": "object",
            "properties": {
                "Variable": _PATH,
                "Next": _NAME,
                "Comment": {"type": "string"},
                "Condition": _either(_JSONATA, {"type": "boolean"}),
                "Assign": _ref("assign"),
                "Output": {},
                "And": {"type": "array", "minItems": 1, "items": _ref("choiceRule")},
                "Or": {"type": "array", "minItems": 1, "items": _ref("choiceRule")},
                "Not": _ref("choiceRule"),
                **rule_properties,
            },
            "additionalProperties": False,
        },
    }


def json_schema() -> dict[str, JSON]:
    """The JSON Schema (draft 2020-12) of an ASL definition, for editors."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://statewright.dev/schemas/asl.json",
        "title": "Amazon States Language state machine",
        "type": "object",
        "required": ["StartAt", "States"],
        "properties": {
            "StartAt": _NAME,
            "States": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"maxLength": 80},
                "additionalProperties": _ref("state"),
            },
            "Comment": {"type": "string"},
            "Version": {"const": "1.0"},
            "TimeoutSeconds": _SECONDS,
            "QueryLanguage": {"enum": ["JSONPath", "JSONata"], "default": "JSONPath"},
        },
        "additionalProperties": False,
        "$defs": _defs(),
    }
