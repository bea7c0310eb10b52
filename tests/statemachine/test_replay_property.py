"""Property tests: random valid machines always finish, and every history prefix replays exactly.

A small driver (the same protocol as ``run_local``) records every incoming event it feeds to an
``Execution``. Replaying then checks that folding any prefix of the history, resuming, and
feeding the rest of the recorded incoming events rebuilds the very same history, and that
``decide()`` at each decision boundary returns exactly what the live run appended.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statemachine import Execution, decide, parse, run_local
from statemachine.events import (
    Event,
    Incoming,
    Resume,
)
from statemachine.local import TaskError, TaskRequest

JSON = Any
START = datetime(2024, 1, 1, tzinfo=UTC)
# run_local's ARNs and seed, so the driver's history can be compared with run_local's.
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:StateMachine:local"
MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:StateMachine"

RESOURCES = [
    "arn:aws:states:::lambda:invoke",
    "arn:aws:lambda:us-east-1:123456789012:function:fn",
    "arn:aws:states:::dynamodb:putItem",
    "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
]
ERRORS = [
    "Custom.Error",
    "States.TaskFailed",
    "States.Timeout",
    "States.Permissions",
    "Lambda.Unknown",
]
MATCHERS = ["States.ALL", "States.TaskFailed", "Custom.Error", "States.Timeout", "States.Runtime"]
# Weighted towards paths that exist, so most runs get past the first states.
READ_PATHS = ["$", "$", "$", "$", "$.n", "$.n.x", "$.items", "$.a", "$.missing"]
WRITE_PATHS = ["$.r", "$.r", "$.n.r", "$.deep.er", None, "$"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["", "x", "é"]))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "s", "n", "x"]), inner, max_size=3),
    ),
    max_leaves=6,
)
INPUTS = st.fixed_dictionaries(
    {
        "a": st.integers(-3, 3),
        "s": st.sampled_from(["x", "y"]),
        "flag": st.booleans(),
        "n": st.fixed_dictionaries({"x": st.integers(0, 3)}),
        "items": st.lists(st.integers(0, 9), min_size=1, max_size=4),
    }
)


class Names:
    """Unique state names across the whole definition (nested machines included)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"


def _common_io(draw: st.DrawFn, state: dict[str, JSON], result: bool) -> None:
    if draw(st.integers(0, 3)) == 0:
        state["InputPath"] = draw(st.sampled_from([*READ_PATHS, None]))
    if draw(st.integers(0, 3)) == 0:
        state["OutputPath"] = draw(st.sampled_from([*READ_PATHS, None]))
    if result and draw(st.booleans()):
        state["ResultPath"] = draw(st.sampled_from(WRITE_PATHS))


def _parameters(draw: st.DrawFn) -> JSON:
    return draw(
        st.sampled_from(
            [
                {"v.$": "$"},
                {"k": 1, "c.$": "$$.State.Name"},
                {"arr": [1, {"x.$": "$"}], "f.$": "States.Format('v{}', $$.Execution.Name)"},
                {"p.$": "$.a"},
            ]
        )
    )


