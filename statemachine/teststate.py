"""Evaluate one state on its own, like AWS's TestState API.

``test_state`` runs a single state of a definition against an input, with a mocked task
result or error where the state would call out, and reports what AWS's TestState reports:
the status (SUCCEEDED, FAILED, RETRIABLE, CAUGHT_ERROR), the output, the next state, the
error and cause, and the inspection data — the value after each step of the data flow
(afterInputPath, afterParameters, result, afterResultSelector, afterResultPath ...) and the
variables after the state. Nothing is scheduled and no timer runs: a Wait reports its output
and next state at once.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from statemachine import dataflow
from statemachine.definition import State, StateMachine, parse
from statemachine.errors import DefinitionError, StatesFailure
from statemachine.expressions import QueryEvaluationError
from statemachine.interpreter import Execution, ExecutionInfo, Frame, runtime_cause

JSON = Any
_NO_MOCK: Any = object()
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_ACCOUNT_ARN = "arn:aws:states:us-east-1:123456789012"


@dataclass(slots=True)
class TestStateResult:
    """What TestState answers."""

    __test__ = False  # not a pytest test class, despite the name

    status: str
    output: JSON = None
    error: str | None = None
    cause: str | None = None
    next_state: str | None = None
    inspection: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        """The result as JSON (AWS's member names)."""
        out: dict[str, JSON] = {"status": self.status, "inspectionData": self.inspection}
        if self.status in ("SUCCEEDED", "CAUGHT_ERROR"):
            out["output"] = self.output
        for key, value in (
            ("error", self.error),
            ("cause", self.cause),
            ("nextState", self.next_state),
        ):
            if value is not None:
                out[key] = value
        return out


def _locate(definition: JSON, state_name: str | None) -> tuple[StateMachine, State]:
    if isinstance(definition, Mapping) and "Type" in definition and "States" not in definition:
        # A lone state: wrap it in a machine; its transitions point outside, which is fine here.
        name = state_name or "State"
        body = dict(definition)
        targets = [body.get("Next"), body.get("Default")]
        targets += [c.get("Next") for c in body.get("Catch", ()) if isinstance(c, Mapping)]
        targets += [c.get("Next") for c in body.get("Choices", ()) if isinstance(c, Mapping)]
        states: dict[str, JSON] = {name: body}
        for target in targets:
            if isinstance(target, str) and target != name:
                states.setdefault(target, {"Type": "Succeed"})
        machine = parse({"StartAt": name, "States": states})
        return machine, machine.states[name]
    machine = parse(definition)
    name = state_name or machine.start_at
    for state in machine.all_states():
        if state.name == name:
            return machine, state
    raise DefinitionError(f"The definition has no state named '{name}'", "/States")


def test_state(
    definition: JSON,
    state_name: str | None = None,
    input: JSON = None,
    *,
    result: JSON = _NO_MOCK,
    error: str | None = None,
    cause: str | None = None,
    variables: Mapping[str, JSON] | None = None,
    retry_count: int = 0,
    now: datetime = _EPOCH,
) -> TestStateResult:
    """Evaluate one state of ``definition`` (a whole machine, or a single state object).

    Args:
        state_name: the state to test; default the machine's StartAt.
        result: the mocked result of a Task, Parallel or Map state.
        error, cause: a mocked failure instead of a result.
        variables: workflow variables visible to the state.
        retry_count: how many retries the matching retrier has already made.
        now: the time the state is entered (context object, Wait timestamps).
    """
    machine, state = _locate(definition, state_name)
    ex = Execution(machine)
    ex.info = ExecutionInfo(
        execution_arn=f"{_ACCOUNT_ARN}:execution:TestState:test",
        state_machine_arn=f"{_ACCOUNT_ARN}:stateMachine:TestState",
        role_arn="arn:aws:iam::123456789012:role/TestState",
        start_time=now,
        input=input,
        seed=0,
        redrive_count=0,
    )
    ex.now = now
    ex.trace = {"input": input}
    owner = StateMachine(start_at=state.name, states={state.name: state})
    frame = Frame("", 0, owner, None, 0, input, 1, ChainMap(dict(variables or {})))
    frame.state, frame.entered_id, frame.entered_time = state, 2, now
    outcome = _evaluate(ex, frame, state, result, error, cause, retry_count)
    outcome.inspection = {**ex.trace, **outcome.inspection}
    return outcome


def _evaluate(
    ex: Execution,
    frame: Frame,
    state: State,
    result: JSON,
    error: str | None,
    cause: str | None,
    retry_count: int,
) -> TestStateResult:
    kind = state.type
    try:
        if kind in ("Task", "Parallel", "Map"):
            if kind != "Map":
                dataflow.arguments(ex, frame)
            if error is not None:
                return _failure(ex, frame, error, cause, retry_count)
            if result is _NO_MOCK:
                return TestStateResult(
                    "FAILED",
                    error="States.Runtime",
                    cause=f"TestState needs a mocked result or error for the {kind} state "
                    f"'{state.name}' (it does not call out)",
                )
            output, assigned = dataflow.result_state(ex, frame, result)
            return _succeeded(frame, output, assigned, state.next)
        if kind == "Choice":
            nxt, output, assigned = dataflow.choice_state(ex, frame)
            if nxt is None:
                raise StatesFailure(
                    "States.NoChoiceMatched",
                    runtime_cause(frame, "No Choice matched and no Default was specified"),
                )
            return _succeeded(frame, output, assigned, nxt)
        if kind == "Fail":
            fail_error, fail_cause = dataflow.fail_state(ex, frame)
            return TestStateResult("FAILED", error=fail_error, cause=fail_cause)
        if kind == "Wait":
            dataflow.wait_fields(ex, frame)
            output, assigned = dataflow.passthrough(ex, frame)
        elif kind == "Pass":
            output, assigned = dataflow.pass_state(ex, frame)
        else:  # Succeed
            output, assigned = dataflow.passthrough(ex, frame)
        return _succeeded(frame, output, assigned, state.next)
    except StatesFailure as failure:
        failed_cause = failure.cause
        if failure.error in ("States.Runtime", "States.QueryEvaluationError") and failed_cause:
            if not failed_cause.startswith("An error occurred"):
                failed_cause = runtime_cause(frame, failed_cause)
        extra: dict[str, JSON] = {}
        if isinstance(failure, QueryEvaluationError):
            extra["errorDetails"] = {"location": failure.location}
        if kind == "Task" or kind in ("Parallel", "Map"):
            caught = _failure(ex, frame, failure.error, failed_cause, retry_count)
            caught.inspection.update(extra)
            return caught
        return TestStateResult("FAILED", error=failure.error, cause=failed_cause, inspection=extra)


def _succeeded(
    frame: Frame, output: JSON, assigned: Mapping[str, JSON] | None, nxt: str | None
) -> TestStateResult:
    inspection: dict[str, JSON] = {}
    if assigned is not None:
        inspection["variables"] = {**frame.variables, **assigned}
    return TestStateResult("SUCCEEDED", output=output, next_state=nxt, inspection=inspection)


def _failure(
    ex: Execution, frame: Frame, error: str | None, cause: str | None, retry_count: int
) -> TestStateResult:
    """Retry, catch or fail, as the state's Retry and Catch decide."""
    state = frame.state
    frame.retry_counts = dict.fromkeys(range(len(state.retry)), retry_count)
    decision = ex.failure_decision(frame, error, cause)
    if "retry" in decision:
        retrier = state.retry[decision["retry"]]
        delay = retrier.interval_seconds * retrier.backoff_rate**retry_count
        if retrier.max_delay_seconds is not None:
            delay = min(delay, retrier.max_delay_seconds)
        # An integer, as AWS's TestState API types it.
        details = {
            "retryIndex": decision["retry"],
            "retryBackoffIntervalSeconds": round(delay),
        }
        return TestStateResult(
            "RETRIABLE", error=error, cause=cause, inspection={"errorDetails": details}
        )
    if "catch" in decision:
        catcher = state.catch[decision["catch"]]
        error_output: dict[str, JSON] = {"Error": error}
        if cause is not None:
            error_output["Cause"] = cause
        output, assigned = dataflow.caught(ex, frame, catcher, error_output)
        outcome = _succeeded(frame, output, assigned, catcher.next)
        outcome.status, outcome.error, outcome.cause = "CAUGHT_ERROR", error, cause
        outcome.inspection["errorDetails"] = {"catchIndex": decision["catch"]}
        return outcome
    return TestStateResult("FAILED", error=error, cause=cause)
