"""Workflow variables (Assign): evaluation order, references, scoping, quotas, events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from statemachine import LocalResult, TaskError, TaskRequest, run_local

JSON = Any
START = datetime(2024, 1, 1, tzinfo=UTC)
LAMBDA = "arn:aws:states:::lambda:invoke"
QEE = "States.QueryEvaluationError"


def run(definition: dict[str, JSON], data: JSON = None, tasks: Any = None) -> LocalResult:
    return run_local(definition, {} if data is None else data, tasks=tasks, clock=lambda: START)


def jsonata(states: dict[str, JSON], start: str | None = None) -> dict[str, JSON]:
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)), "States": states}


def jsonpath(states: dict[str, JSON], start: str | None = None) -> dict[str, JSON]:
    return {"StartAt": start or next(iter(states)), "States": states}


def exited(result: LocalResult, name: str) -> Any:
    return next(
        e for e in result.events if e.type.endswith("StateExited") and e.details["name"] == name
    )


def prefix(state: str, entered: int) -> str:
    return f"An error occurred while executing the state '{state}' (entered at the event id #{entered}). "


# ---------------------------------------------------------------------------- JSONPath Assign


def test_jsonpath_assign_paths_literals_intrinsics_context() -> None:
    result = run(
        jsonpath(
            {
                "A": {
                    "Type": "Pass",
                    "Assign": {
                        "x.$": "$.a",
                        "lit": {"k": [1, 2], "s": "$.not-a-path"},
                        "f.$": "States.Format('v{}', $.a)",
                        "ctx.$": "$$.State.Name",
                        "n": None,
                    },
                    "Next": "B",
                },
                "B": {
                    "Type": "Pass",
                    "Parameters": {
                        "x.$": "$x",
                        "lit.$": "$lit",
                        "f.$": "$f",
                        "ctx.$": "$ctx",
                        "n.$": "$n",
                        "k.$": "$lit.k[1]",
                    },
                    "End": True,
                },
            }
        ),
        {"a": 7},
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {
        "x": 7,
        "lit": {"k": [1, 2], "s": "$.not-a-path"},
        "f": "v7",
        "ctx": "A",
        "n": None,
        "k": 2,
    }
    assert exited(result, "A").details["assignedVariables"] == {
        "x": 7,
        "lit": {"k": [1, 2], "s": "$.not-a-path"},
        "f": "v7",
        "ctx": "A",
        "n": None,
    }


def test_jsonpath_assign_reads_the_state_result() -> None:
    # AWS (corpus BASE_ASSIGN_FROM_PARAMETERS): a Pass state's Assign sees its Parameters' result.
    result = run(
        jsonpath(
            {
                "A": {
                    "Type": "Pass",
                    "Parameters": {"input": "PENDING"},
                    "Assign": {"result.$": "$.input"},
                    "Next": "B",
                },
                "B": {"Type": "Pass", "Parameters": {"r.$": "$result"}, "End": True},
            }
        )
    )
    assert result.output == {"r": "PENDING"}


def test_jsonpath_task_assign_reads_selected_result() -> None:
    result = run(
        jsonpath(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "ResultSelector": {"v.$": "$.value"},
                    "ResultPath": "$.res",
                    "Assign": {"got.$": "$.v"},
                    "Next": "B",
                },
                "B": {
                    "Type": "Pass",
                    "Parameters": {"got.$": "$got", "res.$": "$.res"},
                    "End": True,
                },
            }
        ),
        {},
        lambda request: {"value": 9},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"got": 9, "res": {"v": 9}}


def test_jsonpath_assign_unknown_variable_fails() -> None:
    result = run(
        jsonpath(
            {
                "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
                "B": {"Type": "Pass", "Parameters": {"v.$": "$y"}, "End": True},
            }
        )
    )
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"


# ---------------------------------------------------------------------------- evaluation order


def test_swap_jsonata() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"a": 1, "b": 2}, "Next": "Swap"},
                "Swap": {
                    "Type": "Pass",
                    "Assign": {"a": "{% $b %}", "b": "{% $a %}"},
                    "Output": {"a": "{% $a %}", "b": "{% $b %}"},
                    "Next": "Show",
                },
                "Show": {
                    "Type": "Pass",
                    "Output": {"a": "{% $a %}", "b": "{% $b %}", "before": "{% $states.input %}"},
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED"
    # Output of the swapping state still sees the values from before it.
    assert result.output == {"a": 2, "b": 1, "before": {"a": 1, "b": 2}}
    assert exited(result, "Swap").details["assignedVariables"] == {"a": 2, "b": 1}


def test_swap_jsonpath() -> None:
    result = run(
        jsonpath(
            {
                "Init": {"Type": "Pass", "Assign": {"a": 1, "b": 2}, "Next": "Swap"},
                "Swap": {
                    "Type": "Pass",
                    "Parameters": {"a.$": "$a", "b.$": "$b"},
                    "Assign": {"a.$": "$b", "b.$": "$a"},
                    "Next": "Show",
                },
                "Show": {
                    "Type": "Pass",
                    "Parameters": {"a.$": "$a", "b.$": "$b", "before.$": "$"},
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": 2, "b": 1, "before": {"a": 1, "b": 2}}


def test_assign_sees_values_from_before_not_sibling_assignments() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "Both"},
                "Both": {
                    "Type": "Pass",
                    "Assign": {"x": "{% $x + 10 %}", "y": "{% $x %}"},
                    "Next": "Show",
                },
                "Show": {"Type": "Pass", "Output": {"x": "{% $x %}", "y": "{% $y %}"}, "End": True},
            }
        )
    )
    assert result.output == {"x": 11, "y": 1}


def test_catcher_assign_sees_values_from_before() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"n": 1}, "Next": "T"},
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Assign": {"n": 100},
                    "Catch": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "Assign": {"n": "{% $n + 1 %}", "err": "{% $states.errorOutput %}"},
                            "Next": "Show",
                        }
                    ],
                    "End": True,
                },
                "Show": {
                    "Type": "Pass",
                    "Output": {"n": "{% $n %}", "err": "{% $err %}"},
                    "End": True,
                },
            }
        ),
        {},
        _fail,
    )
    assert result.status == "SUCCEEDED"
    # The state's own Assign does not run when its error is caught.
    assert result.output == {"n": 2, "err": {"Error": "Oops", "Cause": "c"}}


def _fail(request: TaskRequest) -> JSON:
    raise TaskError("Oops", "c")


def test_jsonpath_catcher_assign_reads_error_output() -> None:
    result = run(
        jsonpath(
            {
                "T": {
                    "Type": "Task",
                    "Resource": LAMBDA,
                    "Catch": [
                        {
                            "ErrorEquals": ["Oops"],
                            "Assign": {"e.$": "$.Error", "c.$": "$.Cause"},
                            "ResultPath": None,
                            "Next": "Show",
                        }
                    ],
                    "End": True,
                },
                "Show": {
                    "Type": "Pass",
                    "Parameters": {"e.$": "$e", "c.$": "$c", "in.$": "$"},
                    "End": True,
                },
            }
        ),
        {"k": 1},
        _fail,
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"e": "Oops", "c": "c", "in": {"k": 1}}


# ---------------------------------------------------------------------------- references


def test_variable_in_input_path() -> None:
    result = run(
        jsonpath(
            {
                "A": {"Type": "Pass", "Assign": {"obj": {"q": 5}}, "Next": "B"},
                "B": {"Type": "Pass", "InputPath": "$obj", "End": True},
            }
        ),
        {"ignored": True},
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"q": 5}


@pytest.mark.parametrize(("n", "expected"), [(5, "yes"), (6, "no")])
def test_variable_in_choice_variable(n: int, expected: str) -> None:
    result = run(
        jsonpath(
            {
                "A": {"Type": "Pass", "Assign": {"n.$": "$.n"}, "Next": "C"},
                "C": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$n", "NumericEquals": 5, "Next": "Y"}],
                    "Default": "N",
                },
                "Y": {"Type": "Pass", "Result": "yes", "End": True},
                "N": {"Type": "Pass", "Result": "no", "End": True},
            }
        ),
        {"n": n},
    )
    assert result.output == expected


def test_variable_in_intrinsics() -> None:
    result = run(
        jsonpath(
            {
                "A": {"Type": "Pass", "Assign": {"x": "World", "l": [1, 2, 3]}, "Next": "B"},
                "B": {
                    "Type": "Pass",
                    "Parameters": {
                        "greeting.$": "States.Format('Hello, {}!', $x)",
                        "len.$": "States.ArrayLength($l)",
                        "json.$": "States.JsonToString($l)",
                    },
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {"greeting": "Hello, World!", "len": 3, "json": "[1,2,3]"}


def test_choice_rule_assign_jsonpath() -> None:
    definition = jsonpath(
        {
            "C": {
                "Type": "Choice",
                "Choices": [
                    {
                        "Variable": "$.v",
                        "NumericEquals": 42,
                        "Assign": {"status": "CORRECT"},
                        "Next": "F",
                    }
                ],
                "Assign": {"status": "INCORRECT", "guess.$": "$.v"},
                "Default": "F",
            },
            "F": {"Type": "Pass", "Parameters": {"status.$": "$status"}, "End": True},
        }
    )
    assert run(definition, {"v": 42}).output == {"status": "CORRECT"}
    assert run(definition, {"v": 1}).output == {"status": "INCORRECT"}


def test_wait_state_assign() -> None:
    result = run(
        jsonata(
            {
                "W": {
                    "Type": "Wait",
                    "Seconds": 5,
                    "Assign": {"w": "{% $states.input.a %}"},
                    "Next": "S",
                },
                "S": {"Type": "Pass", "Output": "{% $w %}", "End": True},
            }
        ),
        {"a": "waited"},
    )
    assert result.output == "waited"


def test_jsonata_undefined_variable_fails() -> None:
    result = run(jsonata({"S": {"Type": "Pass", "Output": {"v": "{% $never %}"}, "End": True}}))
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause == prefix("S", 2) + (
        "The JSONata expression '$never' specified for the field 'Output/v' returned nothing (undefined)."
    )


# ---------------------------------------------------------------------------- scoping


def _branch(states: dict[str, JSON]) -> dict[str, JSON]:
    return {"StartAt": next(iter(states)), "States": states}


def test_parallel_reads_outer_and_does_not_leak() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "Par"},
                "Par": {
                    "Type": "Parallel",
                    "Branches": [
                        _branch(
                            {
                                "B1": {
                                    "Type": "Pass",
                                    "Assign": {"y": "{% $x + 10 %}"},
                                    "Next": "B2",
                                },
                                "B2": {
                                    "Type": "Pass",
                                    "Output": {"x": "{% $x %}", "y": "{% $y %}"},
                                    "End": True,
                                },
                            }
                        ),
                        _branch({"C1": {"Type": "Pass", "Output": "{% $x * 2 %}", "End": True}}),
                    ],
                    "Next": "After",
                },
                "After": {
                    "Type": "Pass",
                    "Output": {
                        "x": "{% $x %}",
                        "branches": "{% $states.input %}",
                        "y_visible": "{% $exists($y) %}",
                    },
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {"x": 1, "branches": [{"x": 1, "y": 11}, 2], "y_visible": False}


def test_parallel_branch_assignment_does_not_change_outer_value() -> None:
    # The branch assigns a name that exists outside; after the Parallel the outer value is
    # unchanged. (AWS documents that inner names should not shadow outer ones.)
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "Par"},
                "Par": {
                    "Type": "Parallel",
                    "Branches": [
                        _branch(
                            {
                                "B1": {"Type": "Pass", "Assign": {"x": 99}, "Next": "B2"},
                                "B2": {"Type": "Pass", "Output": "{% $x %}", "End": True},
                            }
                        )
                    ],
                    "Next": "After",
                },
                "After": {
                    "Type": "Pass",
                    "Output": {"x": "{% $x %}", "r": "{% $states.input %}"},
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED"
    assert result.output == {"x": 1, "r": [99]}


def test_reading_branch_variable_after_parallel_fails() -> None:
    result = run(
        jsonata(
            {
                "Par": {
                    "Type": "Parallel",
                    "Branches": [_branch({"B": {"Type": "Pass", "Assign": {"y": 1}, "End": True}})],
                    "Next": "After",
                },
                "After": {"Type": "Pass", "Output": "{% $y %}", "End": True},
            }
        )
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause is not None
    assert result.cause.endswith(
        "The JSONata expression '$y' specified for the field 'Output' returned nothing (undefined)."
    )


def test_map_iterations_read_outer_and_are_isolated() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "M"},
                "M": {
                    "Type": "Map",
                    "Items": [1, 2, 3],
                    "ItemSelector": {"v": "{% $states.context.Map.Item.Value %}", "x": "{% $x %}"},
                    "ItemProcessor": _branch(
                        {
                            "I1": {
                                "Type": "Pass",
                                # Each iteration sees only its own z (no leak between iterations).
                                "Output": {
                                    "had_z": "{% $exists($z) %}",
                                    "v": "{% $states.input.v %}",
                                },
                                "Assign": {"z": "{% $states.input.v * 10 %}"},
                                "Next": "I2",
                            },
                            "I2": {
                                "Type": "Pass",
                                "Output": {
                                    "had_z": "{% $states.input.had_z %}",
                                    "sum": "{% $z + $x %}",
                                },
                                "End": True,
                            },
                        }
                    ),
                    "Next": "After",
                },
                "After": {
                    "Type": "Pass",
                    "Output": {
                        "x": "{% $x %}",
                        "r": "{% $states.input %}",
                        "z": "{% $exists($z) %}",
                    },
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {
        "x": 1,
        "r": [
            {"had_z": False, "sum": 11},
            {"had_z": False, "sum": 21},
            {"had_z": False, "sum": 31},
        ],
        "z": False,
    }


def test_jsonpath_map_reads_outer_variable() -> None:
    result = run(
        jsonpath(
            {
                "Init": {"Type": "Pass", "Assign": {"factor": 3}, "Next": "M"},
                "M": {
                    "Type": "Map",
                    "ItemSelector": {"v.$": "$$.Map.Item.Value", "f.$": "$factor"},
                    "ItemProcessor": _branch(
                        {
                            "I": {
                                "Type": "Pass",
                                "Parameters": {"f.$": "$factor", "v.$": "$.v"},
                                "End": True,
                            }
                        }
                    ),
                    "End": True,
                },
            }
        ),
        [1, 2],
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == [{"f": 3, "v": 1}, {"f": 3, "v": 2}]


@pytest.mark.parametrize("kind", ["Map", "Parallel"])
def test_catcher_assign_writes_outer_scope(kind: str) -> None:
    failing = _branch({"F": {"Type": "Fail", "Error": "Bad", "Cause": "c"}})
    state: dict[str, JSON] = {
        "Type": kind,
        "Catch": [
            {
                "ErrorEquals": ["States.ALL"],
                "Assign": {"x": "{% $x + 1 %}", "e": "{% $states.errorOutput.Error %}"},
                "Next": "After",
            }
        ],
        "Next": "After",
    }
    if kind == "Map":
        state.update(Items=[1], ItemProcessor=failing)
    else:
        state.update(Branches=[failing])
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "S"},
                "S": state,
                "After": {
                    "Type": "Pass",
                    "Output": {"x": "{% $x %}", "e": "{% $e %}"},
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == {"x": 2, "e": "Bad"}
    assert exited(result, "S").details["assignedVariables"] == {"x": 2, "e": "Bad"}


def test_map_state_assign_writes_outer_scope() -> None:
    result = run(
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": [1, 2],
                    "ItemProcessor": _branch({"I": {"Type": "Pass", "End": True}}),
                    "Assign": {"total": "{% $sum($states.result) %}"},
                    "Next": "After",
                },
                "After": {"Type": "Pass", "Output": "{% $total %}", "End": True},
            }
        )
    )
    assert result.output == 3


DISTRIBUTED = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}


def test_distributed_map_children_cannot_read_outer_variables_jsonata() -> None:
    result = run(
        jsonata(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "M"},
                "M": {
                    "Type": "Map",
                    "Items": [1],
                    "ItemProcessor": {
                        "ProcessorConfig": DISTRIBUTED,
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "Output": "{% $x %}", "End": True}},
                    },
                    "End": True,
                },
            }
        )
    )
    assert result.status == "FAILED"
    assert result.error == QEE
    assert result.cause is not None
    assert result.cause.endswith(
        "The JSONata expression '$x' specified for the field 'Output' returned nothing (undefined)."
    )


def test_distributed_map_children_cannot_read_outer_variables_jsonpath() -> None:
    result = run(
        jsonpath(
            {
                "Init": {"Type": "Pass", "Assign": {"x": 1}, "Next": "M"},
                "M": {
                    "Type": "Map",
                    "ItemProcessor": {
                        "ProcessorConfig": DISTRIBUTED,
                        "StartAt": "I",
                        "States": {"I": {"Type": "Pass", "Parameters": {"v.$": "$x"}, "End": True}},
                    },
                    "End": True,
                },
            }
        ),
        [1],
    )
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert "$x" in (result.cause or "")


def test_distributed_map_children_have_their_own_variables() -> None:
    result = run(
        jsonata(
            {
                "M": {
                    "Type": "Map",
                    "Items": [1, 2],
                    "ItemProcessor": {
                        "ProcessorConfig": DISTRIBUTED,
                        "StartAt": "I",
                        "States": {
                            "I": {
                                "Type": "Pass",
                                "Assign": {"q": "{% $states.input * 3 %}"},
                                "Next": "I2",
                            },
                            "I2": {"Type": "Pass", "Output": "{% $q %}", "End": True},
                        },
                    },
                    "End": True,
                },
            }
        )
    )
    assert result.status == "SUCCEEDED", result.cause
    assert result.output == [3, 6]


# ---------------------------------------------------------------------------- quotas

KIB = 1024


def test_variable_larger_than_256_kib() -> None:
    result = run(
        jsonata(
            {
                "A": {
                    "Type": "Pass",
                    "Assign": {"v": "{% $pad('', 262200, 'x') %}", "w": 1},
                    "End": True,
                }
            }
        )
    )
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause == prefix("A", 2) + (
        "The value assigned to the variable 'v' is larger than 262144 bytes (256 KiB)."
    )
    assert [e.type for e in result.events] == [
        "ExecutionStarted",
        "PassStateEntered",
        "ExecutionFailed",
    ]


def test_assign_block_larger_than_256_kib() -> None:
    result = run(
        jsonata(
            {
                "A": {
                    "Type": "Pass",
                    "Assign": {
                        "v": "{% $pad('', 140000, 'x') %}",
                        "w": "{% $pad('', 140000, 'y') %}",
                    },
                    "End": True,
                }
            }
        )
    )
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause == prefix("A", 2) + (
        "The Assign field of state 'A' is larger than 262144 bytes (256 KiB)."
    )


def _chain(count: int, name: Any) -> dict[str, JSON]:
    states: dict[str, JSON] = {}
    for i in range(count):
        state: dict[str, JSON] = {
            "Type": "Pass",
            "Assign": {name(i): "{% $pad('', 250000, 'z') %}"},
        }
        if i < count - 1:
            state["Next"] = f"S{i + 1}"
        else:
            state["End"] = True
        states[f"S{i}"] = state
    return jsonata(states)


def test_total_variables_larger_than_10_mib() -> None:
    result = run(_chain(45, lambda i: f"v{i}"))
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause is not None
    # 41 variables of 250,002 bytes fit in 10 MiB; the 42nd (state S41) does not.
    assert result.cause.startswith(prefix("S41", 84) + "The workflow variables would take ")
    assert result.cause.endswith("the limit is 10485760 bytes (10 MiB) per execution.")


def test_reassigning_one_variable_does_not_accumulate() -> None:
    result = run(_chain(45, lambda i: "same"))
    assert result.status == "SUCCEEDED", result.cause


def test_variable_just_under_limit_is_fine() -> None:
    result = run(
        jsonata(
            {
                "A": {"Type": "Pass", "Assign": {"v": "{% $pad('', 200000, 'x') %}"}, "Next": "B"},
                "B": {"Type": "Pass", "Output": "{% $length($v) %}", "End": True},
            }
        )
    )
    assert result.output == 200 * 1000


# ---------------------------------------------------------------------------- events


def test_assigned_variables_in_events() -> None:
    result = run(
        jsonata(
            {
                "A": {
                    "Type": "Pass",
                    "Assign": {"n": 7, "s": "str", "o": {"k": [1, None]}, "b": True, "z": None},
                    "Next": "B",
                },
                "B": {"Type": "Pass", "End": True},
            }
        ),
        {"in": 1},
    )
    assert result.status == "SUCCEEDED"
    a = exited(result, "A")
    assert a.details["assignedVariables"] == {
        "n": 7,
        "s": "str",
        "o": {"k": [1, None]},
        "b": True,
        "z": None,
    }
    details = a.to_aws()["stateExitedEventDetails"]
    assert details["assignedVariables"] == {
        "n": "7",
        "s": '"str"',
        "o": '{"k":[1,null]}',
        "b": "true",
        "z": "null",
    }
    assert all(isinstance(v, str) for v in details["assignedVariables"].values())
    assert {k: json.loads(v) for k, v in details["assignedVariables"].items()} == a.details[
        "assignedVariables"
    ]
    assert details["assignedVariablesDetails"] == {"truncated": False}
    assert details["name"] == "A"
    b = exited(result, "B")
    assert "assignedVariables" not in b.details
    assert "assignedVariables" not in b.to_aws()["stateExitedEventDetails"]


def test_assigned_variables_in_jsonpath_choice_event() -> None:
    result = run(
        jsonpath(
            {
                "C": {
                    "Type": "Choice",
                    "Choices": [
                        {
                            "Variable": "$.v",
                            "IsPresent": True,
                            "Assign": {"seen.$": "$.v"},
                            "Next": "E",
                        }
                    ],
                    "Default": "E",
                },
                "E": {"Type": "Succeed"},
            }
        ),
        {"v": [1]},
    )
    details = exited(result, "C").to_aws()["stateExitedEventDetails"]
    assert details["assignedVariables"] == {"seen": "[1]"}