@st.composite
def state_body(
    draw: st.DrawFn, names: Names, kind: str, later: list[str], depth: int
) -> dict[str, JSON]:
    """One state of ``kind``; ``later`` are the names it may transition to (acyclic)."""
    body: dict[str, JSON] = {"Type": kind}
    if kind == "Pass":
        if draw(st.integers(0, 3)) == 0:
            body["Result"] = draw(JSON_VALUES)
        elif draw(st.booleans()):
            body["Parameters"] = _parameters(draw)
        _common_io(draw, body, result=True)
    elif kind == "Wait":
        body["Seconds"] = draw(st.integers(0, 5))
        _common_io(draw, body, result=False)
    elif kind == "Task":
        body["Resource"] = draw(st.sampled_from(RESOURCES))
        if draw(st.booleans()):
            body["Parameters"] = _parameters(draw)
        if draw(st.booleans()):
            body["ResultSelector"] = {"out.$": "$", "k": draw(st.integers(0, 3))}
        if draw(st.booleans()):
            body["TimeoutSeconds"] = draw(st.integers(5, 60))
        if draw(st.booleans()):
            body["Retry"] = [
                {
                    "ErrorEquals": [draw(st.sampled_from(MATCHERS))],
                    "IntervalSeconds": draw(st.integers(0, 3)),
                    "MaxAttempts": draw(st.integers(0, 3)),
                    "BackoffRate": draw(st.sampled_from([1, 1.5, 2])),
                }
            ]
        _common_io(draw, body, result=True)
    elif kind == "Fail":
        # Always an Error: a Fail state without one fails the execution with no error name.
        body["Error"] = draw(st.sampled_from(["My.Error", "States.TaskFailed", "Oops"]))
        if draw(st.booleans()):
            body["Cause"] = "because"
    elif kind == "Succeed":
        _common_io(draw, body, result=False)
    elif kind == "Parallel":
        body["Branches"] = [draw(machine(names, depth + 1)) for _ in range(2)]
        if draw(st.booleans()):
            body["Parameters"] = _parameters(draw)
        _common_io(draw, body, result=True)
    elif kind == "Map":
        body["ItemsPath"] = draw(st.sampled_from(["$.items"] * 5 + ["$.a", "$"]))
        body["MaxConcurrency"] = draw(st.sampled_from([0, 1, 2]))
        body["ItemProcessor"] = draw(machine(names, depth + 1))
        if draw(st.booleans()):
            body["ItemSelector"] = {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value"}
        if draw(st.booleans()):
            body["ToleratedFailureCount"] = draw(st.integers(0, 2))
        _common_io(draw, body, result=True)
    if kind in ("Task", "Parallel", "Map") and later and draw(st.booleans()):
        catcher: dict[str, JSON] = {
            "ErrorEquals": [draw(st.sampled_from(MATCHERS))],
            "Next": draw(st.sampled_from(later)),
        }
        if draw(st.booleans()):
            catcher["ResultPath"] = draw(st.sampled_from(["$.err", None, "$"]))
        body["Catch"] = [catcher]
    return body


def _choice(draw: st.DrawFn, later: list[str]) -> dict[str, JSON]:
    rules = [
        {"Variable": "$.a", "NumericGreaterThan": 0},
        {"Variable": "$.s", "StringEquals": "x"},
        {"Variable": "$.flag", "BooleanEquals": True},
        {"Variable": "$.n", "IsPresent": True},
        {"Not": {"Variable": "$.a", "NumericEquals": 1}},
        {
            "And": [
                {"Variable": "$.a", "IsNumeric": True},
                {"Variable": "$.a", "NumericLessThanEquals": 2},
            ]
        },
    ]
    chosen = draw(st.lists(st.sampled_from(rules), min_size=1, max_size=3))
    body: dict[str, JSON] = {
        "Type": "Choice",
        "Choices": [{**rule, "Next": draw(st.sampled_from(later))} for rule in chosen],
    }
    if draw(st.integers(0, 3)) > 0:
        body["Default"] = later[0]
    return body


@st.composite
def machine(draw: st.DrawFn, names: Names, depth: int = 0) -> dict[str, JSON]:
    """An acyclic machine: state i goes to i+1 (or later states through Choice/Catch)."""
    size = draw(st.integers(1, 4 if depth == 0 else 2))
    middle_kinds = ["Pass", "Wait", "Task", "Choice"] + (["Parallel", "Map"] if depth == 0 else [])
    last_kinds = ["Pass", "Pass", "Task", "Task", "Succeed", "Fail", "Wait"] + (
        ["Parallel", "Map"] if depth == 0 else []
    )
    kinds = [draw(st.sampled_from(middle_kinds)) for _ in range(size - 1)]
    kinds.append(draw(st.sampled_from(last_kinds)))
    state_names = [names(kind) for kind in kinds]
    states: dict[str, JSON] = {}
    for index, (name, kind) in enumerate(zip(state_names, kinds, strict=True)):
        later = state_names[index + 1 :]
        if kind == "Choice":
            states[name] = _choice(draw, later)
            continue
        body = draw(state_body(names, kind, later, depth))
        if kind not in ("Succeed", "Fail"):
            if later:
                body["Next"] = later[0]
            else:
                body["End"] = True
        states[name] = body
    return {"StartAt": state_names[0], "States": states}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, JSON], JSON, dict[str, list[JSON]]]:
    definition = draw(machine(Names()))
    data = draw(INPUTS)
    task_names = [name for name, body in _all_states(definition) if body["Type"] == "Task"]
    outcomes = {
        name: draw(
            st.lists(
                st.one_of(
                    st.builds(lambda v: ("ok", v), JSON_VALUES),
                    st.builds(lambda v: ("ok", v), INPUTS),
                    st.builds(lambda v: ("ok", v), INPUTS),
                    st.builds(lambda e: ("error", e), st.sampled_from(ERRORS)),
                    st.builds(lambda e: ("error", e), st.sampled_from(ERRORS)),
                ),
                min_size=1,
                max_size=3,
            )
        )
        for name in task_names
    }
    return definition, data, outcomes


