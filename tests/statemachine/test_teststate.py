"""statemachine.teststate.test_state: one state on its own, like AWS's TestState API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from statemachine.errors import DefinitionError
from statemachine.teststate import test_state as run_test_state

JSON = Any
LAMBDA = "arn:aws:states:::lambda:invoke"


def runtime_prefix(state: str = "State") -> str:
    return f"An error occurred while executing the state '{state}' (entered at the event id #2). "


# ---------------------------------------------------------------------------- Pass


def test_pass_parameters_result_path_output_path() -> None:
    state = {
        "Type": "Pass",
        "InputPath": "$.a",
        "Parameters": {"p.$": "$.b", "lit": 1},
        "ResultPath": "$.r",
        "OutputPath": "$.r",
        "Next": "X",
    }
    result = run_test_state(state, None, {"a": {"b": 1}})
    assert result.status == "SUCCEEDED"
    assert result.output == {"p": 1, "lit": 1}
    assert result.next_state == "X"
    assert (result.error, result.cause) == (None, None)
    assert result.inspection["input"] == {"a": {"b": 1}}
    assert result.inspection["afterInputPath"] == {"b": 1}
    assert result.inspection["afterParameters"] == {"p": 1, "lit": 1}
    # ResultPath places the result into the raw state input (not the InputPath selection).
    assert result.inspection["afterResultPath"] == {"a": {"b": 1}, "r": {"p": 1, "lit": 1}}


def test_pass_result_and_result_path() -> None:
    result = run_test_state(
        {"Type": "Pass", "Result": {"k": 1}, "ResultPath": "$.r", "Next": "X"}, None, {"a": 1}
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": 1, "r": {"k": 1}}
    assert result.inspection["afterInputPath"] == {"a": 1}
    assert result.inspection["afterResultPath"] == {"a": 1, "r": {"k": 1}}
    assert result.to_json() == {
        "status": "SUCCEEDED",
        "output": {"a": 1, "r": {"k": 1}},
        "nextState": "X",
        "inspectionData": result.inspection,
    }


def test_pass_end_has_no_next_state() -> None:
    result = run_test_state({"Type": "Pass", "End": True}, None, {"a": 1})
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": 1}
    assert result.next_state is None
    assert "nextState" not in result.to_json()


# ---------------------------------------------------------------------------- Task

TASK = {
    "Type": "Task",
    "Resource": LAMBDA,
    "Parameters": {"x.$": "$.a"},
    "ResultSelector": {"p.$": "$.Payload"},
    "ResultPath": "$.res",
    "Retry": [
        {
            "ErrorEquals": ["Retryable"],
            "IntervalSeconds": 2,
            "BackoffRate": 3,
            "MaxAttempts": 3,
            "MaxDelaySeconds": 10,
        }
    ],
    "Catch": [
        {"ErrorEquals": ["Other"], "ResultPath": "$.err", "Next": "Handler"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.any", "Next": "Fallback"},
    ],
    "Next": "After",
}


def test_task_with_mocked_result() -> None:
    result = run_test_state(TASK, None, {"a": 1}, result={"Payload": {"v": 2}})
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": 1, "res": {"p": {"v": 2}}}
    assert result.next_state == "After"
    inspection = result.inspection
    assert inspection["afterInputPath"] == {"a": 1}
    assert inspection["afterParameters"] == {"x": 1}
    assert inspection["result"] == {"Payload": {"v": 2}}
    assert inspection["afterResultSelector"] == {"p": {"v": 2}}
    assert inspection["afterResultPath"] == {"a": 1, "res": {"p": {"v": 2}}}


@pytest.mark.parametrize(
    ("retry_count", "interval"),
    [(0, 2), (1, 6), (2, 10)],  # 2 * 3**n, capped by MaxDelaySeconds 10
)
def test_task_error_retriable(retry_count: int, interval: float) -> None:
    result = run_test_state(
        TASK, None, {"a": 1}, error="Retryable", cause="c", retry_count=retry_count
    )
    assert result.status == "RETRIABLE"
    assert (result.error, result.cause) == ("Retryable", "c")
    assert result.inspection["errorDetails"] == {
        "retryIndex": 0,
        "retryBackoffIntervalSeconds": interval,
    }
    assert result.next_state is None
    assert "output" not in result.to_json()


def test_task_retry_exhausted_falls_to_catch() -> None:
    result = run_test_state(TASK, None, {"a": 1}, error="Retryable", cause="c", retry_count=3)
    assert result.status == "CAUGHT_ERROR"
    assert result.inspection["errorDetails"] == {"catchIndex": 1}
    assert result.next_state == "Fallback"
    assert result.output == {"a": 1, "any": {"Error": "Retryable", "Cause": "c"}}


def test_retry_backoff_interval_is_integer() -> None:
    result = run_test_state(TASK, None, {"a": 1}, error="Retryable", retry_count=0)
    text = json.dumps(result.to_json())
    assert '"retryBackoffIntervalSeconds": 2}' in text


def test_task_error_caught() -> None:
    result = run_test_state(TASK, None, {"a": 1}, error="Other", cause="oops")
    assert result.status == "CAUGHT_ERROR"
    assert result.next_state == "Handler"
    assert result.output == {"a": 1, "err": {"Error": "Other", "Cause": "oops"}}
    assert (result.error, result.cause) == ("Other", "oops")
    assert result.inspection["errorDetails"] == {"catchIndex": 0}
    assert result.to_json()["output"] == result.output


def test_task_error_failed() -> None:
    state = {**TASK, "Catch": [{"ErrorEquals": ["Other"], "Next": "Handler"}]}
    result = run_test_state(state, None, {"a": 1}, error="Unknown", cause="oops")
    assert result.status == "FAILED"
    assert (result.error, result.cause) == ("Unknown", "oops")
    assert result.next_state is None
    assert "output" not in result.to_json()


def test_task_without_mock_fails_clearly() -> None:
    result = run_test_state(TASK, None, {"a": 1})
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause is not None
    assert "mocked result or error" in result.cause
    assert "'State'" in result.cause


def test_jsonata_task_arguments_and_output() -> None:
    state = {
        "Type": "Task",
        "QueryLanguage": "JSONata",
        "Resource": LAMBDA,
        "Arguments": {"n": "{% $states.input.n + $base %}"},
        "Output": {"r": "{% $states.result %}"},
        "Assign": {"last": "{% $states.result %}"},
        "Next": "N",
    }
    result = run_test_state(state, None, {"n": 1}, result=42, variables={"base": 10})
    assert result.status == "SUCCEEDED"
    assert result.output == {"r": 42}
    assert result.inspection["afterArguments"] == {"n": 11}
    assert result.inspection["result"] == 42
    assert result.inspection["variables"] == {"base": 10, "last": 42}


# ---------------------------------------------------------------------------- other states


@pytest.mark.parametrize(("n", "nxt"), [(5, "Big"), (0, "Small")])
def test_choice_next_state(n: int, nxt: str) -> None:
    state = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}],
        "Default": "Small",
    }
    result = run_test_state(state, None, {"n": n})
    assert result.status == "SUCCEEDED"
    assert result.next_state == nxt
    assert result.output == {"n": n}


def test_choice_no_match() -> None:
    state = {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericEquals": 1, "Next": "One"}]}
    result = run_test_state(state, None, {"n": 2})
    assert result.status == "FAILED"
    assert result.error == "States.NoChoiceMatched"


def test_wait_does_not_wait() -> None:
    # A one-year wait answers at once (the test timeout would catch a real wait).
    result = run_test_state(
        {"Type": "Wait", "Seconds": 31_536_000, "OutputPath": "$.k", "Next": "N"}, None, {"k": 1}
    )
    assert result.status == "SUCCEEDED"
    assert result.output == 1
    assert result.next_state == "N"


def test_wait_timestamp_path() -> None:
    result = run_test_state(
        {"Type": "Wait", "TimestampPath": "$.t", "Next": "N"}, None, {"t": "2030-01-01T00:00:00Z"}
    )
    assert result.status == "SUCCEEDED"
    assert result.next_state == "N"
    assert result.output == {"t": "2030-01-01T00:00:00Z"}


def test_fail_state() -> None:
    result = run_test_state({"Type": "Fail", "Error": "E", "Cause": "C"}, None, {"n": 0})
    assert result.status == "FAILED"
    assert (result.error, result.cause) == ("E", "C")
    assert result.next_state is None
    assert result.to_json()["error"] == "E"


def test_fail_state_paths() -> None:
    result = run_test_state(
        {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}, None, {"e": "Err", "c": "why"}
    )
    assert (result.status, result.error, result.cause) == ("FAILED", "Err", "why")


def test_succeed_state() -> None:
    result = run_test_state({"Type": "Succeed", "OutputPath": "$.a"}, None, {"a": [1]})
    assert (result.status, result.output, result.next_state) == ("SUCCEEDED", [1], None)


def test_jsonata_state_with_variables() -> None:
    state = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Output": {"s": "{% $a + $states.input.n %}"},
        "Assign": {"a": "{% $a * 2 %}", "b": "new"},
        "Next": "N",
    }
    result = run_test_state(state, None, {"n": 1}, variables={"a": 5, "c": 1})
    assert result.status == "SUCCEEDED"
    assert result.output == {"s": 6}
    assert result.inspection["variables"] == {"a": 10, "b": "new", "c": 1}


def test_jsonata_error_gives_location() -> None:
    state = {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Output": {"v": "{% $nope %}"},
        "Next": "N",
    }
    result = run_test_state(state, None, {})
    assert result.status == "FAILED"
    assert result.error == "States.QueryEvaluationError"
    assert result.cause == runtime_prefix() + (
        "The JSONata expression '$nope' specified for the field 'Output/v' returned nothing (undefined)."
    )
    assert result.inspection["errorDetails"] == {"location": "Output/v"}


def test_jsonata_error_in_task_is_caught() -> None:
    state = {
        "Type": "Task",
        "QueryLanguage": "JSONata",
        "Resource": LAMBDA,
        "Output": "{% $states.result.missing %}",
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H"}],
        "Next": "N",
    }
    result = run_test_state(state, None, {}, result={"x": 1})
    assert result.status == "CAUGHT_ERROR"
    assert result.next_state == "H"
    assert result.error == "States.QueryEvaluationError"
    assert result.output == {"Error": "States.QueryEvaluationError", "Cause": result.cause}


# ---------------------------------------------------------------------------- definitions


MACHINE = {
    "StartAt": "A",
    "States": {
        "A": {"Type": "Pass", "Result": 1, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"v.$": "$.v"}, "End": True},
        "P": {
            "Type": "Parallel",
            "Branches": [
                {
                    "StartAt": "Inner",
                    "States": {"Inner": {"Type": "Pass", "Result": "in", "End": True}},
                }
            ],
            "End": True,
        },
    },
}


def test_whole_machine_default_start_at() -> None:
    result = run_test_state(MACHINE, None, {"v": 3})
    assert (result.status, result.output, result.next_state) == ("SUCCEEDED", 1, "B")


def test_whole_machine_named_state() -> None:
    result = run_test_state(MACHINE, "B", {"v": 3})
    assert (result.status, result.output, result.next_state) == ("SUCCEEDED", {"v": 3}, None)


def test_whole_machine_nested_state() -> None:
    result = run_test_state(MACHINE, "Inner", {})
    assert (result.status, result.output) == ("SUCCEEDED", "in")


def test_single_state_with_name() -> None:
    result = run_test_state(
        {"Type": "Pass", "Parameters": {"x.$": "$$.State.Name"}, "Next": "N"}, "MyState", {}
    )
    assert result.output == {"x": "MyState"}


def test_unknown_state_name() -> None:
    with pytest.raises(DefinitionError, match="Nope"):
        run_test_state(MACHINE, "Nope", {})


def test_invalid_definition() -> None:
    with pytest.raises(DefinitionError):
        run_test_state({"StartAt": "A", "States": {"A": {"Type": "Nonsense"}}}, None, {})


# ---------------------------------------------------------------------------- runtime errors


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (
            {"Type": "Pass", "InputPath": "$.missing", "Next": "X"},
            "Invalid path '$.missing' : No results for path: $['missing']",
        ),
        (
            {"Type": "Pass", "Parameters": {"x.$": "$.missing"}, "Next": "X"},
            "The JSONPath '$.missing' specified for the field 'x.$' could not be found in the input '{\"a\":1}'",
        ),
        (
            {"Type": "Pass", "OutputPath": "$.missing", "Next": "X"},
            "Invalid path '$.missing' : No results for path: $['missing']",
        ),
    ],
    ids=["input-path", "parameters", "output-path"],
)
def test_runtime_path_errors(state: dict[str, JSON], detail: str) -> None:
    result = run_test_state(state, None, {"a": 1})
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause == runtime_prefix() + detail


def test_runtime_error_named_state_in_machine() -> None:
    definition = {
        "StartAt": "A",
        "States": {"A": {"Type": "Pass", "InputPath": "$.nope", "End": True}},
    }
    result = run_test_state(definition, "A", {})
    assert result.status == "FAILED"
    assert result.cause is not None
    assert result.cause.startswith(runtime_prefix("A"))


def test_result_path_match_failure() -> None:
    result = run_test_state(
        {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b", "Next": "X"}, None, {"a": 1}
    )
    assert result.status == "FAILED"
    assert result.error == "States.ResultPathMatchFailure"
