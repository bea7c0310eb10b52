"""Exact input/output processing in JSONPath mode, run end to end with run_local."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statemachine import LocalResult, TaskError, TaskRequest, run_local

JSON = Any
START = datetime(2024, 1, 1, tzinfo=UTC)
RUNTIME_PREFIX = "An error occurred while executing the state 'S' (entered at the event id #2). "
LAMBDA = "arn:aws:states:::lambda:invoke"


def run(definition: dict[str, JSON], data: JSON, tasks: Any = None) -> LocalResult:
    return run_local(definition, data, tasks=tasks, clock=lambda: START)


def one(state: dict[str, JSON], data: JSON, tasks: Any = None) -> LocalResult:
    body = dict(state)
    if body["Type"] not in ("Succeed", "Fail", "Choice"):
        body.setdefault("End", True)
    return run({"StartAt": "S", "States": {"S": body}}, data, tasks)


def echo(request: TaskRequest) -> JSON:
    return {"got": request.parameters}


# (state, input, expected output)
OUTPUTS: list[tuple[str, dict[str, JSON], JSON, JSON]] = [
    ("input-path", {"Type": "Pass", "InputPath": "$.a"}, {"a": {"b": 1}}, {"b": 1}),
    ("input-path-root", {"Type": "Pass", "InputPath": "$"}, {"a": 1}, {"a": 1}),
    ("input-path-null", {"Type": "Pass", "InputPath": None}, {"a": 1}, {}),
    (
        "parameters-static",
        {"Type": "Pass", "Parameters": {"k": [1, "x"]}},
        {"a": 1},
        {"k": [1, "x"]},
    ),
    (
        "parameters-path",
        {"Type": "Pass", "Parameters": {"v.$": "$.a"}},
        {"a": [1, 2]},
        {"v": [1, 2]},
    ),
    (
        "parameters-nested",
        {"Type": "Pass", "Parameters": {"o": {"p.$": "$.a", "q": 2}, "l": [{"r.$": "$.a"}, 3]}},
        {"a": 1},
        {"o": {"p": 1, "q": 2}, "l": [{"r": 1}, 3]},
    ),
    (
        "parameters-context",
        {
            "Type": "Pass",
            "Parameters": {
                "n.$": "$$.State.Name",
                "e.$": "$$.Execution.Name",
                "i.$": "$$.Execution.Input",
            },
        },
        {"a": 1},
        {"n": "S", "e": "local", "i": {"a": 1}},
    ),
    (
        "parameters-intrinsic",
        {
            "Type": "Pass",
            "Parameters": {"f.$": "States.Format('{}-{}', $.a, $.b)", "l.$": "States.Array($.a)"},
        },
        {"a": 1, "b": "x"},
        {"f": "1-x", "l": [1]},
    ),
    (
        "input-path-then-parameters",
        {"Type": "Pass", "InputPath": "$.a", "Parameters": {"v.$": "$.b"}},
        {"a": {"b": 7}},
        {"v": 7},
    ),
    ("result", {"Type": "Pass", "Result": {"r": 1}}, {"a": 1}, {"r": 1}),
    ("result-path-root", {"Type": "Pass", "Result": 5, "ResultPath": "$"}, {"a": 1}, 5),
    (
        "result-path-field",
        {"Type": "Pass", "Result": 5, "ResultPath": "$.x"},
        {"a": 1},
        {"a": 1, "x": 5},
    ),
    (
        "result-path-creates",
        {"Type": "Pass", "Result": 5, "ResultPath": "$.a.b"},
        {"c": 1},
        {"c": 1, "a": {"b": 5}},
    ),
    (
        "result-path-existing",
        {"Type": "Pass", "Result": 5, "ResultPath": "$.a.b"},
        {"a": {"c": 1}},
        {"a": {"c": 1, "b": 5}},
    ),
    (
        "result-path-replace",
        {"Type": "Pass", "Result": 5, "ResultPath": "$.a"},
        {"a": {"c": 1}},
        {"a": 5},
    ),
    ("result-path-null", {"Type": "Pass", "Result": 5, "ResultPath": None}, {"a": 1}, {"a": 1}),
    ("output-path", {"Type": "Pass", "OutputPath": "$.a"}, {"a": {"b": 1}}, {"b": 1}),
    ("output-path-null", {"Type": "Pass", "OutputPath": None}, {"a": 1}, {}),
    (
        # ResultPath writes into the raw input, not the InputPath-filtered one.
        "result-path-uses-raw-input",
        {"Type": "Pass", "InputPath": "$.a", "Result": 5, "ResultPath": "$.r"},
        {"a": {"b": 1}, "z": 0},
        {"a": {"b": 1}, "z": 0, "r": 5},
    ),
    (
        "full-order",
        {
            "Type": "Task",
            "Resource": LAMBDA,
            "InputPath": "$.in",
            "Parameters": {"p.$": "$.v"},
            "ResultSelector": {"sel.$": "$.got.p", "k": 1},
            "ResultPath": "$.res",
            "OutputPath": "$.res",
        },
        {"in": {"v": 3}, "other": 0},
        {"sel": 3, "k": 1},
    ),
    (
        "result-selector-context",
        {
            "Type": "Task",
            "Resource": LAMBDA,
            "ResultSelector": {"g.$": "$.got", "n.$": "$$.State.Name"},
        },
        {"a": 1},
        {"g": {"a": 1}, "n": "S"},
    ),
    (
        "succeed-paths",
        {"Type": "Succeed", "InputPath": "$.a", "OutputPath": "$.b"},
        {"a": {"b": 2}},
        2,
    ),
]


@pytest.mark.parametrize(
    ("state", "data", "expected"), [c[1:] for c in OUTPUTS], ids=[c[0] for c in OUTPUTS]
)
def test_io_field_outputs(state: dict[str, JSON], data: JSON, expected: JSON) -> None:
    result = one(state, data, echo)
    assert (result.status, result.error) == ("SUCCEEDED", None)
    assert result.output == expected


# (state, input, error, distinctive cause)
FAILURES: list[tuple[str, dict[str, JSON], JSON, str, str]] = [
    (
        "input-path-missing",
        {"Type": "Pass", "InputPath": "$.x"},
        {"a": 1},
        "States.Runtime",
        RUNTIME_PREFIX + "Invalid path '$.x' : No results for path: $['x']",
    ),
    (
        "input-path-deeper-missing",
        {"Type": "Pass", "InputPath": "$.a.b"},
        {"x": 1},
        "States.Runtime",
        RUNTIME_PREFIX + "Invalid path '$.a.b' : Missing property in path $['a']",
    ),
    (
        "parameters-path-missing",
        {"Type": "Pass", "Parameters": {"v.$": "$.x"}},
        {"a": 1},
        "States.Runtime",
        RUNTIME_PREFIX
        + "The JSONPath '$.x' specified for the field 'v.$' could not be found in the input '{\"a\":1}'",
    ),
    (
        "output-path-missing",
        {"Type": "Pass", "OutputPath": "$.x"},
        {"a": 1},
        "States.Runtime",
        RUNTIME_PREFIX + "Invalid path '$.x' : No results for path: $['x']",
    ),
    (
        "result-path-onto-number",
        {"Type": "Pass", "Result": 1, "ResultPath": "$.x"},
        5,
        "States.ResultPathMatchFailure",
        'Unable to apply ResultPath "$.x" to input "5".',
    ),
    (
        "result-path-through-number",
        {"Type": "Pass", "Result": 1, "ResultPath": "$.a.b"},
        {"a": 3},
        "States.ResultPathMatchFailure",
        'Unable to apply ResultPath "$.a.b" to input "{"a":3}".',
    ),
    (
        "wait-seconds-path-not-number",
        {"Type": "Wait", "SecondsPath": "$.s"},
        {"s": "x"},
        "States.Runtime",
        RUNTIME_PREFIX + "The SecondsPath parameter cannot be parsed as a long value: $.s == x",
    ),
    (
        "wait-seconds-path-negative",
        {"Type": "Wait", "SecondsPath": "$.s"},
        {"s": -1},
        "States.Runtime",
        RUNTIME_PREFIX + "The SecondsPath parameter references a negative value: $.s == -1",
    ),
    (
        "wait-seconds-path-missing",
        {"Type": "Wait", "SecondsPath": "$.q"},
        {"s": 1},
        "States.Runtime",
        RUNTIME_PREFIX + "Invalid path '$.q' : No results for path: $['q']",
    ),
]


@pytest.mark.parametrize(
    ("state", "data", "error", "cause"), [c[1:] for c in FAILURES], ids=[c[0] for c in FAILURES]
)
def test_io_failures(state: dict[str, JSON], data: JSON, error: str, cause: str) -> None:
    result = one(state, data, echo)
    assert result.status == "FAILED"
    assert result.error == error
    assert result.cause is not None and result.cause.endswith(cause)
    if error == "States.Runtime":
        assert result.cause.startswith(RUNTIME_PREFIX)


def scheduled_times(result: LocalResult) -> list[float]:
    return [
        (e.timestamp - START).total_seconds() for e in result.events if e.type in ("TaskScheduled",)
    ]


def failing(times: int, error: str = "Custom.Error") -> Any:
    calls = {"n": 0}

    def provide(request: TaskRequest) -> JSON:
        calls["n"] += 1
        if calls["n"] <= times:
            raise TaskError(error, f"attempt {request.attempt}")
        return {"ok": request.attempt}

    return provide


def task(**fields: JSON) -> dict[str, JSON]:
    return {"Type": "Task", "Resource": LAMBDA, **fields}


def test_retry_backoff_delays_on_the_virtual_clock() -> None:
    retry = [
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 3}
    ]
    result = one(task(Retry=retry), {}, failing(3))
    assert result.status == "SUCCEEDED"
    assert result.output == {"ok": 3}
    assert scheduled_times(result) == [0, 2, 8, 26]


def test_retry_max_delay_seconds_caps_the_backoff() -> None:
    retry = [
        {
            "ErrorEquals": ["States.ALL"],
            "IntervalSeconds": 2,
            "BackoffRate": 3,
            "MaxAttempts": 3,
            "MaxDelaySeconds": 5,
        }
    ]
    result = one(task(Retry=retry), {}, failing(3))
    assert scheduled_times(result) == [0, 2, 7, 12]


def test_retry_max_attempts_zero_never_retries() -> None:
    retry = [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]
    result = one(task(Retry=retry), {}, failing(1))
    assert (result.status, result.error, result.cause) == ("FAILED", "Custom.Error", "attempt 0")
    assert len(scheduled_times(result)) == 1


def test_retry_exhausted_fails_with_the_last_error() -> None:
    retry = [{"ErrorEquals": ["Custom.Error"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    result = one(task(Retry=retry), {}, failing(5))
    assert (result.status, result.error, result.cause) == ("FAILED", "Custom.Error", "attempt 2")
    assert scheduled_times(result) == [0, 1, 3]


def two(first: dict[str, JSON], data: JSON, tasks: Any) -> LocalResult:
    return run(
        {"StartAt": "S", "States": {"S": first, "H": {"Type": "Pass", "End": True}}},
        data,
        tasks,
    )


@pytest.mark.parametrize(
    ("result_path", "expected"),
    [
        ("$.err", {"a": 1, "err": {"Error": "Custom.Error", "Cause": "attempt 0"}}),
        ("$", {"Error": "Custom.Error", "Cause": "attempt 0"}),
        (None, {"a": 1}),
    ],
)
def test_catch_result_path(result_path: str | None, expected: JSON) -> None:
    state = task(
        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H", "ResultPath": result_path}], End=True
    )
    result = two(state, {"a": 1}, failing(1))
    assert result.status == "SUCCEEDED"
    assert result.output == expected


@pytest.mark.parametrize(
    ("matcher", "error", "caught"),
    [
        ("States.ALL", "Custom.Error", True),
        ("States.TaskFailed", "Custom.Error", True),
        ("States.TaskFailed", "States.Timeout", False),
        ("States.ALL", "States.Timeout", True),
        ("Custom.Error", "Custom.Error", True),
        ("Custom.Error", "Other.Error", False),
    ],
)
def test_catch_matching(matcher: str, error: str, caught: bool) -> None:
    state = task(Catch=[{"ErrorEquals": [matcher], "Next": "H"}], End=True)
    result = two(state, {}, failing(1, error))
    assert result.status == ("SUCCEEDED" if caught else "FAILED")
    if not caught:
        assert result.error == error


@pytest.mark.parametrize("matcher", ["States.ALL", "States.Runtime"])
def test_states_runtime_is_never_caught(matcher: str) -> None:
    state = {"Type": "Pass", "InputPath": "$.missing", "Next": "H"}
    parallel = {
        "Type": "Parallel",
        "Branches": [{"StartAt": "P", "States": {"P": {**state, "Next": None, "End": True}}}],
        "Catch": [{"ErrorEquals": [matcher], "Next": "H"}],
        "End": True,
    }
    parallel["Branches"][0]["States"]["P"].pop("Next")
    result = two(parallel, {}, None)
    assert (result.status, result.error) == ("FAILED", "States.Runtime")


def test_task_runtime_error_from_parameters_not_caught() -> None:
    state = task(
        Parameters={"v.$": "$.x"}, Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}], End=True
    )
    result = two(state, {}, echo)
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    assert (
        "The JSONPath '$.x' specified for the field 'v.$' could not be found in the input '{}'"
        in result.cause
    )


def test_wait_seconds_advances_the_virtual_clock() -> None:
    result = run(
        {
            "StartAt": "S",
            "States": {
                "S": {"Type": "Wait", "Seconds": 90, "Next": "P"},
                "P": {"Type": "Pass", "Parameters": {"t.$": "$$.State.EnteredTime"}, "End": True},
            },
        },
        {"a": 1},
    )
    assert result.output == {"t": "2024-01-01T00:01:30.000Z"}
    assert result.events[-1].timestamp - START == timedelta(seconds=90)


def test_wait_timestamp_in_the_future_and_past() -> None:
    future = one({"Type": "Wait", "Timestamp": "2024-01-02T00:00:00Z"}, {"a": 1})
    assert future.output == {"a": 1}
    assert future.events[-1].timestamp == datetime(2024, 1, 2, tzinfo=UTC)
    past = one({"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z"}, {"a": 1})
    assert past.output == {"a": 1}
    assert past.events[-1].timestamp == START


def test_wait_seconds_path() -> None:
    result = one({"Type": "Wait", "SecondsPath": "$.s"}, {"s": 10})
    assert result.status == "SUCCEEDED"
    assert result.events[-1].timestamp - START == timedelta(seconds=10)


def branch(name: str, state: dict[str, JSON]) -> dict[str, JSON]:
    return {
        "StartAt": name,
        "States": {name: {**state, "End": True} if state["Type"] != "Fail" else state},
    }


def test_parallel_results_in_branch_order() -> None:
    state = {
        "Type": "Parallel",
        "Branches": [
            branch("Slow", {"Type": "Wait", "Seconds": 5, "OutputPath": "$.a"}),
            branch("Fast", {"Type": "Pass", "Result": "fast"}),
        ],
        "ResultPath": "$.r",
    }
    result = one(state, {"a": 1})
    assert result.output == {"a": 1, "r": [1, "fast"]}


def test_parallel_branch_failure_propagates() -> None:
    state = {
        "Type": "Parallel",
        "Branches": [
            branch("Ok", {"Type": "Wait", "Seconds": 5}),
            branch("Bad", {"Type": "Fail", "Error": "Branch.Error", "Cause": "no"}),
        ],
    }
    result = one(state, {})
    assert (result.status, result.error, result.cause) == ("FAILED", "Branch.Error", "no")
    assert "ParallelStateFailed" in [e.type for e in result.events]


def test_map_items_path_item_selector_and_order() -> None:
    state = {
        "Type": "Map",
        "ItemsPath": "$.xs",
        "MaxConcurrency": 1,
        "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "k.$": "$.k"},
        "ItemProcessor": branch("Item", {"Type": "Task", "Resource": LAMBDA}),
    }
    seen: list[JSON] = []

    def provide(request: TaskRequest) -> JSON:
        seen.append(request.parameters["i"])
        return request.parameters

    result = one(state, {"xs": ["a", "b", "c"], "k": 0}, provide)
    assert result.output == [
        {"i": 0, "v": "a", "k": 0},
        {"i": 1, "v": "b", "k": 0},
        {"i": 2, "v": "c", "k": 0},
    ]
    assert seen == [0, 1, 2]
    started = [e.details["index"] for e in result.events if e.type == "MapIterationStarted"]
    assert started == [0, 1, 2]


@pytest.mark.parametrize(("tolerated", "status"), [(1, "SUCCEEDED"), (0, "FAILED")])
def test_map_tolerated_failure_count(tolerated: int, status: str) -> None:
    state = {
        "Type": "Map",
        "ToleratedFailureCount": tolerated,
        "ItemProcessor": {
            "StartAt": "C",
            "States": {
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$", "NumericEquals": 1, "Next": "Bad"}],
                    "Default": "Ok",
                },
                "Bad": {"Type": "Fail", "Error": "Item.Error"},
                "Ok": {"Type": "Pass", "End": True},
            },
        },
    }
    result = one(state, [0, 1, 2])
    assert result.status == status
    if status == "SUCCEEDED":
        assert result.output == [0, None, 2]
    else:
        assert result.error == "States.ExceedToleratedFailureThreshold"


def test_context_object_fields() -> None:
    state = task(
        Parameters={"ctx.$": "$$"},
        Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1}],
    )
    result = one(state, {"a": 1}, failing(1))
    assert result.status == "SUCCEEDED"
    scheduled = [e for e in result.events if e.type == "TaskScheduled"]
    contexts = [e.details["parameters"]["ctx"] for e in scheduled]
    execution = {
        "Id": "arn:aws:states:us-east-1:123456789012:execution:StateMachine:local",
        "Input": {"a": 1},
        "Name": "local",
        "RoleArn": "arn:aws:iam::000000000000:role/statewright",
        "StartTime": "2024-01-01T00:00:00.000Z",
        "RedriveCount": 0,
    }
    for attempt, context in enumerate(contexts):
        assert context["Execution"] == execution
        assert context["StateMachine"] == {
            "Id": "arn:aws:states:us-east-1:123456789012:stateMachine:StateMachine",
            "Name": "StateMachine",
        }
        assert context["State"] == {
            "EnteredTime": "2024-01-01T00:00:00.000Z",
            "Name": "S",
            "RetryCount": attempt,
        }
        assert isinstance(context["Task"]["Token"], str) and context["Task"]["Token"]
    assert len(contexts) == 2


def test_execution_timeout_with_a_long_wait() -> None:
    definition = {
        "TimeoutSeconds": 60,
        "StartAt": "S",
        "States": {"S": {"Type": "Wait", "Seconds": 86_400, "End": True}},
    }
    result = run(definition, {})
    assert result.status == "TIMED_OUT"
    assert result.error == "States.Timeout"
    assert result.events[-1].type == "ExecutionTimedOut"
    assert result.events[-1].timestamp - START == timedelta(seconds=60)