def _all_states(definition: dict[str, JSON]) -> list[tuple[str, dict[str, JSON]]]:
    out = []
    for name, body in definition["States"].items():
        out.append((name, body))
        for branch in body.get("Branches", []):
            out.extend(_all_states(branch))
        if "ItemProcessor" in body:
            out.extend(_all_states(body["ItemProcessor"]))
    return out


def provider_for(outcomes: dict[str, list[JSON]]):  # type: ignore[no-untyped-def]
    """A deterministic task provider: the outcome depends on state, attempt and parameters."""

    def provide(request: TaskRequest) -> JSON:
        table = outcomes[request.state_name]
        salt = zlib.crc32(json.dumps(request.parameters, sort_keys=True).encode())
        kind, value = table[(request.attempt + salt) % len(table)]
        if kind == "error":
            raise TaskError(value, f"cause of {value}")
        return value

    return provide


# ---------------------------------------------------------------------------- the driver


@dataclass
class Step:
    """One incoming event the live run handled and the history length around it."""

    incoming: Incoming
    before: int
    after: int
    commands: tuple[JSON, ...]


@dataclass
class Run:
    history: list[Event]
    status: str
    steps: list[Step] = field(default_factory=list)


def drive(definition: dict[str, JSON], data: JSON, provide) -> Run:  # type: ignore[no-untyped-def]
    """Run with run_local, recording every incoming event it fed to the Execution."""
    steps: list[Step] = []
    result = run_local(
        definition,
        data,
        tasks=provide,
        clock=lambda: START,
        on_step=lambda incoming, before, after, commands: steps.append(
            Step(incoming, before, after, commands)
        ),
    )
    return Run(result.events, result.status, steps)


def shape(events: list[Event]) -> list[tuple[JSON, ...]]:
    return [
        (e.id, e.type, e.previous_event_id, e.scope, dict(e.details), dict(e.meta)) for e in events
    ]


SETTINGS = settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(scenarios())
def test_valid_machines_finish_with_a_string_error(
    scenario: tuple[dict[str, JSON], JSON, dict[str, list[JSON]]],
) -> None:
    definition, data, outcomes = scenario
    result = run_local(definition, data, tasks=provider_for(outcomes), clock=lambda: START)
    assert result.status in ("SUCCEEDED", "FAILED"), result
    last = result.events[-1]
    if result.status == "FAILED":
        assert isinstance(result.error, str) and result.error
        assert last.type == "ExecutionFailed"
    else:
        assert last.type == "ExecutionSucceeded"
        assert result.error is None
    # A second run of the same scenario gives the same history: the engine is deterministic.
    run = drive(definition, data, provider_for(outcomes))
    assert run.status == result.status
    assert shape(run.history) == shape(result.events)


@SETTINGS
@given(scenarios())
def test_every_history_prefix_replays_to_the_same_history(
    scenario: tuple[dict[str, JSON], JSON, dict[str, list[JSON]]],
) -> None:
    definition, data, outcomes = scenario
    machine_model = parse(definition)
    run = drive(definition, data, provider_for(outcomes))
    history = run.history
    expected = shape(history)
    assert run.status in ("SUCCEEDED", "FAILED")
    for k in range(len(history) + 1):
        # The incoming event during which event k was produced; the rest come after it.
        producing = next((i for i, s in enumerate(run.steps) if s.before < k <= s.after), -1)
        execution = Execution(machine_model)
        execution.fold(history[:k])
        timestamp = history[k - 1].timestamp if k else START
        execution.handle(Resume(timestamp))
        for step in run.steps[producing + 1 :]:
            execution.handle(step.incoming)
        assert shape(execution.events) == expected, f"replay from prefix {k} diverged"
        assert execution.status == run.status


