"""JSONata states (``"QueryLanguage": "JSONata"``), run end to end with run_local.

Exact outputs, errors and causes; the causes follow AWS's wording as recorded in the
conformance corpus (``../shared/conformance/cases``).
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statemachine import LocalResult, TaskError, TaskRequest, run_local

JSON = Any
START = datetime(2024, 1, 1, tzinfo=UTC)
LAMBDA = "arn:aws:states:::lambda:invoke"
QEE = "States.QueryEvaluationError"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def prefix(state: str = "S", entered: int = 2) -> str:
    return f"An error occurred while executing the state '{state}' (entered at the event id #{entered}). "


def run(definition: dict[str, JSON], data: JSON, tasks: Any = None, **kwargs: Any) -> LocalResult:
    return run_local(definition, data, tasks=tasks, clock=lambda: START, **kwargs)


def machine(states: dict[str, JSON], start: str | None = None) -> dict[str, JSON]:
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)), "States": states}


def one(state: dict[str, JSON], data: JSON, tasks: Any = None, **kwargs: Any) -> LocalResult:
    body = dict(state)
    if body["Type"] not in ("Succeed", "Fail", "Choice"):
        body.setdefault("End", True)
    return run(machine({"S": body}), data, tasks, **kwargs)


def types(result: LocalResult) -> list[str]:
    return [event.type for event in result.events]


def echo(request: TaskRequest) -> JSON:
    return {"got": request.parameters}


def boom(request: TaskRequest) -> JSON:
    raise TaskError("Boom", "it broke")


def item_pass() -> dict[str, JSON]:
    return {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}


# ---------------------------------------------------------------------------- Output / Pass

# (id, Pass state, input, expected output)
PASS_OUTPUTS: list[tuple[str, dict[str, JSON], JSON, JSON]] = [
    ("no-output-is-input", {"Type": "Pass"}, {"a": 1}, {"a": 1}),
    (
        "literal-output",
        {"Type": "Pass", "Output": {"k": [1, "x", None]}},
        {},
        {"k": [1, "x", None]},
    ),
    (
        "nested-objects-and-arrays",
        {
            "Type": "Pass",
            "Output": {
                "a": "{% $states.input.x %}",
                "l": ["lit", "{% 1 + 1 %}", {"n": "{% $states.input.y[0] %}"}],
                "deep": {"deeper": {"v": "{% $uppercase($states.input.s) %}"}},
            },
        },
        {"x": {"q": True}, "y": [7, 8], "s": "hi"},
        {"a": {"q": True}, "l": ["lit", 2, {"n": 7}], "deep": {"deeper": {"v": "HI"}}},
    ),
    (
        "literal-strings-kept",
        {
            "Type": "Pass",
            "Output": {
                "inner": "text {% 1 %} text",
                "open": "{% not closed",
                "spaced": " {% 1 %}",
                "plain": "$states.input",
            },
        },
        {},
        {
            "inner": "text {% 1 %} text",
            "open": "{% not closed",
            "spaced": " {% 1 %}",
            "plain": "$states.input",
        },
    ),
    (
        "whole-output-expression",
        {"Type": "Pass", "Output": "{% $states.input.a %}"},
        {"a": [1, 2]},
        [1, 2],
    ),
    ("null-value-in-input", {"Type": "Pass", "Output": "{% $states.input.n %}"}, {"n": None}, None),
    (
        "nested-null",
        {"Type": "Pass", "Output": {"v": "{% $states.input.a %}"}},
        {"a": [1, None]},
        {"v": [1, None]},
    ),
    ("whole-float-becomes-int", {"Type": "Pass", "Output": "{% 1.5 * 2 %}"}, {}, 3),
    ("float", {"Type": "Pass", "Output": "{% 3 / 4 %}"}, {}, 0.75),
    ("string-concat", {"Type": "Pass", "Output": "{% 'a' & $states.input.b %}"}, {"b": "c"}, "ac"),
    ("boolean", {"Type": "Pass", "Output": "{% $states.input.n > 1 %}"}, {"n": 2}, True),
    ("local-binding", {"Type": "Pass", "Output": "{% ($x := 3; $x * $x) %}"}, {}, 9),
    ("input-array", {"Type": "Pass", "Output": "{% $count($states.input) %}"}, [1, 2, 3], 3),
    ("input-scalar", {"Type": "Pass", "Output": "{% $states.input + 1 %}"}, 41, 42),
    ("context-state-name", {"Type": "Pass", "Output": "{% $states.context.State.Name %}"}, {}, "S"),
    (
        "context-execution",
        {
            "Type": "Pass",
            "Output": {
                "id": "{% $states.context.Execution.Id %}",
                "name": "{% $states.context.Execution.Name %}",
                "input": "{% $states.context.Execution.Input %}",
                "start": "{% $states.context.Execution.StartTime %}",
                "entered": "{% $states.context.State.EnteredTime %}",
                "sm": "{% $states.context.StateMachine.Id %}",
            },
        },
        {"q": 1},
        {
            "id": "arn:aws:states:us-east-1:123456789012:execution:StateMachine:local",
            "name": "local",
            "input": {"q": 1},
            "start": "2024-01-01T00:00:00.000Z",
            "entered": "2024-01-01T00:00:00.000Z",
            "sm": "arn:aws:states:us-east-1:123456789012:stateMachine:StateMachine",
        },
    ),
]


@pytest.mark.parametrize(
    ("state", "data", "expected"),
    [case[1:] for case in PASS_OUTPUTS],
    ids=[case[0] for case in PASS_OUTPUTS],
)
def test_pass_output(state: dict[str, JSON], data: JSON, expected: JSON) -> None:
    result = one(state, data)
    assert (result.status, result.error, result.cause) == ("SUCCEEDED", None, None)
    assert result.output == expected
    assert type(result.output) is type(expected)


def test_assign_nested_and_read_in_next_state() -> None:
    result = run(
        machine(
            {
                "A": {
                    "Type": "Pass",
                    "Assign": {
                        "obj": {
                            "k": "{% $states.input.a %}",
                            "l": ["x", "{% $states.input.a * 2 %}"],
                        },
                        "lit": "plain text",
                    },
                    "Next": "B",
                },
                "B": {
                    "Type": "Pass",
                    "Output": {"obj": "{% $obj %}", "lit": "{% $lit %}"},
                    "End": True,
                },
            }
        ),
        {"a": 5},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"obj": {"k": 5, "l": ["x", 10]}, "lit": "plain text"}
    exited = next(e for e in result.events if e.type == "PassStateExited")
    assert exited.details["assignedVariables"] == {
        "obj": {"k": 5, "l": ["x", 10]},
        "lit": "plain text",
    }
    assert exited.details["output"] == {"a": 5}


# ---------------------------------------------------------------------------- Task


def test_task_arguments_result_output_assign() -> None:
    seen: list[JSON] = []

    def task(request: TaskRequest) -> JSON:
        seen.append(request.parameters)
        return {"value": request.parameters["n"] * 10}

    result = run(
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Arguments": {"n": "{% $states.input.n %}", "fixed": ["a", {"b": "{% 'c' %}"}]},
                    "Output": {"in": "{% $states.input %}", "res": "{% $states.result %}"},
                    "Assign": {"v": "{% $states.result.value %}"},
                    "Next": "N",
                },
                "N": {
                    "Type": "Pass",
                    "Output": {"v": "{% $v %}", "prev": "{% $states.input.res %}"},
                    "End": True,
                },
            }
        ),
        {"n": 4},
        task,
    )
    assert seen == [{"n": 4, "fixed": ["a", {"b": "c"}]}]
    assert result.status == "SUCCEEDED"
    assert result.output == {"v": 40, "prev": {"value": 40}}


def test_task_without_arguments_sends_input_and_without_output_returns_result() -> None:
    result = one({"Type": "Task", "Resource": LAMBDA}, {"a": 1}, echo)
    assert result.status == "SUCCEEDED"
    assert result.output == {"got": {"a": 1}}


def test_catch_error_output_and_assign() -> None:
    result = run(
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Output": {
                                "err": "{% $states.errorOutput %}",
                                "in": "{% $states.input %}",
                            },
                            "Assign": {"code": "{% $states.errorOutput.Error %}"},
                            "Next": "H",
                        }
                    ],
                    "End": True,
                },
                "H": {
                    "Type": "Pass",
                    "Output": {"got": "{% $states.input %}", "code": "{% $code %}"},
                    "End": True,
                },
            }
        ),
        {"a": 1},
        boom,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {
        "got": {"err": {"Error": "Boom", "Cause": "it broke"}, "in": {"a": 1}},
        "code": "Boom",
    }
    exited = next(e for e in result.events if e.type == "TaskStateExited")
    assert exited.details["assignedVariables"] == {"code": "Boom"}


def test_catch_without_output_passes_error_output() -> None:
    result = run(
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Catch": [{"ErrorEquals": ["Boom"], "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Pass", "End": True},
            }
        ),
        {"a": 1},
        boom,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"Error": "Boom", "Cause": "it broke"}


def test_result_is_undefined_outside_task_result() -> None:
    # $states.result exists only where a result does: in a Pass it is undefined.
    result = one({"Type": "Pass", "Output": "{% $states.result %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix() + "The JSONata expression '$states.result' specified for the field 'Output' "
        "returned nothing (undefined)."
    )


def test_task_retry_count_in_context() -> None:
    def flaky(request: TaskRequest) -> JSON:
        if request.attempt < 2:
            raise TaskError("Flaky")
        return "ok"

    result = one(
        {
            "Type": "Task",
            "Resource": LAMBDA,
            "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 3}],
            "Output": {
                "r": "{% $states.result %}",
                "retries": "{% $states.context.State.RetryCount %}",
                "token": "{% $type($states.context.Task.Token) %}",
            },
        },
        {},
        flaky,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"r": "ok", "retries": 2, "token": "string"}


# ---------------------------------------------------------------------------- Choice

CHOICE = {
    "C": {
        "Type": "Choice",
        "Choices": [
            {
                "Condition": "{% $states.input.n > 10 %}",
                "Output": {"rule": "big", "n": "{% $states.input.n %}"},
                "Assign": {"picked": "big"},
                "Next": "Done",
            },
            {"Condition": "{% $states.input.n > 5 %}", "Next": "Done"},
        ],
        "Default": "Done",
        "Output": {"state": "{% $states.input.n %}"},
        "Assign": {"picked": "state-level"},
    },
    "Done": {
        "Type": "Pass",
        "Output": {
            "in": "{% $states.input %}",
            "picked": "{% $picked %}",
            "from": "{% $states.context.State.Name %}",
        },
        "End": True,
    },
}


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (20, {"in": {"rule": "big", "n": 20}, "picked": "big", "from": "Done"}),
        # A matching rule without its own Output/Assign uses the state-level ones.
        (7, {"in": {"state": 7}, "picked": "state-level", "from": "Done"}),
        # Default: the state-level Output and Assign.
        (1, {"in": {"state": 1}, "picked": "state-level", "from": "Done"}),
    ],
    ids=["rule-level", "rule-without-output", "default"],
)
def test_choice_rule_and_state_output_assign(n: int, expected: JSON) -> None:
    result = run(machine(CHOICE), {"n": n})
    assert result.status == "SUCCEEDED"
    assert result.output == expected


@pytest.mark.parametrize(
    ("condition", "data", "nxt"),
    [
        ("{% $states.input.flag %}", {"flag": True}, "Yes"),
        ("{% $states.input.flag %}", {"flag": False}, "No"),
        (True, {}, "Yes"),
        (False, {}, "No"),
        ("{% $exists($states.input.missing) %}", {}, "No"),
    ],
)
def test_choice_condition(condition: JSON, data: JSON, nxt: str) -> None:
    result = run(
        machine(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Condition": condition, "Next": "Yes"}],
                    "Default": "No",
                },
                "Yes": {"Type": "Pass", "Output": "yes", "End": True},
                "No": {"Type": "Pass", "Output": "no", "End": True},
            }
        ),
        data,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == nxt.lower()


@pytest.mark.parametrize(
    ("value", "type_name", "shown"),
    [
        (1, "number", "1"),
        ("true", "string", '"true"'),
        ({"a": 1}, "object", '{"a":1}'),
        ([True], "array", "[true]"),
        (None, "null", "null"),
    ],
)
def test_choice_condition_not_boolean(value: JSON, type_name: str, shown: str) -> None:
    result = run(
        machine(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {"Condition": "{% false %}", "Next": "Yes"},
                        {"Condition": "{% $states.input.v %}", "Next": "Yes"},
                    ],
                    "Default": "Yes",
                },
                "Yes": {"Type": "Succeed"},
            }
        ),
        {"v": value},
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix("C") + "The JSONata expression '$states.input.v' specified for the field "
        f"'Choices/1/Condition' returned an unexpected result type. Expected 'boolean', but was "
        f"'{type_name}' for value: {shown}"
    )
    assert types(result) == [
        "ExecutionStarted",
        "ChoiceStateEntered",
        "EvaluationFailed",
        "ExecutionFailed",
    ]


def test_choice_no_match_no_default() -> None:
    result = run(
        machine(
            {
                "C": {"Type": "Choice", "Choices": [{"Condition": "{% false %}", "Next": "Y"}]},
                "Y": {"Type": "Succeed"},
            }
        ),
        {},
    )
    assert result.status == "FAILED"
    assert result.error == "States.NoChoiceMatched"


# ---------------------------------------------------------------------------- Wait


@pytest.mark.parametrize(
    ("wait", "data", "fires"),
    [
        ({"Seconds": "{% $states.input.s %}"}, {"s": 90}, START + timedelta(seconds=90)),
        ({"Seconds": "{% $states.input.s * 2 %}"}, {"s": 3600}, START + timedelta(hours=2)),
        ({"Seconds": "{% 0 %}"}, {}, START),
        (
            {"Timestamp": "{% $states.input.t %}"},
            {"t": "2024-01-02T03:04:05Z"},
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ({"Timestamp": "{% '2023-12-31T00:00:00Z' %}"}, {}, START),  # in the past: no wait
    ],
    ids=["seconds", "seconds-arith", "zero", "timestamp", "timestamp-past"],
)
def test_wait_expressions_on_virtual_clock(
    wait: dict[str, JSON], data: JSON, fires: datetime
) -> None:
    result = one({"Type": "Wait", **wait, "Output": {"waited": True}}, data)
    assert result.status == "SUCCEEDED"
    assert result.output == {"waited": True}
    exited = [e for e in result.events if e.type == "WaitStateExited"]
    assert len(exited) == 1
    assert exited[0].timestamp == fires


@pytest.mark.parametrize(
    ("wait", "cause"),
    [
        (
            {"Seconds": "{% 'x' %}"},
            "The JSONata expression ''x'' specified for the field 'Seconds' returned an unexpected "
            "result type. Expected 'integer', but was 'string' for value: \"x\"",
        ),
        (
            {"Seconds": "{% 1.5 %}"},
            "The JSONata expression '1.5' specified for the field 'Seconds' returned an unexpected "
            "result type. Expected 'integer', but was 'number' for value: 1.5",
        ),
        (
            {"Timestamp": "{% 5 %}"},
            "The JSONata expression '5' specified for the field 'Timestamp' returned an unexpected "
            "result type. Expected 'string', but was 'number' for value: 5",
        ),
        (
            {"Seconds": "{% $nothing %}"},
            "The JSONata expression '$nothing' specified for the field 'Seconds' returned nothing (undefined).",
        ),
    ],
    ids=["seconds-string", "seconds-float", "timestamp-number", "undefined"],
)
def test_wait_expression_errors(wait: dict[str, JSON], cause: str) -> None:
    result = one({"Type": "Wait", **wait}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == prefix() + cause
    assert types(result) == [
        "ExecutionStarted",
        "WaitStateEntered",
        "EvaluationFailed",
        "ExecutionFailed",
    ]


def test_wait_negative_seconds_expression_fails() -> None:
    result = one({"Type": "Wait", "Seconds": "{% -5 %}"}, {})
    assert result.status == "FAILED"


# ---------------------------------------------------------------------------- Fail


def test_fail_error_and_cause_expressions() -> None:
    result = one(
        {
            "Type": "Fail",
            "Error": "{% 'Order.' & $states.input.code %}",
            "Cause": "{% $string($states.input) %}",
        },
        {"code": "Rejected"},
    )
    assert result.status == "FAILED"
    assert result.error == "Order.Rejected"
    assert result.cause == '{"code":"Rejected"}'
    assert types(result) == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]


def test_fail_literal_error_and_cause() -> None:
    result = one({"Type": "Fail", "Error": "E", "Cause": "plain"}, {})
    assert (result.status, result.error, result.cause) == ("FAILED", "E", "plain")


def test_fail_error_expression_undefined() -> None:
    result = one({"Type": "Fail", "Error": "{% $states.input.nope %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix() + "The JSONata expression '$states.input.nope' specified for the field 'Error' "
        "returned nothing (undefined)."
    )


def test_fail_error_expression_must_be_string() -> None:
    result = one({"Type": "Fail", "Error": "{% 42 %}", "Cause": "c"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert "Expected 'string'" in (result.cause or "")


# ---------------------------------------------------------------------------- Map


def test_map_items_literal_with_expressions() -> None:
    result = one(
        {
            "Type": "Map",
            "Items": [1, "{% $states.input.a %}", {"k": "{% 2 * 2 %}"}, ["{% 'n' %}"]],
            "ItemProcessor": item_pass(),
        },
        {"a": "A"},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == [1, "A", {"k": 4}, ["n"]]


def test_map_items_expression() -> None:
    result = one(
        {"Type": "Map", "Items": "{% $states.input.xs[$ > 1] %}", "ItemProcessor": item_pass()},
        {"xs": [1, 2, 3]},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == [2, 3]


def test_map_items_absent_uses_input() -> None:
    result = one({"Type": "Map", "ItemProcessor": item_pass()}, ["a", "b"])
    assert result.status == "SUCCEEDED"
    assert result.output == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "shown"),
    [({"a": 1}, '{"a":1}'), (1, "1"), ("s", '"s"'), (None, "null"), (True, "true")],
)
def test_map_input_not_array(data: JSON, shown: str) -> None:
    result = run(
        machine(
            {
                "First": {"Type": "Pass", "Output": "{% $states.input.v %}", "Next": "S"},
                "S": {"Type": "Map", "ItemProcessor": item_pass(), "End": True},
            }
        ),
        {"v": data},
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == prefix("S", 4) + f"Map state input must be an array but was: {shown}"
    assert types(result)[-4:] == [
        "MapStateEntered",
        "EvaluationFailed",
        "MapStateFailed",
        "ExecutionFailed",
    ]


def test_map_items_expression_not_array() -> None:
    result = one(
        {"Type": "Map", "Items": "{% $states.input.a %}", "ItemProcessor": item_pass()},
        {"a": {"x": 1}},
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix()
        + "The JSONata expression '$states.input.a' specified for the field 'Items' returned "
        "an unexpected result type. Expected 'array', but was 'object' for value: {\"x\":1}"
    )


def test_map_item_selector_context_and_output() -> None:
    result = one(
        {
            "Type": "Map",
            "Items": "{% $states.input.xs %}",
            "ItemSelector": {
                "index": "{% $states.context.Map.Item.Index %}",
                "value": "{% $states.context.Map.Item.Value %}",
                "n": "{% $states.input.n %}",
            },
            "ItemProcessor": item_pass(),
            "Output": {"all": "{% $states.result %}", "count": "{% $count($states.result) %}"},
        },
        {"xs": ["a", "b"], "n": 1},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {
        "all": [{"index": 0, "value": "a", "n": 1}, {"index": 1, "value": "b", "n": 1}],
        "count": 2,
    }


def test_map_max_concurrency_expression() -> None:
    result = one(
        {
            "Type": "Map",
            "MaxConcurrency": "{% $states.input.mc %}",
            "Items": [1, 2, 3],
            "ItemProcessor": item_pass(),
        },
        {"mc": 1},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == [1, 2, 3]
    # One at a time: each iteration finishes before the next starts.
    kinds = [t for t in types(result) if t.startswith("MapIteration")]
    assert kinds == ["MapIterationStarted", "MapIterationSucceeded"] * 3


def test_map_max_concurrency_expression_wrong_type() -> None:
    result = one(
        {"Type": "Map", "MaxConcurrency": "{% 'x' %}", "Items": [1], "ItemProcessor": item_pass()},
        {},
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix()
        + "The JSONata expression ''x'' specified for the field 'MaxConcurrency' returned an "
        "unexpected result type. Expected 'integer', but was 'string' for value: \"x\""
    )
    assert types(result) == [
        "ExecutionStarted",
        "MapStateEntered",
        "MapStateStarted",
        "EvaluationFailed",
        "MapStateFailed",
        "ExecutionFailed",
    ]


FAILING_ITEMS = {
    "StartAt": "I",
    "States": {
        "I": {
            "Type": "Choice",
            "Choices": [{"Condition": "{% $states.input = 0 %}", "Next": "F"}],
            "Default": "OK",
        },
        "F": {"Type": "Fail", "Error": "Bad"},
        "OK": {"Type": "Pass", "End": True},
    },
}


@pytest.mark.parametrize(
    ("tolerated", "status", "error"),
    [(2, "SUCCEEDED", None), (1, "FAILED", "States.ExceedToleratedFailureThreshold")],
)
def test_map_tolerated_failure_count_expression(
    tolerated: int, status: str, error: str | None
) -> None:
    result = one(
        {
            "Type": "Map",
            "Items": [0, 1, 0],
            "MaxConcurrency": 1,
            "ToleratedFailureCount": "{% $states.input.t %}",
            "ItemProcessor": FAILING_ITEMS,
        },
        {"t": tolerated},
    )
    assert (result.status, result.error) == (status, error)


# ---------------------------------------------------------------------------- Parallel


def test_parallel_arguments_to_branches_and_output() -> None:
    result = one(
        {
            "Type": "Parallel",
            "Arguments": {"x": "{% $states.input.a %}"},
            "Branches": [
                {
                    "StartAt": "A",
                    "States": {
                        "A": {"Type": "Pass", "Output": "{% $states.input.x + 1 %}", "End": True}
                    },
                },
                {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}},
            ],
            "Output": {"r": "{% $states.result %}", "in": "{% $states.input %}"},
        },
        {"a": 1},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"r": [2, {"x": 1}], "in": {"a": 1}}


# ---------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$partition([1,2,3,4,5], 2)", [[1, 2], [3, 4], [5]]),
        ("$partition([1,2], 5)", [[1, 2]]),
        ("$partition([], 2)", []),
        ("$range(0, 4)", [0, 1, 2, 3, 4]),
        ("$range(0, 9, 3)", [0, 3, 6, 9]),
        ("$range(0, 10, 3)", [0, 3, 6, 9]),
        ("$range(1, 9, 2)", [1, 3, 5, 7, 9]),
        ("$range(5, 1, -2)", [5, 3, 1]),
        ("$range(1, 9, 9)", 1),  # a single element collapses to that value (as AWS returns)
        ("$range(3, 3)", 3),
        ("$range(0, 4, 0)", []),
        ("$parse('-0')", 0),
        ("$parse('1.1')", 1.1),
        ("$parse('true')", True),
        ("$parse('\"HelloWorld\"')", "HelloWorld"),
        ("$parse('[1, 2, \"x\", null]')", [1, 2, "x", None]),
        ('$parse(\'{"Arg1": 1, "Arg2": []}\')', {"Arg1": 1, "Arg2": []}),
        ("$random(7) = $random(7)", True),
        ("$random(7) >= 0 and $random(7) < 1", True),
    ],
)
def test_functions(expression: str, expected: JSON) -> None:
    result = one({"Type": "Pass", "Output": "{% " + expression + " %}"}, {})
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == expected
    assert type(result.output) is type(expected)


def test_range_from_input() -> None:
    result = one(
        {
            "Type": "Pass",
            "Output": "{% $range($states.input.a, $states.input.b, $states.input.c) %}",
        },
        {"a": 1, "b": 9, "c": 9},
    )
    assert result.output == 1


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512"])
def test_hash(algorithm: str) -> None:
    result = one(
        {"Type": "Pass", "Output": "{% $hash($states.input.s, '" + algorithm + "') %}"},
        {"s": "input data"},
    )
    python_name = algorithm.replace("-", "").lower()
    assert result.status == "SUCCEEDED"
    assert result.output == hashlib.new(python_name, b"input data").hexdigest()


@pytest.mark.parametrize(
    "expression",
    [
        "$hash('abc', 'SHA-3')",
        "$hash(1, 'MD5')",
        "$partition('x', 2)",
        "$partition([1], 0)",
        "$parse('nope')",
        "$parse(1)",
    ],
)
def test_function_bad_arguments(expression: str) -> None:
    result = one({"Type": "Pass", "Output": "{% " + expression + " %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause is not None
    assert result.cause.startswith(
        prefix()
        + f"The JSONata expression '{expression}' specified for the field 'Output' threw an "
        "error during evaluation. "
    )


def test_random_seeded_is_deterministic_across_runs() -> None:
    state = {"Type": "Pass", "Output": {"a": "{% $random(42) %}", "b": "{% $random(43) %}"}}
    first, second = one(state, {}), one(state, {})
    assert first.output == second.output
    assert first.output["a"] != first.output["b"]
    assert all(0 <= value < 1 for value in first.output.values())


def test_random_unseeded_and_uuid_replay_with_execution_seed() -> None:
    state = {"Type": "Pass", "Output": {"r": "{% $random() %}", "u": "{% $uuid() %}"}}
    assert one(state, {}, seed=3).output == one(state, {}, seed=3).output
    assert one(state, {}, seed=3).output != one(state, {}, seed=4).output


def test_uuid_format() -> None:
    result = one({"Type": "Pass", "Output": "{% $uuid() %}"}, {})
    assert result.status == "SUCCEEDED"
    assert UUID4.fullmatch(result.output)


def test_uuid_differs_between_states() -> None:
    result = run(
        machine(
            {
                "A": {"Type": "Pass", "Assign": {"first": "{% $uuid() %}"}, "Next": "B"},
                "B": {
                    "Type": "Pass",
                    "Output": {"first": "{% $first %}", "second": "{% $uuid() %}"},
                    "End": True,
                },
            }
        ),
        {},
    )
    assert result.status == "SUCCEEDED"
    assert result.output["first"] != result.output["second"]


@pytest.mark.parametrize("function", ["$uuid()", "$random()"])
def test_repeated_calls_in_one_state_differ(function: str) -> None:
    result = one(
        {
            "Type": "Pass",
            "Output": {
                "list": "{% [" + function + ", " + function + "] %}",
                "other": "{% " + function + " %}",
            },
        },
        {},
    )
    assert result.status == "SUCCEEDED"
    values = [*result.output["list"], result.output["other"]]
    assert len(set(values)) == 3


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("state", "location", "expression"),
    [
        ({"Type": "Pass", "Output": "{% $doesNotExist %}"}, "Output", "$doesNotExist"),
        (
            {"Type": "Pass", "Output": {"a": {"b": "{% $states.input.x %}"}}},
            "Output/a/b",
            "$states.input.x",
        ),
        (
            {"Type": "Pass", "Output": {"l": [1, "{% $states.input.x %}"]}},
            "Output/l/1",
            "$states.input.x",
        ),
        ({"Type": "Pass", "Assign": {"v": "{% $states.input.x %}"}}, "Assign/v", "$states.input.x"),
        (
            {"Type": "Task", "Resource": LAMBDA, "Arguments": {"p": "{% $nope %}"}},
            "Arguments/p",
            "$nope",
        ),
    ],
    ids=["output", "output-nested", "output-array", "assign", "arguments"],
)
def test_undefined_result(state: dict[str, JSON], location: str, expression: str) -> None:
    result = one(state, {}, echo)
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix() + f"The JSONata expression '{expression}' specified for the field '{location}' "
        "returned nothing (undefined)."
    )


def test_thrown_error_t1006() -> None:
    result = one(
        {"Type": "Pass", "Output": {"FunctionResult": "{% $randomSeeded($states.input.x) %}"}},
        {"x": 1},
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == (
        prefix()
        + "The JSONata expression '$randomSeeded($states.input.x)' specified for the field "
        "'Output/FunctionResult' threw an error during evaluation. T1006: Attempted to invoke a non-function"
    )


def test_syntax_error_is_query_evaluation_error() -> None:
    result = one({"Type": "Pass", "Output": "{% $states.input.( %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert "threw an error during evaluation." in (result.cause or "")


def test_python_level_error_inside_jsonata() -> None:
    result = one({"Type": "Pass", "Output": "{% 1/0 %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause is not None
    assert result.cause.startswith(
        prefix()
        + "The JSONata expression '1/0' specified for the field 'Output' threw an error during evaluation."
    )
    assert "Traceback" not in result.cause


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # jsonata-python runs tail calls in a loop: without a budget these never return.
        ("($f := function($x){ $f($x) }; $f(1))", "budget of 100000 evaluation steps"),
        ("($f := function($x){ $x > 1e12 ? $x : $f($x + 1) }; $f(1))", "evaluation steps"),
        ("$count([1..300].([1..300].([1..300])))", "evaluation steps"),
        # Not a tail call: the depth grows with every call.
        ("($f := function($x){ $x = 0 ? 0 : 1 + $f($x - 1) }; $f(100000))", "deeper than 150"),
    ],
    ids=["endless-tail-recursion", "counting-to-1e12", "cube-of-ranges", "deep-recursion"],
)
def test_runaway_expression_fails_the_state_within_its_budget(
    expression: str, message: str
) -> None:
    began = time.monotonic()
    result = one({"Type": "Pass", "Output": "{% " + expression + " %}"}, {})
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause is not None and message in result.cause, result.cause
    assert result.cause.startswith(
        prefix()
        + f"The JSONata expression '{expression}' specified for the field 'Output' threw an "
        "error during evaluation. "
    )
    # The step budget is a few seconds of work on a slow, shared machine, never a hang.
    assert time.monotonic() - began < 30


@pytest.mark.parametrize(
    ("expression", "output", "cause"),
    [
        ("$pad('x', 5)", "x    ", None),
        ("'ab' ~> $pad(-4, '#')", "##ab", None),
        (
            "$pad('x', 1e9)",
            None,
            "$pad: the width must be at most 1048576 characters, not 1000000000",
        ),
        ("$pad(1, 5)", None, "T0410: Argument 1 of Object pad does not match Object signature"),
    ],
    ids=["pad", "pad-left", "too-wide", "signature-kept"],
)
def test_pad_is_bounded_by_the_payload_limit(
    expression: str, output: JSON, cause: str | None
) -> None:
    result = one({"Type": "Pass", "Output": "{% " + expression + " %}"}, {})
    if cause is None:
        assert result.status == "SUCCEEDED", result.cause
        assert result.output == output
    else:
        assert result.error == QEE
        assert (result.cause or "").endswith("threw an error during evaluation. " + cause)


def test_budget_is_per_evaluation_and_leaves_ordinary_work_alone() -> None:
    items = list(range(1000))
    result = one(
        {
            "Type": "Pass",
            "Output": {
                "sum": "{% $sum($map($states.input.items, function($v){ $v * 2 })) %}",
                "again": "{% $count($filter($states.input.items, function($v){ $v % 2 = 0 })) %}",
            },
        },
        {"items": items},
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {"sum": sum(items) * 2, "again": 500}


def test_evaluation_failed_event_precedes_execution_failed() -> None:
    result = run(
        machine(
            {
                "A": {"Type": "Pass", "Next": "B"},
                "B": {"Type": "Pass", "Output": {"x": "{% $missing %}"}, "End": True},
            }
        ),
        {},
    )
    assert types(result) == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "PassStateEntered",
        "EvaluationFailed",
        "ExecutionFailed",
    ]
    cause = prefix("B", 4) + (
        "The JSONata expression '$missing' specified for the field 'Output/x' returned nothing (undefined)."
    )
    failed = result.events[-2]
    assert dict(failed.details) == {
        "state": "B",
        "location": "Output/x",
        "error": QEE,
        "cause": cause,
    }
    assert dict(result.events[-1].details) == {"error": QEE, "cause": cause}
    assert failed.to_aws()["evaluationFailedEventDetails"]["location"] == "Output/x"


def test_query_evaluation_error_caught_by_states_all() -> None:
    result = run(
        machine(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Arguments": "{% $nope %}",
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Output": {
                                "e": "{% $states.errorOutput.Error %}",
                                "c": "{% $states.errorOutput.Cause %}",
                            },
                            "Next": "H",
                        }
                    ],
                    "End": True,
                },
                "H": {"Type": "Pass", "End": True},
            }
        ),
        {},
        echo,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {
        "e": QEE,
        "c": prefix("T")
        + "The JSONata expression '$nope' specified for the field 'Arguments' returned nothing (undefined).",
    }
    assert types(result) == [
        "ExecutionStarted",
        "TaskStateEntered",
        "EvaluationFailed",
        "TaskStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]


def test_query_evaluation_error_caught_by_name_on_map() -> None:
    result = run(
        machine(
            {
                "M": {
                    "Type": "Map",
                    "Items": "{% $states.input %}",
                    "ItemProcessor": item_pass(),
                    "Catch": [{"ErrorEquals": [QEE], "Next": "H"}],
                    "End": True,
                },
                "H": {"Type": "Pass", "Output": "{% $states.input.Error %}", "End": True},
            }
        ),
        {"not": "an array"},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == QEE


# ---------------------------------------------------------------------------- mixed languages


def test_jsonpath_machine_with_jsonata_state() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Parameters": {"x.$": "$.a"}, "Next": "B"},
            "B": {
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Output": {"y": "{% $states.input.x * 2 %}"},
                "Assign": {"z": "{% $states.input.x %}"},
                "Next": "C",
            },
            "C": {"Type": "Pass", "Parameters": {"y.$": "$.y", "z.$": "$z"}, "End": True},
        },
    }
    result = run(definition, {"a": 3})
    assert result.status == "SUCCEEDED"
    assert result.output == {"y": 6, "z": 3}


def test_jsonata_machine_with_jsonpath_state() -> None:
    definition = machine(
        {
            "A": {"Type": "Pass", "Output": {"x": 5}, "Assign": {"v": "{% 'var' %}"}, "Next": "B"},
            "B": {
                "Type": "Pass",
                "QueryLanguage": "JSONPath",
                "Parameters": {"x2.$": "$.x", "v.$": "$v"},
                "ResultPath": "$.r",
                "Next": "C",
            },
            "C": {"Type": "Pass", "Output": "{% $states.input %}", "End": True},
        }
    )
    result = run(definition, {})
    assert result.status == "SUCCEEDED"
    assert result.output == {"x": 5, "r": {"x2": 5, "v": "var"}}


def test_jsonpath_task_caught_into_jsonata_state() -> None:
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": LAMBDA,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "H"}],
                "End": True,
            },
            "H": {
                "Type": "Pass",
                "QueryLanguage": "JSONata",
                "Output": {
                    "kept": "{% $states.input.a %}",
                    "err": "{% $states.input.error.Error %}",
                },
                "End": True,
            },
        },
    }
    result = run(definition, {"a": 1}, boom)
    assert result.status == "SUCCEEDED"
    assert result.output == {"kept": 1, "err": "Boom"}