@SETTINGS
@given(scenarios())
def test_decide_at_each_boundary_returns_what_the_live_run_appended(
    scenario: tuple[dict[str, JSON], JSON, dict[str, list[JSON]]],
) -> None:
    definition, data, outcomes = scenario
    machine_model = parse(definition)
    run = drive(definition, data, provider_for(outcomes))
    for step in run.steps:
        decision = decide(machine_model, run.history[: step.before], step.incoming)
        assert shape(list(decision.events)) == shape(run.history[step.before : step.after])
        assert list(decision.commands) == list(step.commands)
        assert [e.timestamp for e in decision.events] == [
            e.timestamp for e in run.history[step.before : step.after]
        ]
    assert decide(machine_model, run.history, Resume(START + timedelta(days=1))).events == ()


# ---------------------------------------------------------------------------- regressions: replay after failures


def _replay_from(definition: dict[str, JSON], run: Run, k: int) -> list[tuple[JSON, ...]]:
    producing = next((i for i, s in enumerate(run.steps) if s.before < k <= s.after), -1)
    execution = Execution(parse(definition))
    execution.fold(run.history[:k])
    execution.handle(Resume(run.history[k - 1].timestamp))
    for step in run.steps[producing + 1 :]:
        execution.handle(step.incoming)
    return shape(execution.events)


FAILING_ITEM = {"StartAt": "Item", "States": {"Item": {"Type": "Succeed", "InputPath": "$.n"}}}


def test_resume_after_map_iteration_failed_keeps_the_map_failing() -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": FAILING_ITEM, "End": True}
        },
    }
    run = drive(definition, {"items": [0]}, None)
    types = [e.type for e in run.history]
    assert types[-3:] == ["MapIterationFailed", "MapStateFailed", "ExecutionFailed"]
    k = types.index("MapIterationFailed") + 1
    # Got: MapStateSucceeded, MapStateExited, ExecutionSucceeded with output [None].
    assert _replay_from(definition, run, k) == shape(run.history)


def test_resume_after_tolerated_map_iteration_failure_does_not_fail_it_twice() -> None:
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ToleratedFailureCount": 1,
                "ItemProcessor": FAILING_ITEM,
                "End": True,
            }
        },
    }
    run = drive(definition, {"items": [0, 0]}, None)
    k = [e.type for e in run.history].index("MapIterationFailed") + 1
    replayed = _replay_from(definition, run, k)
    # Got: a second MapIterationFailed for index 0 (threshold exceeded) and a MapIterationAborted
    # for index 1 instead of index 1's SucceedStateEntered.
    assert replayed == shape(run.history)


def test_resume_after_wait_entry_failure_fails_the_execution() -> None:
    definition = {
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "Seconds": 1, "InputPath": "$.missing", "End": True}},
    }
    run = drive(definition, {}, None)
    assert [e.type for e in run.history] == [
        "ExecutionStarted",
        "WaitStateEntered",
        "ExecutionFailed",
    ]
    # Got: nothing after WaitStateEntered; the execution stays RUNNING forever.
    assert _replay_from(definition, run, 2) == shape(run.history)


def test_wait_output_path_missing_fails_the_execution_instead_of_raising() -> None:
    definition = {
        "StartAt": "W",
        "States": {"W": {"Type": "Wait", "Seconds": 0, "OutputPath": "$.missing", "End": True}},
    }
    result = run_local(definition, {"a": 1}, clock=lambda: START)  # got: StatesFailure raised
    assert result.status == "FAILED"
    assert result.error == "States.Runtime"
    assert result.cause == (
        "An error occurred while executing the state 'W' (entered at the event id #2). "
        "Invalid path '$.missing' : No results for path: $['missing']"
    )


def test_decide_does_not_cancel_a_retry_timer_that_already_fired() -> None:
    definition = {
        "StartAt": "T",
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0, "MaxAttempts": 1}],
                "End": True,
            }
        },
    }
    run = drive(definition, {}, provider_for({"T": [("error", "Custom.Error")]}))
    last = run.steps[-1]
    assert run.history[-1].type == "ExecutionFailed"
    assert last.commands == ()
    decision = decide(parse(definition), run.history[: last.before], last.incoming)
    assert shape(list(decision.events)) == shape(run.history[last.before :])
    # Got: (CancelTimer(timer_id='retry:5'),) for the retry timer that fired long ago.
    assert decision.commands == last.commands
